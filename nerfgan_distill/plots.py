"""PNG plots with matplotlib, for benchmarks (speed and memory against batch size) and
training (loss curves from JSON-lines metrics). Figures are built with matplotlib's object API
on the Agg canvas, never pyplot, so nothing touches global state or needs a display; files
are written atomically."""
from __future__ import annotations

import io
import json
import math
import numbers
import os
from typing import Iterable, Sequence, Union

from .formats import atomic_write

__all__ = ["line_plot", "loss_curves", "read_jsonl"]

PathLike = Union[str, os.PathLike]
PANEL_SIZE = (4.8, 3.6)  # inches per panel
DPI = 100
MAX_DATA_TICKS = 12  # up to this many distinct x values, the ticks sit on them (batch sizes)
MAX_MARKED_POINTS = 50  # longer series (training curves) are drawn as plain lines


def line_plot(path: PathLike, title: str, panels: Sequence, x_label: str, *, log_x: Union[bool, int] = False,
              log_y: bool = False, y_from_zero: bool = True) -> None:
    """Write panels side by side as one PNG. panels: [(panel title, {series name: (xs, ys)})];
    a series keeps its colour in every panel. log_x: True for a base-10 x axis, or the base
    (2 for batch sizes). Non-finite ys leave gaps; empty series are left out."""
    panels = _check_panels(panels, log_x, log_y)
    names = list(dict.fromkeys(name for _, series in panels for name in series))
    colors = {name: f"C{i % 10}" for i, name in enumerate(names)}
    figure = _figure(len(panels))
    figure.suptitle(title)
    for i, (panel_title, series) in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), i + 1)
        _draw_panel(axes, panel_title, series, colors, x_label, log_x, log_y, y_from_zero)
    _save(figure, path, title, "; ".join(panel_title for panel_title, _ in panels))


def loss_curves(path: PathLike, records, title: str = "training losses", keys: Sequence[str] | None = None,
                log_y: bool = False) -> None:
    """Write training metrics as one PNG, one line per loss term against 'step'. records: dicts
    with 'step' and float terms (the lines of a metrics file), or the path of a JSON-lines file.
    keys: the terms to draw (default: every key other than 'step' whose values are numbers)."""
    if isinstance(records, (str, os.PathLike)):
        records = read_jsonl(records)
    records = _check_records(records)
    keys = _loss_keys(records, keys)
    series = {}
    for key in keys:
        points = sorted((r["step"], float(r[key])) for r in records if key in r)
        series[key] = ([s for s, _ in points], [v for _, v in points])
    line_plot(path, title, [("loss", series)], "step", log_y=log_y, y_from_zero=False)


def read_jsonl(path: PathLike) -> list:
    """The JSON objects of a JSON-lines file, one a line (blank lines skipped). A last line with
    no newline that does not parse is an append in progress (a run still writing) and is left out."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as e:
            if number == len(lines):
                break
            raise ValueError(f"{os.fspath(path)} line {number}: not valid JSON ({e})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{os.fspath(path)} line {number}: expected a JSON object, got {type(record).__name__}")
        records.append(record)
    return records


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_panels(panels, log_x, log_y) -> list:
    if not (isinstance(log_x, bool) or (isinstance(log_x, int) and log_x >= 2)):
        raise ValueError(f"line_plot: log_x must be True, False or an int base >= 2, got {log_x!r}")
    if not isinstance(panels, (list, tuple)) or not panels:
        raise ValueError("line_plot: panels must be a non-empty list of (title, {series: (xs, ys)})")
    checked = []
    for i, panel in enumerate(panels):
        if not (isinstance(panel, (list, tuple)) and len(panel) == 2 and isinstance(panel[1], dict)):
            raise ValueError(f"line_plot: panels[{i}] must be (title, {{series name: (xs, ys)}})")
        title, series = str(panel[0]), {}
        for name, values in panel[1].items():
            series[str(name)] = _check_series(values, f"line_plot: panel {title!r}, series {name!r}", log_x, log_y)
        checked.append((title, series))
    return checked


def _check_series(values, where: str, log_x, log_y) -> tuple:
    if not (isinstance(values, (list, tuple)) and len(values) == 2):
        raise ValueError(f"{where}: must be (xs, ys)")
    xs, ys = (list(v) for v in values)
    if len(xs) != len(ys):
        raise ValueError(f"{where}: {len(xs)} xs but {len(ys)} ys")
    if not all(_is_number(v) for v in xs + ys):
        raise ValueError(f"{where}: xs and ys must be numbers")
    if log_x and any(not x > 0 for x in xs):
        raise ValueError(f"{where}: a log x axis needs xs > 0")
    if log_y and any(y <= 0 for y in ys):  # NaN passes: it is a gap
        raise ValueError(f"{where}: a log y axis needs ys > 0")
    return xs, ys


def _check_records(records) -> list:
    records = list(records) if isinstance(records, Iterable) and not isinstance(records, (str, bytes, dict)) else None
    if not records:
        raise ValueError("loss_curves: records must be a non-empty list of dicts (or a JSON-lines file)")
    for i, record in enumerate(records):
        if not isinstance(record, dict) or not _is_number(record.get("step")):
            raise ValueError(f"loss_curves: records[{i}] must be a dict with a numeric 'step', got {record!r:.80}")
    return records


def _loss_keys(records: list, keys) -> list:
    present = list(dict.fromkeys(k for r in records for k in r if k != "step"))
    if keys is None:
        keys = [k for k in present if all(_is_number(r[k]) for r in records if k in r)]
        if not keys:
            raise ValueError("loss_curves: no numeric terms in the records besides 'step'")
        return keys
    for key in keys:
        if key not in present:
            raise ValueError(f"loss_curves: key {key!r} is in no record (present: {', '.join(present)})")
        bad = next((r[key] for r in records if key in r and not _is_number(r[key])), None)
        if bad is not None:
            raise ValueError(f"loss_curves: key {key!r} has a non-numeric value {bad!r:.40}")
    return list(keys)


def _figure(n_panels: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(PANEL_SIZE[0] * n_panels, PANEL_SIZE[1] + 0.4), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _draw_panel(axes, title: str, series: dict, colors: dict, x_label: str, log_x, log_y, y_from_zero) -> None:
    axes.set_title(title)
    axes.set_xlabel(x_label)
    axes.grid(True, color="#e5e5e5")
    xs_seen = set()
    for name, (xs, ys) in series.items():
        if xs:
            marker = "o" if len(xs) <= MAX_MARKED_POINTS else None
            axes.plot(xs, ys, marker=marker, markersize=3, color=colors[name], label=name)
            xs_seen.update(xs)
    if log_x:
        axes.set_xscale("log", base=10 if log_x is True else log_x)
    if log_y:
        axes.set_yscale("log")
    if xs_seen and len(xs_seen) <= MAX_DATA_TICKS and log_x:
        ticks = sorted(xs_seen)
        axes.set_xticks(ticks, [f"{x:g}" for x in ticks])
        axes.minorticks_off()
    if not xs_seen:
        axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes, color="#888")
    elif y_from_zero and not log_y:
        finite = [y for _, ys in series.values() for y in ys if math.isfinite(y)]
        if finite and min(finite) >= 0:
            axes.set_ylim(bottom=0)
    if any(xs for xs, _ in series.values()):
        axes.legend()


def _save(figure, path: PathLike, title: str, description: str) -> None:
    """PNG bytes in memory, then one atomic write; the title and panel names go into the
    PNG's text chunks, so a file says what it shows."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Title": title, "Description": description})
    data = buffer.getvalue()
    atomic_write(path, lambda f: f.write(data))
