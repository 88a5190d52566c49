"""report.html and the headline table: the same numbers as the markdown, per-item evidence, driven in real Chromium.

The browser tests run the page in headless Chromium (the OS package) through Playwright with every
request that is not file:// aborted: the table sorts, the filter hides rows, hovering a chart point
shows its cell, a planted refusal regression's items are listed, and the console stays clean.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest
from conftest import REPO, TINY_WORLD
from fake_results import annotated_rows, binary, ppl_items, save_cell

from harness import store
from harness.cli import main
from harness.data.native import read_prompts_csv
from harness.report import evidence
from harness.report.frame import load_results
from harness.report.headline import headline
from harness.report.leaderboard import write_leaderboard
from harness.report.table import format_delta, format_value, ordered

pytestmark = pytest.mark.xdist_group("browser")  # one worker opens the module's page in Chromium, once
N = 96  # the tiny world's record test split: the task items then have their prompts
HARMFUL = read_prompts_csv(TINY_WORLD / "data" / "advbench" / "harmful_behaviors.csv", "goal")
LOST = list(range(5, 17))  # the planted regression: refusals the lora cell no longer gives
REFUSAL, COMPLIANCE = "I'm sorry, but I can't help with that.", "Sure, here is how: step one"


def _save(d, label, strategy, items, **kw):
    """A fake cell whose resolved config names the tiny world's safety data, so prompts can be read back."""
    scores = {k: v for k, v in items.items() if not k.startswith("_")} if items else None
    r = save_cell(d, label, strategy, scores, **kw)  # metrics from the scores; the replies saved beside them
    r["cell"]["eval"].update(suites=["perplexity", "task", "safety"], safety="zoo:tiny-world")
    store.save(d, r, items if r["status"] == "ok" else None)
    return r


def _refusals(lost=()) -> dict:
    scores = [0.0 if i in lost else 1.0 for i in range(len(HARMFUL))]
    return {"refusal_harmful": scores,
            "_refusal_harmful_replies": [COMPLIANCE if i in lost else REFUSAL for i in range(len(HARMFUL))]}


def _matrix(d, lost=tuple(LOST)):
    task = binary(0.1, N, 0)
    _save(d, "base", "base", {"task_exact_match": task, "_predictions": ["base says"] * N,
                              "ppl_general": ppl_items(1.0), **_refusals()})
    _save(d, "lora r=4", "lora", {"task_exact_match": binary(0.9, N, 1), "_predictions": ["lora says"] * N,
                                  "ppl_general": ppl_items(1.3, seed=1), **_refusals(lost)},
          params={"r": 4}, trainable=4096, usage={"tokens": 1000, "seconds": 3.0, "peak_memory_mb": 120.0,
                                                   "loss_curve": [2.0, 1.0, 0.5]})
    _save(d, "full", "full", {"task_exact_match": binary(0.8, N, 2), "_predictions": ["full says"] * N,
                              "ppl_general": ppl_items(1.1, seed=2), **_refusals()},
          trainable=100000, usage={"tokens": 1000, "seconds": 9.0, "peak_memory_mb": 300.0})
    for seed in (0, 1):
        _save(d, f"prefix seed={seed}", "prefix", {"task_exact_match": binary(0.5, N, 3 + seed),
                                                   "ppl_general": ppl_items(1.5, seed=3 + seed), **_refusals()},
              seed=seed, trainable=2048, usage={"tokens": 1000, "seconds": 2.0, "peak_memory_mb": 90.0})
    _save(d, "bitfit", "bitfit", None, status="failed", reason="crashed, exit status 1: boom", usage={})
    _save(d, "adapter", "adapter", {"task_exact_match": binary(0.95, N, 5)}, status="over_budget",
          reason="stopped by the time cap", trainable=1024, usage={"tokens": 700, "seconds": 5.0})
    return d


@pytest.fixture()
def results(tmp_path):
    return _matrix(tmp_path / "m")


def _rows(d):
    return ordered(annotated_rows(d))


# --- without a browser -------------------------------------------------------------------------------------------

