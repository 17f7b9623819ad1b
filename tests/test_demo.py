"""nerfgan-distill demo end to end at CI size (a tiny random teacher file; the bundled teacher's
own run is the README's main job), its outputs and metrics, reruns and bad input."""
import contextlib
import json
import math

import imageio.v3 as iio
import pytest

from helpers import write_tiny_teacher
from nerfgan_distill.cli import main

# train's own lr: the demo's 4x lr is tuned for 1300 steps on the bundled teacher; 4 steps of it on the tiny
# teacher's untrained student overshoot below 0 dB.
TINY = ["--pool", "16", "--steps", "4", "--stage1-steps", "3", "--batch", "2", "--eval-count", "2",
        "--lr-g", "0.002", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    return write_tiny_teacher(tmp_path_factory.mktemp("teacher") / "tiny.safetensors")


@pytest.fixture(scope="module")
def demo_run(teacher_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    assert main(["demo", "--teacher", str(teacher_file), "--out", str(out), *TINY]) == 0
    return out


def test_demo_writes_every_output(demo_run):
    for name in ("student.safetensors", "turntable.gif", "samples.png", "losses.png", "speed.png", "metrics.json"):
        assert (demo_run / name).is_file() and (demo_run / name).stat().st_size > 0, name
    frames = iio.imread(demo_run / "turntable.gif", index=None)
    assert frames.ndim == 4 and frames.shape[0] >= 12
    height, width = frames.shape[1:3]
    assert width > 2.9 * height / 3  # three panels (teacher | student | error) per latent, three latents stacked
    assert iio.imread(demo_run / "samples.png").ndim == 3
    from nerfgan_distill import student

    S = student.load(demo_run / "student.safetensors")
    assert S.img_resolution == 32


def test_demo_metrics_are_sane(demo_run):
    result = json.loads((demo_run / "metrics.json").read_text())
    s = result["summary"]
    for key in ("psnr_image", "psnr_image_raw"):
        assert math.isfinite(s[key]) and s[key] > 0
    for key in ("ssim_image", "ssim_image_raw"):
        assert -1 <= s[key] <= 1
    assert s["teacher_images_per_s"] > 0 and s["student_images_per_s"] > 0
    assert result["settings"]["steps"] == 4 and result["eval"]["protocol"]["latent_seed"] != 0
    assert set(result["seconds"]) == {"pool_s", "train_s", "eval_s", "outputs_s"}


def test_rerun_with_the_same_settings_keeps_the_run(demo_run, teacher_file):
    student_before = (demo_run / "run" / "student.safetensors").read_bytes()
    assert main(["demo", "--teacher", str(teacher_file), "--out", str(demo_run), *TINY]) == 0
    assert (demo_run / "run" / "student.safetensors").read_bytes() == student_before


def test_other_settings_into_a_used_folder_are_refused(demo_run, teacher_file, capsys):
    student_before = (demo_run / "run" / "student.safetensors").read_bytes()
    args = TINY[:TINY.index("--batch")] + ["--batch", "4"] + TINY[TINY.index("--batch") + 2:]  # another run
    assert main(["demo", "--teacher", str(teacher_file), "--out", str(demo_run), *args]) == 2
    assert "demo" in capsys.readouterr().err
    assert (demo_run / "run" / "student.safetensors").read_bytes() == student_before


@pytest.mark.parametrize("args, message, usage", [  # usage: refused by argparse itself
    (["--teacher", "/nonexistent/teacher.safetensors"], "teacher", False),
    (["--steps", "0"], "--steps", True),
    (["--steps", "3", "--stage1-steps", "5"], "--stage1-steps", False),
    (["--stage1-steps", "-1"], "--stage1-steps", False),
])
def test_bad_input_is_one_line(args, message, usage, tmp_path, capsys):
    with (pytest.raises(SystemExit) if usage else contextlib.nullcontext()) as exited:
        code = main(["demo", "--out", str(tmp_path / "o"), "--no-progress", *args])
        assert code == 2
    if usage:
        assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err
    assert usage or len(err.splitlines()) == 1

