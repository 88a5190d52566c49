"""Pictures match the numbers: every PNG the harness writes names the cells it was drawn from (a `harness-cells`
tEXt chunk, harness/report/pngmeta.py), and every committed PNG under results/ names the cells of its folder's
summary, so a screenshot or plot left over from an older run of the matrix fails here.

When this fails after a re-run, re-render the folder's pictures from its results:

    harness leaderboard results/<folder>
    python -m harness.report.screenshot results/<folder>/report.html results/<folder>/report.png   # if it has one
"""

from __future__ import annotations

import csv
import json
import shutil
import struct
import sys
import zlib

import pytest
from conftest import REPO

from harness.report.leaderboard import write_leaderboard
from harness.report.pngmeta import KEY, cell_ids, read_cells, stamp, text_chunks

FOLDERS = sorted(p.parent for p in (REPO / "results").glob("*/summary.json"))


def _summary_cells(folder) -> list[str]:
    return cell_ids(json.loads((folder / "summary.json").read_text(encoding="utf-8"))["rows"])


@pytest.mark.parametrize("folder", FOLDERS, ids=[f.name for f in FOLDERS])
def test_every_committed_picture_names_the_cells_of_its_folders_summary(folder):
    cells = _summary_cells(folder)
    with (folder / "summary.csv").open(encoding="utf-8", newline="") as f:  # the two summaries list one set
        assert sorted(i for row in csv.DictReader(f) for i in row["ids"].split()) == cells
    pictures = sorted(folder.glob("*.png"))
    assert pictures, f"{folder.name}: no PNG to check"
    stale = {p.name: read_cells(p) for p in pictures if read_cells(p) != cells}
    assert not stale, (f"{folder.name}: these pictures were not drawn from the folder's {len(cells)} cells "
                       f"(None: no {KEY} metadata, an older picture): {stale}; re-render them from the results "
                       f"(harness leaderboard, python -m harness.report.screenshot)")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """A committed results folder without its pictures, its leaderboard and plots written again."""
    d = tmp_path_factory.mktemp("pictures") / "tradeoff"
    shutil.copytree(REPO / "results" / "smollm2-135m-tradeoff", d, ignore=shutil.ignore_patterns("*.png"))
    write_leaderboard(d)
    return d


def test_the_plots_name_the_cells_they_were_drawn_from(rendered):
    cells = _summary_cells(rendered)
    assert {p.name: read_cells(p) for p in rendered.glob("*.png")} == {
        name: cells for name in ("pareto.png", "forgetting.png", "tradeoff.png")}


@pytest.mark.xdist_group("browser")
def test_the_report_screenshot_names_the_cells_of_its_page(rendered):
    pytest.importorskip("playwright")
    from harness.report.screenshot import chromium_path, screenshot

    if chromium_path() is None:
        pytest.skip("no Chromium")
    out = screenshot(rendered / "report.html", rendered / "report.png")
    assert read_cells(out) == _summary_cells(rendered)


def _png(width: int = 3, height: int = 2) -> bytes:
    """A small RGB PNG written with the standard library."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = b"".join(b"\0" + b"".join(bytes([10 * x, 20 * y, 30]) for x in range(width)) for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"tEXt", b"Title\0kept") + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("pillow", [True, False], ids=["pillow", "stdlib"])
def test_stamp_writes_and_replaces_the_cells_chunk(tmp_path, monkeypatch, pillow):
    from PIL import Image

    path = tmp_path / "p.png"
    path.write_bytes(_png())
    with Image.open(path) as im:
        pixels = list(im.convert("RGB").getdata())
    if not pillow:
        monkeypatch.setitem(sys.modules, "PIL", None)  # `from PIL import ...` raises ImportError
    stamp(path, ["b", "a"])
    stamp(path, ["c", "b", "a"])  # a second stamp replaces the first
    monkeypatch.undo()
    assert read_cells(path) == ["a", "b", "c"]
    assert text_chunks(path) == {"Title": "kept", KEY: "a,b,c"}
    assert path.read_bytes().count(KEY.encode()) == 1
    with Image.open(path) as im:
        assert list(im.convert("RGB").getdata()) == pixels  # the picture itself is unchanged
