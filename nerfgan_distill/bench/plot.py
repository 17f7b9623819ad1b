"""A small SVG line plot (no plotting dependency): panels side by side, a log2 x axis
(batch sizes), a linear y axis from 0, one polyline per series."""
from __future__ import annotations

import math
from html import escape

__all__ = ["line_plot_svg"]

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
PANEL_W, PANEL_H, MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 360, 260, 60, 20, 40, 50


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    step = 10 ** math.floor(math.log10(value))
    for multiple in (1, 2, 2.5, 5, 10):
        if multiple * step >= value:
            return multiple * step
    return 10 * step


def _panel(x0: float, title: str, series: dict, x_label: str) -> list[str]:
    points = [p for s in series.values() for p in s]
    xs = sorted({x for x, _ in points}) or [1]
    lo, hi = math.log2(min(xs)), math.log2(max(xs))
    hi = hi if hi > lo else lo + 1
    y_max = _nice_max(max((y for _, y in points), default=1.0))
    left, top = x0 + MARGIN_L, MARGIN_T
    width, height = PANEL_W - MARGIN_L - MARGIN_R, PANEL_H - MARGIN_T - MARGIN_B

    def px(x):
        return left + (math.log2(x) - lo) / (hi - lo) * width

    def py(y):
        return top + height - y / y_max * height

    out = [f'<text x="{left + width / 2}" y="{top - 12}" text-anchor="middle" font-weight="bold">{escape(title)}</text>',
           f'<rect x="{left}" y="{top}" width="{width}" height="{height}" fill="none" stroke="#888"/>',
           f'<text x="{left + width / 2}" y="{top + height + 38}" text-anchor="middle">{escape(x_label)}</text>']
    for x in xs:
        out.append(f'<text x="{px(x):.1f}" y="{top + height + 18}" text-anchor="middle">{x:g}</text>')
    for i in range(5):
        y = y_max * i / 4
        out.append(f'<line x1="{left}" x2="{left + width}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{left - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:g}</text>')
    for color, (name, values) in zip(COLORS, series.items()):
        values = sorted(values)
        if values:
            path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in values)
            out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
            out += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{color}"/>' for x, y in values]
    return out


def line_plot_svg(title: str, panels: list[tuple[str, dict]], x_label: str) -> str:
    """panels: [(panel title, {series name: [(x > 0, y), ...]})] -> SVG text."""
    width, height = PANEL_W * len(panels), PANEL_H + 40
    body = [f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="14">{escape(title)}</text>']
    for i, (panel_title, series) in enumerate(panels):
        body += ['<g transform="translate(0,20)">', *_panel(i * PANEL_W, panel_title, series, x_label), "</g>"]
    names = list(dict.fromkeys(name for _, series in panels for name in series))
    for i, (color, name) in enumerate(zip(COLORS, names)):
        body.append(f'<rect x="{10 + i * 120}" y="{height - 14}" width="12" height="4" fill="{color}"/>'
                    f'<text x="{26 + i * 120}" y="{height - 9}">{escape(name)}</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
            f'font-size="11">\n' + "\n".join(body) + "\n</svg>\n")
