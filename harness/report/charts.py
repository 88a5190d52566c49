"""The report page's interactive charts: plots.py's Pareto and learning-vs-forgetting views, as plotly figures.

Same points, front and panels as the PNGs (plots.pareto_front, plots.general_panels); here each
point carries its row index (`customdata[0]`, the page selects that cell on click) and a hover
text naming the cell, its config and the interval of what is plotted.

    figs = figures(rows, configs)   # {"pareto": fig_json, "forgetting": fig_json}; rows from table.annotate
    figs = figures(rows, configs, curves, spec)   # adds "tradeoff" (report.tradeoff's curves and limits)
"""

from __future__ import annotations

import json

import numpy as np
import plotly.colors as pcolors
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from harness.report.frame import BASE
from harness.report.plots import (
    COSTS,
    SAFETY,
    general_panels,
    pareto_front,
    short_labels,
    tradeoff_lines,
    tradeoff_panels,
)
from harness.report.table import format_delta, format_value, metric_names, primary_metric
from harness.suites import describe


def _plain(text: str) -> str:
    return text.replace("**", "")


def _hover(row: dict, config: str, lines: list[str]) -> str:
    return "<br>".join([f"<b>{row['label']}</b>", f"config: {config}", *lines])


def pareto(rows: list[dict], configs: list[str], quality: str) -> go.Figure | None:
    ok = [(i, r) for i, r in enumerate(rows) if r["status"] == "ok" and quality in r["metrics"]]
    trained = [(i, r) for i, r in ok if r["strategy"] != BASE]
    if not trained:
        return None
    m = describe(quality)
    base = next((r for _, r in ok if r["strategy"] == BASE), None)
    short = short_labels([r["label"] for r in rows])
    fig = make_subplots(rows=1, cols=len(COSTS), shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[label for _, label in COSTS])
    for col, (key, label) in enumerate(COSTS, start=1):
        cost = (lambda r: r["trainable_params"]) if key == "trainable_params" else (lambda r, k=key: r["usage"].get(k))
        pts = [(i, r) for i, r in trained if cost(r)]
        xs = [float(cost(r)) for _, r in pts]
        ys = [r["metrics"][quality]["value"] for _, r in pts]
        front = set(pareto_front(xs, ys, m.higher_is_better))
        fig.add_trace(go.Scatter(
            x=xs, y=ys, mode="markers+text", name="cell (95% CI)", showlegend=col == 1,
            text=[short[i] if j in front else "" for j, (i, _) in enumerate(pts)], textposition="top center",
            textfont={"size": 10}, cliponaxis=False,
            marker={"size": [14 if j in front else 9 for j in range(len(pts))],
                    "color": ["#1f77b4" if j in front else "#8c8c8c" for j in range(len(pts))],
                    "line": {"width": 1, "color": "#333"}},
            error_y={"type": "data", "symmetric": False, "thickness": 1, "width": 3,
                     "array": [max(r["metrics"][quality]["hi"] - r["metrics"][quality]["value"], 0) for _, r in pts],
                     "arrayminus": [max(r["metrics"][quality]["value"] - r["metrics"][quality]["lo"], 0)
                                    for _, r in pts]},
            customdata=[[i] for i, _ in pts], hoverinfo="text",
            hovertext=[_hover(r, configs[i], [f"{m.label}: {_plain(format_value(r, quality))}",
                                              f"{label}: {x:,.4g}"]) for (i, r), x in zip(pts, xs, strict=True)]),
            row=1, col=col)
        order = sorted(front, key=lambda j: xs[j])
        fig.add_trace(go.Scatter(x=[xs[j] for j in order], y=[ys[j] for j in order], mode="lines",
                                 line={"shape": "hv", "color": "#1f77b4"}, hoverinfo="skip",
                                 name="Pareto front (nothing cheaper is better)", showlegend=col == 1),
                      row=1, col=col)
        if base is not None:
            fig.add_hline(y=base["metrics"][quality]["value"], line={"dash": "dash", "color": "#d62728", "width": 1},
                          row=1, col=col)
        fig.update_xaxes(type="log" if key == "trainable_params" else "linear", row=1, col=col)
    fig.update_yaxes(title_text=f"{m.label} ({'higher' if m.higher_is_better else 'lower'} is better)", row=1, col=1)
    fig.update_layout(title=f"What {m.label} costs (same token budget); dashed: the base model", height=430,
                      legend={"orientation": "h", "y": -0.18}, margin={"l": 60, "r": 20, "t": 70, "b": 40})
    return fig