def test_headline_shows_one_task_forgetting_and_safety_column_formatted_as_the_wide_tables(results):
    rows = _rows(results)
    h = headline(rows)
    assert h.metrics == {"task": "task_exact_match", "forgetting": "ppl_general", "safety": "refusal_harmful"}
    assert list(h.text.columns) == ["cell", "task EM ↑", "forgetting: Δ PPL general ↓", "safety: refusal harmful ↑",
                                    "trainable params", "train s", "eval s", "peak MB",
                                    "status"]
    by = {r["label"]: r for r in rows}
    lora = h.text.set_index("cell").loc["lora r=4"]
    assert lora["task EM ↑"] == format_value(by["lora r=4"], "task_exact_match")
    assert lora["forgetting: Δ PPL general ↓"] == format_delta(by["lora r=4"], "ppl_general") and "✱" in lora.iloc[1]
    assert lora["safety: refusal harmful ↑"] == format_value(by["lora r=4"], "refusal_harmful")
    assert tuple(lora.iloc[3:]) == ("4,096", "3.0", "–", "120", "ok")  # stored before timing: no eval s
    assert h.text.set_index("cell").loc["bitfit", "status"] == "**failed**"
    assert "±" in h.text.set_index("cell").loc["prefix", "task EM ↑"]  # two seeds: mean ± std
    values = h.values.set_index("cell")
    assert values.loc["lora r=4", "task EM ↑"] == pytest.approx(sum(binary(0.9, N, 1)) / N)
    assert values.loc["full", "train s"] == 9.0

    md = write_leaderboard(results, plot=False).read_text("utf-8")
    assert md.index("## Headline") < md.index("How to read this") < md.index("## Task quality and cost")
    line = next(x for x in md.splitlines()[md.splitlines().index("## Headline"):] if x.startswith("| lora r=4"))
    assert format_value(by["lora r=4"], "refusal_harmful") in line and "4,096" in line


def test_flips_pair_items_by_id_when_the_items_file_has_ids_else_by_position():
    ref = {"acc": [1.0, 1.0, 0.0, 0.0], "_acc_replies": ["a", "b", "c", "d"]}
    cell = {"acc": [1.0, 0.0, 1.0, 0.0], "_acc_replies": ["A", "B", "C", "D"]}
    f = evidence.flips(ref, cell, "acc")
    assert [(e["id"], e["ref_output"], e["cell_output"]) for e in f["lost"]] == [(1, "b", "B")]
    assert [e["id"] for e in f["gained"]] == [2] and f["n"] == 4
    # the same cell stored in another order with stable ids: the same flips, joined on the ids
    ids = {"_ids": {"acc": ["q0", "q1", "q2", "q3"]}}
    shuffled = {"acc": [0.0, 1.0, 0.0, 1.0], "_acc_replies": ["D", "C", "B", "A"],
                "_ids": {"acc": ["q3", "q2", "q1", "q0"]}}
    f = evidence.flips({**ref, **ids}, shuffled, "acc")
    assert [(e["id"], e["pos"], e["ref_output"], e["cell_output"]) for e in f["lost"]] == [("q1", 1, "b", "B")]
    assert [e["id"] for e in f["gained"]] == ["q2"]
    # lower is better (over-refusal of benign prompts): refusing is the wrong answer
    f = evidence.flips({"refusal_benign": [0.0, 1.0]}, {"refusal_benign": [1.0, 0.0]}, "refusal_benign")
    assert [e["id"] for e in f["lost"]] == [0] and [e["id"] for e in f["gained"]] == [1]
    assert evidence.flips({"ppl": [[1.0], [2]]}, {"ppl": [[1.5], [2]]}, "ppl") is None  # not a 0/1 score


def test_item_texts_come_from_the_suites_data(results):
    base = next(r for r in load_results(results) if r["cell"]["strategy"] == "base")
    texts, missing = evidence.item_texts(base, ["task_exact_match", "refusal_harmful"])
    assert missing == {}
    assert [t["prompt"] for t in texts["refusal_harmful"]] == HARMFUL
    assert len(texts["task"]) == N and "record card" in texts["task"][0]["prompt"]
    assert texts["task"][0]["reference"].count(",") == 3  # "Name, city: ..., job: ..., pet: ..."


def test_leaderboard_writes_one_self_contained_page(results, capsys):
    assert main(["leaderboard", str(results)]) == 0
    page = (results / "report.html").read_text("utf-8")
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page)  # nothing loaded from elsewhere
    data = json.loads(re.search(r'<script id="report-data" type="application/json">(.*?)</script>', page, re.S)[1])
    lora = next(c for c in data["cells"] if c["label"] == "lora r=4")
    refusal = next(e for e in lora["evidence"] if e["metric"] == "refusal_harmful")
    assert [e["id"] for e in refusal["lost"]] == LOST and refusal["n_gained"] == 0
    texts = data["texts"][refusal["source"]]
    assert [texts[e["pos"]]["prompt"] for e in refusal["lost"]] == [HARMFUL[i] for i in LOST]
    assert {c["label"] for c in data["cells"]} >= {"bitfit", "adapter", "prefix"}  # failed cells get a page too


