"""Plots as PNG files (matplotlib's object API on the Agg canvas: no display, no global state)."""
from __future__ import annotations

import io
import math
from typing import Sequence

from .formats import atomic_write

__all__ = ["line_plot", "loss_curves"]


def _save(figure, path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def line_plot(path, title: str, panels: Sequence[tuple], x_label: str, log_x: bool = False) -> None:
    """Panels side by side, one line with markers per series.

    panels: [(panel title, {series name: (xs, ys)})]; log_x: a log2 x axis (batch sizes)."""
    from matplotlib.figure import Figure

    panels = list(panels)
    if not panels:
        raise ValueError("line_plot: no panels")
    figure = Figure(figsize=(4.2 * len(panels), 3.6), layout="constrained")
    figure.suptitle(title)
    for axes, (panel_title, series) in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels):
        for name, (xs, ys) in series.items():
            if len(xs) != len(ys):
                raise ValueError(f"line_plot: series {name!r} of {panel_title!r} has {len(xs)} x and {len(ys)} y")
            pairs = [(x, y) for x, y in zip(xs, ys) if y is not None and math.isfinite(y)]
            if pairs:
                axes.plot(*zip(*pairs), marker="o", label=str(name))
        if log_x:
            axes.set_xscale("log", base=2)
        axes.set_title(panel_title)
        axes.set_xlabel(x_label)
        axes.set_ylim(bottom=0) if not axes.get_yscale() == "log" else None
        axes.grid(True, alpha=0.3)
        if series:
            axes.legend(fontsize=8)
    _save(figure, path)


def loss_curves(path, records: Sequence[dict]) -> None:
    """One panel per float term of `records` (dicts with 'step' and float terms) against the step."""
    records = [r for r in records if "step" in r]
    terms = sorted({k for r in records for k, v in r.items()
                    if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)})
    if not terms:
        raise ValueError("loss_curves: the records hold no float terms besides 'step'")
    from matplotlib.figure import Figure

    columns = min(3, len(terms))
    rows = -(-len(terms) // columns)
    figure = Figure(figsize=(4.2 * columns, 3.2 * rows), layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False)
    for i, term in enumerate(terms):
        axes = grid[i // columns][i % columns]
        points = [(r["step"], r[term]) for r in records if isinstance(r.get(term), (int, float))]
        axes.plot(*zip(*points))
        axes.set_title(term)
        axes.set_xlabel("step")
        axes.grid(True, alpha=0.3)
    for j in range(len(terms), rows * columns):
        grid[j // columns][j % columns].set_visible(False)
    _save(figure, path)
