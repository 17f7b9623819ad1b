"""`nerfgan-distill train`: both stages end to end, exact resume after kill -9, the same
per-step losses with 2 gloo processes as with one, and the refusals (existing runs, wrong
files, full disks, NaN)."""
import errno
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import write_tiny_teacher
from nerfgan_distill import student
from nerfgan_distill.cli import main
from nerfgan_distill.distill import checkpoint as ckpt

# A few steps of each stage; R1 every 2 steps so stage 2 runs it.
COMMON = ["--student", "tiny", "--batch", "4", "--seed", "3", "--device", "cpu", "--no-progress",
          "--r1-interval", "2", "--log-every", "1"]


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    return write_tiny_teacher(tmp_path_factory.mktemp("teacher") / "tiny.safetensors")


def _train(teacher_file, out, *extra):
    return main(["train", "--teacher", str(teacher_file), "--out", str(out), *COMMON, *extra])


def _metrics(out):
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def _tensors(path):
    return ckpt.load_checkpoint(path).tensors


@pytest.fixture(scope="module")
def uninterrupted(teacher_file, tmp_path_factory):
    """A 6-step run: 3 reconstruction-only, 3 with the discriminator."""
    out = tmp_path_factory.mktemp("run") / "full"
    assert _train(teacher_file, out, "--steps", "6", "--stage1-steps", "3", "--checkpoint-every", "2") == 0
    return out


def test_both_stages_run_and_write_the_run_files(uninterrupted):
    records = _metrics(uninterrupted)
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert [r["stage"] for r in records] == [1, 1, 1, 2, 2, 2]
    for r in records[:3]:
        assert {"rec_lr_raw", "rec_lr_features", "rec_hr"} <= set(r) and "adv_g" not in r
    for r in records[3:]:
        assert {"adv_g", "adv_d_real", "adv_d_fake"} <= set(r)
    assert "r1" in records[4] and "r1" not in records[3]  # lazy: steps 4 (index) and every 2nd
    assert all(all(v == v for v in r.values() if isinstance(v, float)) for r in records)
    assert (uninterrupted / "losses.png").read_bytes().startswith(b"\x89PNG")
    S = student.load(uninterrupted / "student.safetensors")
    assert S.preset == "tiny"
    assert ckpt.load_checkpoint(uninterrupted / "checkpoint.safetensors").step == 6


def test_stage_one_lowers_the_reconstruction_loss(teacher_file, tmp_path):
    out = tmp_path / "fit"
    assert _train(teacher_file, out, "--steps", "30", "--stage1-steps", "30", "--checkpoint-every", "30",
                  "--lr-g", "0.01") == 0
    records = _metrics(out)
    first = sum(r["rec_hr"] for r in records[:5]) / 5
    last = sum(r["rec_hr"] for r in records[-5:]) / 5
    assert last < 0.85 * first, (first, last)


def test_resume_continues_to_the_same_weights(teacher_file, uninterrupted, tmp_path):
    out = tmp_path / "split"
    assert _train(teacher_file, out, "--steps", "4", "--stage1-steps", "3", "--checkpoint-every", "2") == 0
    assert _train(teacher_file, out, "--steps", "6", "--stage1-steps", "3", "--checkpoint-every", "2",
                  "--resume") == 0
    a, b = _tensors(uninterrupted / "checkpoint.safetensors"), _tensors(out / "checkpoint.safetensors")
    assert set(a) == set(b)
    for name in a:
        if not name.startswith("rng/"):
            torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-6, msg=name)
    assert [r["step"] for r in _metrics(out)] == [1, 2, 3, 4, 5, 6]


def test_kill_9_after_a_checkpoint_then_resume_gives_the_same_weights(teacher_file, tmp_path):
    args = [sys.executable, "-m", "nerfgan_distill", "train", "--teacher", str(teacher_file), *COMMON,
            "--steps", "24", "--stage1-steps", "12", "--checkpoint-every", "4"]
    reference = tmp_path / "reference"
    assert _train(teacher_file, reference, *args[args.index("--steps"):]) == 0
    out = tmp_path / "killed"
    process = subprocess.Popen(args + ["--out", str(out)], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    checkpoint = out / "checkpoint.safetensors"
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if checkpoint.exists() and ckpt.load_checkpoint(checkpoint).step >= 4:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = ckpt.load_checkpoint(checkpoint).step
    assert killed_at < 24, "the run finished before it could be killed"
    assert subprocess.run(args + ["--out", str(out), "--resume"], capture_output=True).returncode == 0
    a, b = _tensors(reference / "checkpoint.safetensors"), _tensors(checkpoint)
    for name in a:
        if not name.startswith("rng/"):
            torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-6, msg=name)
    assert [r["step"] for r in _metrics(out)] == list(range(1, 25))