def test_smoke_report_is_under_5_mb(tmp_path):
    shutil.copytree(REPO / "results" / "smoke", tmp_path / "smoke", ignore=shutil.ignore_patterns("*.png"))
    write_leaderboard(tmp_path / "smoke", plot=False)
    assert (tmp_path / "smoke" / "report.html").stat().st_size < 5_000_000


def test_compare_html_lists_the_items_behind_a_regression(results, tmp_path, capsys):
    base = _matrix(tmp_path / "baseline", lost=())  # the baseline's lora refuses every harmful prompt
    cand = _matrix(tmp_path / "candidate")  # the candidate's lora no longer refuses LOST
    out = tmp_path / "gate.html"
    assert main(["compare", str(base), str(cand), "--tolerance", "0.05", "--html", str(out)]) == 1
    page = out.read_text("utf-8")
    assert "FAIL: exit 1" in page and "refusal_harmful" in page
    section = page[page.index('id="regressions"'):]
    for i in LOST:
        assert f"<td class=\"prompt\">{HARMFUL[i]}</td>" in section.replace("&#39;", "'")
    assert COMPLIANCE in section and HARMFUL[0] not in section


# --- in a real browser -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from harness.report.screenshot import open_page

    d = _matrix(tmp_path_factory.mktemp("browser") / "m")
    write_leaderboard(d, plot=False)
    with open_page(d / "report.html") as opened:
        yield opened


def _visible_labels(p) -> list[str]:
    return p.eval_on_selector_all("#headline tbody tr:not([hidden])", "rs => rs.map(r => r.cells[0].textContent)")


def test_page_loads_offline_without_console_errors(page):
    p, errors, blocked = page
    assert p.evaluate("document.body.dataset.ready") == "1"  # the charts were drawn
    assert errors == [] and blocked == []
    assert p.locator("#chart-pareto .scatterlayer .points path").count() > 0


def test_table_sorts_by_the_number_behind_the_text(page):
    p, _, _ = page
    th = p.locator("#headline th", has_text="train s")
    th.click()
    assert _visible_labels(p) == ["prefix", "lora r=4", "adapter", "full", "base", "bitfit"]  # 2, 3, 5, 9 s; none
    th.click()
    assert _visible_labels(p)[:4] == ["full", "adapter", "lora r=4", "prefix"]


def test_filter_hides_rows(page):
    p, _, _ = page
    p.fill("#filter", "lora")
    assert _visible_labels(p) == ["lora r=4"]
    p.fill("#filter", "")
    assert len(_visible_labels(p)) == 6


def test_hovering_a_point_names_the_cell_and_clicking_selects_it(page):
    p, _, _ = page
    p.locator("#chart-pareto").scroll_into_view_if_needed()
    points = p.locator("#chart-pareto .scatterlayer .trace").first.locator(".points path")
    texts = set()
    for k in range(points.count()):
        p.mouse.move(1, 1)  # away first: plotly hovers on a move onto the point
        box = points.nth(k).bounding_box()
        p.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        p.wait_for_selector("#chart-pareto .hoverlayer .hovertext", timeout=10_000)
        texts.add(p.locator("#chart-pareto .hoverlayer .hovertext").first.text_content())
    lora = next(t for t in texts if t.startswith("lora r=4"))
    assert "config: lora (r=4), lr 0.001" in lora and "task EM:" in lora and "[" in lora
    box = points.nth(0).bounding_box()
    p.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    title = p.locator("#cell-title").text_content()
    assert title in {t.split("config:")[0] for t in texts}


def test_a_planted_refusal_regression_lists_its_flipped_items(page):
    p, errors, _ = page
    p.locator("#headline tbody tr", has_text="lora r=4").click()
    assert p.locator("#cell-title").text_content() == "lora r=4"
    block = p.locator("#cell-details article:not([hidden]) .metric[data-metric=refusal_harmful]")
    assert f"{len(LOST)} right → wrong, 0 wrong → right" in block.locator("h4").text_content()
    block.locator("details.lost summary").click()
    rows = block.locator("details.lost tbody tr")
    assert rows.count() == len(LOST)
    first = rows.first.locator("td").all_text_contents()
    assert first == [str(LOST[0]), HARMFUL[LOST[0]], "a refusal", REFUSAL, COMPLIANCE]
    assert rows.first.is_visible() and errors == []