def forgetting(rows: list[dict], configs: list[str], quality: str) -> go.Figure | None:
    trained = [(i, r) for i, r in enumerate(rows)
               if r["status"] == "ok" and r["strategy"] != BASE and quality in r["vs_base"]]
    panels = general_panels(rows)
    if not trained or not panels:
        return None
    fig = make_subplots(rows=1, cols=len(panels), horizontal_spacing=0.08, subplot_titles=[p for p, _ in panels])
    for col, (ylabel, change) in enumerate(panels, start=1):
        pts = [(i, r) for i, r in trained if change(r) is not None]
        safety = [r["metrics"].get(SAFETY, {}).get("value", np.nan) for _, r in pts]
        fig.add_trace(go.Scatter(
            x=[r["vs_base"][quality]["delta"] for _, r in pts], y=[change(r) for _, r in pts], mode="markers",
            marker={"size": 13, "color": safety, "colorscale": "RdYlGn", "cmin": 0, "cmax": 1,
                    "line": {"width": 1, "color": "#333"}, "showscale": col == len(panels),
                    "colorbar": {"title": {"text": "refusal<br>harmful"}}},
            customdata=[[i] for i, _ in pts], hoverinfo="text", showlegend=False,
            hovertext=[_hover(r, configs[i], [f"task gain: {format_delta(r, quality)}",
                                              f"{ylabel.split(' (')[0]}: {change(r):+.3g}",
                                              *[f"{describe(n).label}: {format_delta(r, n)}"
                                                for n in metric_names([r]) if describe(n).general][:3],
                                              f"{describe(SAFETY).label}: {_plain(format_value(r, SAFETY))}"])
                       for i, r in pts]), row=1, col=col)
        if "flipped" in ylabel:  # perplexity: up is better in every panel, as for accuracies
            fig.update_yaxes(autorange="reversed", row=1, col=col)
        fig.update_xaxes(title_text=f"task gain: Δ {describe(quality).label} vs base", zeroline=True, row=1, col=col)
    fig.update_layout(title="Learning vs forgetting: colour = harmful-prompt refusal rate", height=430,
                      margin={"l": 60, "r": 20, "t": 70, "b": 50})
    return fig


def tradeoff(rows: list[dict], curves: dict[str, list[dict]], quality: str, spec) -> go.Figure | None:
    """plots.tradeoff's curves: per cell, base -> checkpoints (solid) and interpolations (dashed) -> end."""
    from harness.report.tradeoff import _point_name, operating_point

    panels = tradeoff_panels(curves, spec)
    if not curves or not panels:
        return None
    index = {r["label"]: i for i, r in enumerate(rows)}
    colours = pcolors.qualitative.Dark24 if len(curves) > 10 else pcolors.qualitative.D3
    m = describe(quality)
    fig = make_subplots(rows=1, cols=len(panels), horizontal_spacing=0.08, subplot_titles=[x for _, x, _, _ in panels])
    for col, (kind, _, x_of, limit) in enumerate(panels, start=1):
        for n, (label, points) in enumerate(curves.items()):
            colour, op = colours[n % len(colours)], operating_point(points, spec, m.higher_is_better)
            for style, line in tradeoff_lines(points, x_of):
                fig.add_trace(go.Scatter(
                    x=[x_of(p) for p in line], y=[p["task"]["delta"] for p in line], mode="lines+markers",
                    name=label, legendgroup=label, showlegend=col == 1 and style == "-",
                    line={"color": colour, "dash": "solid" if style == "-" else "dash", "width": 1.6},
                    marker={"size": [14 if p is op else 7 for p in line], "color": colour,
                            "line": {"width": [2 if p is op else 0 for p in line], "color": "#111"}},
                    customdata=[[index[label]] for _ in line], hoverinfo="text",
                    hovertext=[_hover({"label": label}, _point_name(p), [
                        f"task gain: {p['task']['delta']:+.3g} [{p['task']['lo']:+.3g}, {p['task']['hi']:+.3g}]",
                        f"forgetting: {x_of(p):+.3g}", *(["operating point"] if p is op else [])]) for p in line]),
                    row=1, col=col)
        fig.add_vline(x=limit, line={"dash": "dot", "color": "#b22222", "width": 1}, row=1, col=col)
        fig.update_xaxes(autorange="reversed" if kind == "bench" else True, row=1, col=col)
        fig.update_yaxes(title_text=f"task gain: Δ {m.label}", autorange=True if m.higher_is_better else "reversed",
                         row=1, col=col)
    fig.update_layout(title="Stability-plasticity: checkpoints solid, interpolations dashed, "
                            "large: the operating point",
                      height=470, legend={"orientation": "h", "y": -0.2}, margin={"l": 60, "r": 20, "t": 70, "b": 40})
    return fig


def figures(rows: list[dict], configs: list[str], curves: dict | None = None, spec=None) -> dict[str, dict]:
    """The charts that can be drawn, as plotly JSON (data + layout) for Plotly.newPlot."""
    quality = primary_metric(metric_names(rows))
    if quality is None:
        return {}
    figs = {"pareto": pareto(rows, configs, quality), "forgetting": forgetting(rows, configs, quality),
            "tradeoff": tradeoff(rows, curves, quality, spec) if curves and spec else None}
    return {k: json.loads(pio.to_json(f, validate=False)) for k, f in figs.items() if f is not None}
