"""Line plots for the benchmark figures (matplotlib's Agg canvas on a Figure object, so no
pyplot global state and no display is needed).

Minimal stand-in: the full module is being written on another branch with this same
signature, and replaces this file when the branches merge.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["line_plot"]


def line_plot(path, title: str, panels, x_label: str, log_x: bool = False) -> Path:
    """panels: [(panel title, {series name: (xs, ys)})], side by side -> the image at `path`
    (its suffix picks the format: .png, .svg, .pdf)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = list(panels)
    fig = Figure(figsize=(4.5 * max(len(panels), 1), 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, max(len(panels), 1), squeeze=False)[0]
    for ax, (panel_title, series) in zip(axes, panels):
        for name, (xs, ys) in series.items():
            if len(xs):
                ax.plot(list(xs), list(ys), marker="o", label=name)
        if log_x:
            ax.set_xscale("log", base=2)
            ticks = sorted({x for xs, _ in series.values() for x in xs})
            ax.set_xticks(ticks, [f"{x:g}" for x in ticks])
            ax.minorticks_off()
        ax.set_title(panel_title)
        ax.set_xlabel(x_label)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        if series:
            ax.legend(fontsize="small")
    fig.suptitle(title)
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path