def _two_gloo_processes(teacher_file, out, *extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29533",
         "-m", "nerfgan_distill", "train", "--teacher", str(teacher_file), "--out", str(out), *COMMON, *extra],
        capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def _assert_same_losses(single, double):
    assert [r["step"] for r in double] == [r["step"] for r in single]
    for a, b in zip(single, double):
        for key in a:
            if key.startswith(("rec_", "adv_", "r1", "loss_")):
                assert abs(a[key] - b[key]) <= 1e-3 * max(1.0, abs(a[key])), (a["step"], key, a[key], b[key])


def test_two_gloo_processes_follow_one_process(teacher_file, uninterrupted, tmp_path):
    out = tmp_path / "ddp"
    _two_gloo_processes(teacher_file, out, "--steps", "6", "--stage1-steps", "3", "--checkpoint-every", "2")
    _assert_same_losses(_metrics(uninterrupted), _metrics(out))


def test_the_st3_student_trains_and_two_processes_follow_one(teacher_file, tmp_path):
    # StyleGAN3's magnitude EMAs are running statistics of each process's samples: averaged
    # over processes, they stay those of the whole batch.
    st3 = ["--student", "tiny-st3", "--steps", "4", "--stage1-steps", "2"]
    assert _train(teacher_file, tmp_path / "one", *st3) == 0
    _two_gloo_processes(teacher_file, tmp_path / "two", *st3)
    _assert_same_losses(_metrics(tmp_path / "one"), _metrics(tmp_path / "two"))
    one, two = (student.load(tmp_path / name / "student.safetensors") for name in ("one", "two"))
    assert one.backbone == "stylegan3"
    emas = torch.stack(one.running_statistics())
    assert len(emas) == len(one.synthesis_network.layer_names) and not torch.allclose(emas, torch.ones_like(emas))
    torch.testing.assert_close(torch.stack(two.running_statistics()), emas, rtol=1e-4, atol=0)


def test_a_run_is_not_overwritten_without_resume(teacher_file, uninterrupted, capsys):
    before = {p.name: p.read_bytes() for p in uninterrupted.iterdir()}
    assert _train(teacher_file, uninterrupted, "--steps", "6") == 2
    assert "holds a run" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in uninterrupted.iterdir()} == before


def test_resume_with_other_options_is_refused(teacher_file, uninterrupted, tmp_path, capsys):
    out = tmp_path / "copy"
    out.mkdir()
    (out / "checkpoint.safetensors").write_bytes((uninterrupted / "checkpoint.safetensors").read_bytes())
    assert _train(teacher_file, out, "--steps", "8", "--stage1-steps", "3", "--lr-g", "0.01", "--resume") == 2
    assert "--lr-g" in capsys.readouterr().err


def test_lr_rampdown_follows_a_half_cosine_to_zero():
    from nerfgan_distill.distill import TrainConfig

    constant = TrainConfig(teacher="t", out="o", steps=100)
    assert [constant.lr_factor(s) for s in (0, 50, 99)] == [1.0, 1.0, 1.0]
    ramp = TrainConfig(teacher="t", out="o", steps=100, lr_rampdown=0.4)
    assert ramp.lr_factor(0) == ramp.lr_factor(60) == 1.0
    assert ramp.lr_factor(80) == pytest.approx(0.5)
    assert ramp.lr_factor(100) == pytest.approx(0.0, abs=1e-12)
    factors = [ramp.lr_factor(s) for s in range(60, 101)]
    assert all(a > b for a, b in zip(factors, factors[1:]))
    assert "steps" in ramp.identity() and "steps" not in constant.identity()


def test_lr_rampdown_sets_both_rates_and_resumes_to_the_same_weights(teacher_file, tmp_path, monkeypatch, capsys):
    from nerfgan_distill.distill.trainer import Trainer

    ramp = ["--steps", "6", "--stage1-steps", "3", "--checkpoint-every", "2", "--lr-rampdown", "0.5"]
    seen, set_rates = [], Trainer.set_learning_rates

    def spy(self, step):
        set_rates(self, step)
        seen.append((step, self.opt_g.param_groups[0]["lr"], self.opt_d.param_groups[0]["lr"]))

    monkeypatch.setattr(Trainer, "set_learning_rates", spy)
    assert _train(teacher_file, tmp_path / "whole", *ramp) == 0
    assert [s for s, _, _ in seen] == list(range(6))
    for step, lr_g, lr_d in seen:  # flat for 3 steps, then the cosine over the last 3
        factor = 1.0 if step <= 3 else 0.5 - 0.5 * math.cos(math.pi * (6 - step) / 3)
        assert lr_g == pytest.approx(0.002 * factor), step
        assert lr_d == pytest.approx(0.002 * (2 / 3) * factor), step  # D's lazy-R1 correction (--r1-interval 2)

    # Stopped after the step-4 checkpoint, then resumed: the schedule continues where it was.
    stop_at_4 = Trainer._stop_everywhere
    monkeypatch.setattr(Trainer, "_stop_everywhere", lambda self: self.step == 4 or stop_at_4(self))
    out = tmp_path / "stopped"
    assert _train(teacher_file, out, *ramp) != 0
    assert ckpt.load_checkpoint(out / "checkpoint.safetensors").step == 4
    monkeypatch.setattr(Trainer, "_stop_everywhere", stop_at_4)
    capsys.readouterr()
    assert _train(teacher_file, out, *ramp[:1], "8", *ramp[2:], "--resume") == 2  # the schedule depends on --steps
    assert "--steps 6 there, 8 now" in capsys.readouterr().err
    assert _train(teacher_file, out, *ramp, "--resume") == 0
    a, b = _tensors(tmp_path / "whole" / "checkpoint.safetensors"), _tensors(out / "checkpoint.safetensors")
    for name in a:
        if not name.startswith("rng/"):
            torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-6, msg=name)


