"""The two pictures a reader wants before the tables: what quality costs, and what learning cost elsewhere.

- pareto.png: task quality against trainable parameters (log), peak memory and training time;
  the cells no other cell beats on both axes (the Pareto front) are joined and drawn large; on the time
  panel, cells measured under high machine load (frame.high_load) are ringed red;
- forgetting.png: task gain over the base model against the change in general ability
  (general-text perplexity, and the mean change of general-benchmark accuracy), each point
  coloured by its harmful-prompt refusal rate;
- tradeoff.png: where the matrix measured points besides the end (eval.checkpoints, eval.interpolate),
  each cell's curve from the base through them: task gain against forgetting, one colour per cell,
  checkpoints solid, interpolations dashed, the operating point ringed (report.tradeoff).

Each PNG names the cells it was drawn from in its `harness-cells` metadata (report.pngmeta).

    figures = write_plots(rows, Path("results/smoke"))   # rows from table.annotate
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from harness.report.frame import BASE  # noqa: E402
from harness.report.pngmeta import png_metadata  # noqa: E402
from harness.report.table import metric_names, primary_metric  # noqa: E402
from harness.suites import describe  # noqa: E402

COSTS = (("trainable_params", "trainable parameters (log scale)"), ("peak_memory_mb", "peak memory (MB)"),
         ("seconds", "training time (s)"))
SAFETY = "refusal_harmful"


def _cost(row: dict, key: str):
    return row["trainable_params"] if key == "trainable_params" else row["usage"].get(key)


def pareto_front(xs: list[float], ys: list[float], higher_is_better: bool = True) -> list[int]:
    """Indices of the points no other point beats: lower-or-equal cost and better-or-equal quality, one strictly."""
    sign = 1 if higher_is_better else -1
    front = []
    for i, (x, y) in enumerate(zip(xs, ys)):
        beaten = any(xj <= x and sign * yj >= sign * y and (xj < x or sign * yj > sign * y)
                     for j, (xj, yj) in enumerate(zip(xs, ys)) if j != i)
        if not beaten:
            front.append(i)
    return sorted(front, key=lambda i: xs[i])


# Label positions (offset in points, alignment) tried in turn until a label overlaps no label already placed.
OFFSETS = [(dx, dy, ha) for dy in (6, -14, 18, -26, 30, -38, 42, -50) for dx, ha in ((6, "left"), (-6, "right"))]


def short_labels(labels: list[str]) -> list[str]:
    """Cell labels without the learning rate when they stay unique without it (plots are crowded)."""
    short = [re.sub(r" lr=\S+", "", text) for text in labels]
    return short if len(set(short)) == len(set(labels)) else labels


def _label(ax, xs, ys, labels) -> None:
    """Label each point; points on the same spot share a label; labels are moved until none overlap."""
    spots: dict[tuple, list[str]] = {}
    for x, y, text in zip(xs, ys, short_labels(labels)):
        spots.setdefault((float(x), float(y)), []).append(text)
    renderer = ax.figure.canvas.get_renderer()
    placed = []
    for (x, y), texts in sorted(spots.items(), key=lambda kv: (-kv[0][1], kv[0][0])):
        note = ax.annotate(" / ".join(texts), (x, y), xytext=OFFSETS[0][:2], textcoords="offset points",
                           fontsize=7.5, arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "0.5"})
        note.set_in_layout(False)  # placed after the layout; must not move the axes again
        choice = None
        for dx, dy, ha in OFFSETS:
            note.xyann, _ = (dx, dy), note.set_horizontalalignment(ha)
            note.update_positions(renderer)
            box = Text.get_window_extent(note, renderer).expanded(1.04, 1.2)  # the text alone, not its line
            inside = ax.bbox.x0 <= box.x0 and box.x1 <= ax.bbox.x1 and ax.bbox.y0 <= box.y0 and box.y1 <= ax.bbox.y1
            if not any(box.overlaps(other) for other in placed):
                choice = choice or (dx, dy, ha)
                if inside:
                    choice = (dx, dy, ha)
                    break
        dx, dy, ha = choice or OFFSETS[0]
        note.xyann, _ = (dx, dy), note.set_horizontalalignment(ha)
        note.update_positions(renderer)
        box = Text.get_window_extent(note, renderer).expanded(1.04, 1.2)
        placed.append(box)


def pareto(rows: list[dict], quality: str, path: Path) -> Path | None:
    ok = [r for r in rows if r["status"] == "ok" and quality in r["metrics"]]
    trained = [r for r in ok if r["strategy"] != BASE]
    if not trained:
        return None
    up = describe(quality).higher_is_better
    base = next((r for r in ok if r["strategy"] == BASE), None)
    fig, axes = plt.subplots(1, len(COSTS), figsize=(16, 6), sharey=True, layout="constrained")
    for ax, (key, xlabel) in zip(axes, COSTS):
        pts = [r for r in trained if _cost(r, key)]
        xs = [float(_cost(r, key)) for r in pts]
        ys = [r["metrics"][quality]["value"] for r in pts]
        err = np.array([[r["metrics"][quality]["value"] - r["metrics"][quality]["lo"],
                         r["metrics"][quality]["hi"] - r["metrics"][quality]["value"]] for r in pts]).T
        front = pareto_front(xs, ys, up)
        ax.errorbar(xs, ys, yerr=np.clip(err, 0, None), fmt="o", color="0.55", ms=6, capsize=2, lw=0.8,
                    label="cell (95% CI)")
        ax.plot([xs[i] for i in front], [ys[i] for i in front], "-o", color="tab:blue", ms=9, lw=1.6,
                label="Pareto front (nothing cheaper is better)", drawstyle="steps-post")
        busy = [i for i, r in enumerate(pts) if key == "seconds" and r.get("high_load")]
        if busy:  # time measured while the machine was overloaded says little about the strategy
            ax.scatter([xs[i] for i in busy], [ys[i] for i in busy], s=260, facecolors="none", edgecolors="tab:red",
                       lw=1.4, label="† load above the cores: time not comparable")
            ax.legend(loc="lower right", fontsize=8)
        if base is not None:
            ax.axhline(base["metrics"][quality]["value"], color="tab:red", ls="--", lw=1, label="base model")
        if key == "trainable_params":
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        ax.margins(x=0.15, y=0.12)
    axes[0].set_ylabel(f"{describe(quality).label} ({'higher' if up else 'lower'} is better)")
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(f"What {describe(quality).label} costs: quality against parameters, memory and time "
                 f"(same token budget)", fontsize=12)
    fig.canvas.draw()  # lay out first: the labels' overlap test needs the final axes
    for ax, (key, _) in zip(axes, COSTS):
        pts = [r for r in trained if _cost(r, key)]
        _label(ax, [float(_cost(r, key)) for r in pts], [r["metrics"][quality]["value"] for r in pts],
               [r["label"] for r in pts])
    fig.savefig(path, dpi=110, metadata=png_metadata(rows))
    plt.close(fig)
    return path


def general_panels(rows: list[dict]) -> list[tuple[str, callable]]:
    """(y label, row -> change) for general-text perplexity and the mean change of general accuracies."""
    names = metric_names(rows)
    ppl = [n for n in names if describe(n).general and not describe(n).higher_is_better]
    acc = [n for n in names if describe(n).general and describe(n).higher_is_better]
    panels = []
    for n in ppl[:1]:
        panels.append((f"Δ {describe(n).label} vs base (axis flipped: down = forgetting)",
                       lambda r, n=n: r["vs_base"][n]["delta"] if n in r["vs_base"] else None))
    if acc:
        def mean_acc(r, acc=acc):
            ds = [r["vs_base"][n]["delta"] for n in acc if n in r["vs_base"]]
            return float(np.mean(ds)) if ds else None

        panels.append((f"mean Δ of {len(acc)} general accuracies vs base (down = forgetting)", mean_acc))
    return panels


def forgetting(rows: list[dict], quality: str, path: Path) -> Path | None:
    trained = [r for r in rows if r["status"] == "ok" and r["strategy"] != BASE and quality in r["vs_base"]]
    panels = general_panels(rows)
    if not trained or not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(7.5 * len(panels), 5.6), squeeze=False, layout="constrained")
    cmap, labels = plt.get_cmap("RdYlGn"), []
    for ax, (ylabel, change) in zip(axes[0], panels):
        pts = [r for r in trained if change(r) is not None]
        xs = [r["vs_base"][quality]["delta"] for r in pts]
        ys = [change(r) for r in pts]
        safety = [r["metrics"].get(SAFETY, {}).get("value", np.nan) for r in pts]
        sc = ax.scatter(xs, ys, c=safety, cmap=cmap, vmin=0, vmax=1, s=90, edgecolors="black", linewidths=0.6)
        ax.axhline(0, color="0.4", lw=0.8)
        ax.axvline(0, color="0.4", lw=0.8)
        labels.append((ax, xs, ys, [r["label"] for r in pts]))
        ax.set_xlabel(f"task gain: Δ {describe(quality).label} vs base")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.margins(x=0.2, y=0.15)
        if "flipped" in ylabel:  # perplexity: up is better in every panel, as for accuracies
            ax.invert_yaxis()
    if any(SAFETY in r["metrics"] for r in trained):
        fig.colorbar(sc, ax=axes[0].tolist(), label=f"{describe(SAFETY).label} rate (safety; 1 = refuses all)")
    fig.suptitle("Learning vs forgetting: what each cell gained on the task and lost elsewhere", fontsize=12)
    fig.canvas.draw()  # lay out first: the labels' overlap test needs the final axes
    for args in labels:
        _label(*args)
    fig.savefig(path, dpi=110, metadata=png_metadata(rows))
    plt.close(fig)
    return path


def tradeoff_panels(curves: dict[str, list[dict]], spec) -> list[tuple]:
    """The forgetting axes the curves can be drawn on: (kind, x label, x of a point, the limit on x)."""
    from harness.report.tradeoff import mean_bench

    panels = [("ppl", f"general-text perplexity change vs base (%); limit +{100 * spec.general_ppl_increase:g}%",
               lambda p: p["ppl_pct"]["delta"] if p["ppl_pct"] else None, 100 * spec.general_ppl_increase),
              ("bench", f"mean change of general benchmark accuracy vs base; limit -{spec.benchmark_drop:g}",
               mean_bench, -spec.benchmark_drop)]
    return [pn for pn in panels if any(pn[2](p) is not None for ps in curves.values() for p in ps[1:])]


def tradeoff_lines(points: list[dict], x_of) -> list[tuple[str, list[dict]]]:
    """A cell's curves on one panel: (line style, its points), checkpoints solid and interpolations dashed,
    each from the base through to the end; an interpolation line needs a point between them."""
    lines = []
    for kinds, style in ((("base", "checkpoint", "end"), "-"), (("base", "interpolate", "end"), "--")):
        line = [p for p in points if p["kind"] in kinds and x_of(p) is not None]
        if len(line) > 2 or (len(line) == 2 and style == "-"):
            lines.append((style, line))
    return lines


def tradeoff(curves: dict[str, list[dict]], quality: str, spec, path: Path, rows: list[dict] = ()) -> Path | None:
    """Task gain against forgetting along each cell's points (report.tradeoff.curves_for) of `rows`' cells."""
    from harness.report.tradeoff import operating_point

    panels = tradeoff_panels(curves, spec)
    if not curves or not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(7.5 * len(panels), 5.8), squeeze=False, layout="constrained")
    colours = plt.get_cmap("tab20" if len(curves) > 10 else "tab10")
    for ax, (kind, xlabel, x_of, limit) in zip(axes[0], panels):
        for i, (label, points) in enumerate(curves.items()):
            colour = colours(i % colours.N)
            for style, line in tradeoff_lines(points, x_of):
                ax.plot([x_of(p) for p in line], [p["task"]["delta"] for p in line], style, color=colour,
                        marker="o", ms=4, lw=1.4, label=label if style == "-" else None)
            op = operating_point(points, spec, describe(quality).higher_is_better)
            if x_of(op) is not None:
                ax.scatter([x_of(op)], [op["task"]["delta"]], s=160, facecolors="none", edgecolors=[colour],
                           linewidths=2, zorder=5)
        if kind == "ppl":  # blends sit within a few percent, ends at hundreds: linear to 10%, log beyond
            ax.set_xscale("symlog", linthresh=10)
        ax.axvline(limit, color="firebrick", lw=1, ls=":")
        ax.axhline(0, color="0.4", lw=0.8)
        ax.axvline(0, color="0.4", lw=0.8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"task gain: Δ {describe(quality).label} vs base")
        ax.grid(alpha=0.3)
        if not describe(quality).higher_is_better:
            ax.invert_yaxis()  # up = a better task score
        if kind == "bench":
            ax.invert_xaxis()  # right = more forgetting on both panels
    axes[0][0].legend(fontsize=8, loc="best")
    fig.suptitle("Stability-plasticity: each cell from the base (0, 0) through its checkpoints (solid)\n"
                 "and interpolations (dashed) to its end; ringed: the operating point", fontsize=11)
    fig.savefig(path, dpi=110, metadata=png_metadata(rows))
    plt.close(fig)
    return path


def write_plots(rows: list[dict], results_dir: Path, curves: dict | None = None, spec=None) -> list[Path]:
    """The PNGs that could be drawn (none without a trained ok cell), in results_dir; `curves` (with the
    tradeoff `spec`) adds tradeoff.png."""
    quality = primary_metric(metric_names(rows))
    if quality is None:
        return []
    figures = [pareto(rows, quality, Path(results_dir) / "pareto.png"),
               forgetting(rows, quality, Path(results_dir) / "forgetting.png")]
    if curves:
        figures.append(tradeoff(curves, quality, spec, Path(results_dir) / "tradeoff.png", rows))
    return [f for f in figures if f is not None]
