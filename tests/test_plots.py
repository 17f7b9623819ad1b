"""Tests of nerfgan_distill.plots: matplotlib PNG line plots and loss curves, read back with
Pillow (size, text chunks, which series colours were drawn)."""
import json
import os
import sys

import numpy as np
import pytest
from PIL import Image

from nerfgan_distill import formats
from nerfgan_distill.plots import line_plot, loss_curves, read_jsonl

BLUE, ORANGE, GREEN = (0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E), (0x2C, 0xA0, 0x2C)  # matplotlib's C0, C1, C2


def read(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB")), dict(im.info)


def has_color(pixels, rgb, min_pixels=20):
    return int((np.abs(pixels.astype(int) - rgb).max(axis=2) <= 8).sum()) >= min_pixels


def bench_panels(reference=True):
    series = {"fast": ([1, 2, 4], [3.0, 5.5, 6.0])}
    if reference:
        series["reference"] = ([1, 2, 4], [1.0, 1.5, 1.6])
    return [("images/s", series), ("peak memory (MiB)", {k: (xs, [100 * y for y in ys]) for k, (xs, ys) in series.items()})]


def test_line_plot_writes_a_png(tmp_path):
    path = tmp_path / "p.png"
    line_plot(path, "EG3D teacher", bench_panels(), "batch size", log_x=2)
    pixels, info = read(path)
    assert pixels.shape[1] > pixels.shape[0] > 200  # two panels side by side
    assert info["Title"] == "EG3D teacher" and info["Description"] == "images/s; peak memory (MiB)"
    assert has_color(pixels, BLUE) and has_color(pixels, ORANGE) and not has_color(pixels, GREEN)
    one = tmp_path / "one.png"
    line_plot(one, "EG3D teacher", bench_panels(reference=False), "batch size", log_x=2)
    pixels, _ = read(one)
    assert has_color(pixels, BLUE) and not has_color(pixels, ORANGE)


def test_series_keep_their_colour_across_panels(tmp_path):
    path = tmp_path / "p.png"
    # 'b' is absent from the first panel, so per-axes colour cycling would draw it blue there
    line_plot(path, "t", [("one", {"a": ([1, 2], [1, 2])}), ("two", {"b": ([1, 2], [2, 1])})], "x")
    pixels, _ = read(path)
    half = pixels.shape[1] // 2
    assert has_color(pixels[:, :half], BLUE) and not has_color(pixels[:, :half], ORANGE)
    assert has_color(pixels[:, half:], ORANGE) and not has_color(pixels[:, half:], BLUE)


def test_empty_series_and_panels_do_not_crash(tmp_path):
    path = tmp_path / "p.png"  # e.g. every batch ran out of memory, or no memory readings
    line_plot(path, "t", [("images/s", {"fast": ([], []), "reference": ([2], [1.0])}), ("memory", {"fast": ([], [])})],
              "batch size", log_x=2)
    pixels, _ = read(path)
    assert has_color(pixels, ORANGE, min_pixels=5)


@pytest.mark.parametrize("panels,kwargs,match", [
    ([], {}, "panels must be a non-empty list"),
    ([("a", [1, 2])], {}, "panels\\[0\\] must be"),
    ([("a", {"s": ([1, 2], [1])})], {}, "panel 'a', series 's': 2 xs but 1 ys"),
    ([("a", {"s": ([1], ["x"])})], {}, "must be numbers"),
    ([("a", {"s": [1, 2, 3]})], {}, "must be \\(xs, ys\\)"),
    ([("a", {"s": ([0, 1], [1, 2])})], {"log_x": 2}, "log x axis needs xs > 0"),
    ([("a", {"s": ([1, 2], [0, 2])})], {"log_y": True}, "log y axis needs ys > 0"),
    ([("a", {"s": ([1], [1])})], {"log_x": 1}, "log_x must be"),
])
def test_line_plot_rejects_bad_input(tmp_path, panels, kwargs, match):
    with pytest.raises(ValueError, match=match):
        line_plot(tmp_path / "p.png", "t", panels, "x", **kwargs)
    assert os.listdir(tmp_path) == []


def test_plot_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "p.png"
    path.write_bytes(b"old")

    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr(formats.os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        line_plot(path, "t", bench_panels(), "batch size")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["p.png"]


def test_no_pyplot_state(tmp_path):
    if "matplotlib.pyplot" in sys.modules:
        pytest.skip("something in this process imported pyplot already")
    line_plot(tmp_path / "p.png", "t", [("a", {"s": ([1], [1])})], "x")
    assert "matplotlib.pyplot" not in sys.modules  # the object API only: no global figure state


RECORDS = [{"step": 0, "loss_G": 2.0, "loss_D": 1.0, "phase": "G"},
           {"step": 200, "loss_G": 1.0, "loss_D": 1.2, "phase": "G"},
           {"step": 100, "loss_G": 1.5, "loss_D": 1.1, "lpips": 0.5, "phase": "D"}]


def test_loss_curves_from_records_and_file(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    loss_curves(a, RECORDS)
    pixels, info = read(a)
    assert info["Title"] == "training losses" and info["Description"] == "loss"
    # three numeric terms (phase is text and is left out): three colours
    assert has_color(pixels, BLUE) and has_color(pixels, ORANGE) and has_color(pixels, GREEN)
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("\n".join(json.dumps(r) for r in RECORDS) + "\n\n")
    loss_curves(b, metrics, keys=["loss_G"], title="G only")
    pixels, info = read(b)
    assert info["Title"] == "G only" and has_color(pixels, BLUE) and not has_color(pixels, ORANGE)


@pytest.mark.parametrize("records,keys,match", [
    ([], None, "non-empty list"),
    ({"step": 1}, None, "non-empty list"),
    ([{"loss": 1.0}], None, "records\\[0\\] must be a dict with a numeric 'step'"),
    ([{"step": "1", "loss": 1.0}], None, "records\\[0\\]"),
    ([{"step": 1, "phase": "G"}], None, "no numeric terms"),
    (RECORDS, ["loss_X"], "key 'loss_X' is in no record"),
    (RECORDS, ["phase"], "key 'phase' has a non-numeric value 'G'"),
])
def test_loss_curves_reject_bad_input(tmp_path, records, keys, match):
    with pytest.raises(ValueError, match=match):
        loss_curves(tmp_path / "l.png", records, keys=keys)
    assert os.listdir(tmp_path) == []


def test_read_jsonl(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 1, "loss": 0.5}\n\n{"step": 2, "loss": 0.4}\n{"step": 3, "lo')
    assert read_jsonl(path) == [{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.4}]  # an append in progress
    path.write_text('{"step": 1}\n{"step": \n{"step": 3}\n')
    with pytest.raises(ValueError, match="m.jsonl line 2: not valid JSON"):
        read_jsonl(path)
    path.write_text('{"step": 1}\n[1, 2]\n')
    with pytest.raises(ValueError, match="m.jsonl line 2: expected a JSON object, got list"):
        read_jsonl(path)