@pytest.mark.parametrize("what", ["student", "missing", "checkpoint"])
def test_wrong_teacher_files_get_one_line(teacher_file, uninterrupted, tmp_path, capsys, what):
    path = {"student": uninterrupted / "student.safetensors", "missing": tmp_path / "nope.safetensors",
            "checkpoint": uninterrupted / "checkpoint.safetensors"}[what]
    assert main(["train", "--teacher", str(path), "--out", str(tmp_path / "o"), *COMMON, "--steps", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nerfgan-distill train: ") and err.count("\n") == 1
    assert {"student": "student file", "missing": "No such file", "checkpoint": "training checkpoint"}[what] in err


def test_a_full_disk_keeps_the_previous_checkpoint(teacher_file, tmp_path, monkeypatch, capsys):
    from nerfgan_distill import formats

    out = tmp_path / "disk"
    real_fsync, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 2:  # the second checkpoint
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(formats.os, "fsync", fsync)
    assert _train(teacher_file, out, "--steps", "4", "--stage1-steps", "4", "--checkpoint-every", "2") == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "step 2) is intact" in err
    assert ckpt.load_checkpoint(out / "checkpoint.safetensors").step == 2
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.safetensors", "metrics.jsonl"]  # no temp files


def test_nan_stops_the_run_with_a_message(teacher_file, tmp_path, monkeypatch, capsys):
    from nerfgan_distill.distill import losses

    real = losses.rec_hr

    def broken(*args, **kwargs):
        terms = real(*args, **kwargs)
        return {k: v * float("nan") for k, v in terms.items()}

    monkeypatch.setattr(losses, "rec_hr", broken)
    assert _train(teacher_file, tmp_path / "nan", "--steps", "2") == 2
    err = capsys.readouterr().err
    assert "step 0: the student's loss is not finite (rec_hr=nan)" in err
    assert "no checkpoint was written yet" in err


@pytest.mark.parametrize("args, message", [
    (["--steps", "0"], "--steps must be an int >= 1"),
    (["--steps", "4", "--real-mix", "0.5"], "--real-mix > 0 needs --dataset"),
    (["--steps", "4", "--batch", "3", "--mbstd-group", "2"], "--batch 3 is not divisible by --mbstd-group 2"),
    (["--steps", "4", "--lr-rampdown", "1.5"], "--lr-rampdown must be in [0, 1], got 1.5"),
])
def test_bad_options_get_one_line(teacher_file, tmp_path, capsys, args, message):
    argv = ["train", "--teacher", str(teacher_file), "--out", str(tmp_path / "o"), *COMMON, *args]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


class _FakeLPIPS(torch.nn.Module):
    """StyleGAN2-ADA's vgg16.pt interface (images in [0, 255] -> unit features); not VGG."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor, resize_images: bool = True, return_lpips: bool = False) -> torch.Tensor:
        f = self.proj(x / 255).flatten(1)
        return f / f.square().sum(dim=1, keepdim=True).sqrt()


def test_perceptual_weights_add_an_lpips_term(teacher_file, tmp_path, capsys):
    weights = tmp_path / "vgg16.pt"
    torch.jit.script(_FakeLPIPS()).save(str(weights))
    out = tmp_path / "lpips"
    assert _train(teacher_file, out, "--steps", "2", "--perceptual-weights", str(weights)) == 0
    assert all(r["rec_hr_perceptual"] > 0 for r in _metrics(out))
    not_script = tmp_path / "plain.pt"
    torch.save({"w": torch.zeros(1)}, not_script)
    assert _train(teacher_file, tmp_path / "bad", "--steps", "2", "--perceptual-weights", str(not_script)) == 2
    assert "--perceptual-weights" in capsys.readouterr().err


def test_a_dataset_without_camera_labels_gets_one_line(teacher_file, tmp_path, capsys):
    dataset = tmp_path / "faces"
    dataset.mkdir()
    (dataset / "dataset.json").write_text(json.dumps({"labels": None}))
    assert _train(teacher_file, tmp_path / "o", "--steps", "2", "--dataset", str(dataset)) == 2
    err = capsys.readouterr().err
    assert err.startswith("nerfgan-distill train: ") and "camera labels" in err
    assert not (tmp_path / "o").exists()
