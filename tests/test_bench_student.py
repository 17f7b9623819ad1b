"""bench-student's code path on tiny models, one run of each: the JSON has its fields and they
are positive. No timing is asserted (speed is measured in benchmarks, not in tests)."""
import json

import pytest
import torch

from nerfgan_distill.bench import student as bench_student
from nerfgan_distill.cli import build_parser


def _args(tmp_path, *extra):
    return build_parser().parse_args(["bench-student", "--config", "tiny", "--presets", "tiny", "--batch", "1", "2",
                                      "--repeats", "1", "--warmup", "0", "--device", "cpu", "--out", str(tmp_path),
                                      *extra])


def _positive(row, *keys):
    for key in keys:
        assert isinstance(row[key], (int, float)) and row[key] > 0, (key, row)


def test_inference_section_writes_rows_ratios_flops_and_a_plot(tmp_path):
    args = _args(tmp_path)
    (path,) = bench_student.run(args)
    data = json.loads(path.read_text())
    assert path.name.startswith("student-cpu-") and path.with_suffix(".png").stat().st_size > 0
    for key in ("device", "torch", "commit", "timestamp", "native_build", "precision"):
        assert key in data["meta"]
    names = {"teacher", "student.eg3d-512", "student.eg3d-512-fast", "student.tiny"}
    assert set(data["models"]) == names
    for facts in data["models"].values():
        _positive(facts, "params", "flops_per_image", "gflops_per_image", "gmacs_per_image")
    rows = data["rows"]
    paths = {"teacher.reference", "teacher.fast", "student.eg3d-512", "student.eg3d-512-fast", "student.tiny"}
    assert {(r["path"], r["batch"]) for r in rows} == {(p, b) for p in paths for b in (1, 2)}
    for row in rows:
        _positive(row, "median_ms", "ms_per_image", "images_per_s", "peak_memory_mib", "repeats")
        if row["path"].startswith("student."):
            _positive(row, "speedup_vs_teacher_fast", "speedup_vs_teacher_reference",
                      "paired_speedup_vs_teacher_fast", "paired_speedup_vs_teacher_reference")
        if row["path"] == "teacher.fast":
            _positive(row, "speedup_vs_teacher_reference")


def test_training_section_times_our_steps_against_torch(tmp_path):
    args = _args(tmp_path, "--training", "--training-presets", "tiny", "--training-batch", "2", "--no-compile")
    (path,) = bench_student.run(args)
    data = json.loads(path.read_text())
    assert data["suite"] == "student-training"
    rows = {(r["step"], r["path"]): r for r in data["rows"]}
    assert set(rows) == {(k, p) for k in ("stage1", "stage2", "stage2+r1") for p in ("ours", "torch")}
    for (kind, _), row in rows.items():
        assert row["preset"] == "tiny" and row["batch"] == 2
        _positive(row, "median_ms", "ms_per_image", "images_per_s", "params")
        if kind != "stage1":
            _positive(row, "discriminator_params")
    for kind in ("stage1", "stage2", "stage2+r1"):
        _positive(rows[kind, "ours"], "speedup_vs_torch", "paired_speedup_vs_torch")


def _tiny_pair():
    from nerfgan_distill import student, teacher

    kwargs, resolution = teacher.tiny_config()
    G = bench_student.build_teacher(kwargs, resolution, torch.device("cpu"))
    S = student.build("tiny", teacher=G).train()
    c = teacher.cameras.frontal_camera(G.camera_defaults(), batch_size=2)
    ws = G.mapping(torch.randn(2, G.z_dim), c)
    with torch.no_grad():
        targets = {k: torch.rand_like(v) * 2 - 1 for k, v in S(ws, c).items()}
    return G, S, ws, c, targets


def test_stage1_step_updates_the_student():
    _, S, ws, c, targets = _tiny_pair()
    before = [p.detach().clone() for p in S.parameters()]
    loss = bench_student.training_step(S, torch.optim.Adam(S.parameters(), lr=1e-3), ws, c, targets)()
    assert torch.isfinite(loss) and loss > 0
    assert any(not torch.equal(a, p) for a, p in zip(before, S.parameters()))


@pytest.mark.parametrize("with_r1", [False, True])
def test_stage2_step_updates_both_models_as_the_trainer_does(with_r1):
    from nerfgan_distill.distill import losses
    from nerfgan_distill.distill.config import discriminator_kwargs
    from nerfgan_distill.networks.discriminator import DualDiscriminator

    G, S, ws, c, targets = _tiny_pair()
    D = DualDiscriminator(**discriminator_kwargs("tiny", G.img_resolution, 2)).requires_grad_(False)
    student_loss, discriminator_loss = bench_student.stage2_losses(S, D, targets)
    loss_g, fake = student_loss(ws, c)
    expected = sum({**losses.rec_lr(fake, targets), **losses.rec_hr(fake, targets),
                    **losses.adversarial_generator(D, fake, c)}.values())
    torch.testing.assert_close(loss_g, expected)
    r1_calls = []

    def r1(c_):
        r1_calls.append(1)
        return losses.r1_penalty(D, {"image": targets["image"], "image_raw": targets["image_raw"]}, c_, 1.0)["r1"]

    s_before = [p.detach().clone() for p in S.parameters()]
    d_before = [p.detach().clone() for p in D.parameters()]
    step = bench_student.stage2_training_step(S, D, torch.optim.Adam(S.parameters(), lr=1e-3),
                                              torch.optim.Adam(D.parameters(), lr=1e-3), ws, c, student_loss,
                                              discriminator_loss, r1 if with_r1 else None)
    assert torch.isfinite(step())
    assert any(not torch.equal(a, p) for a, p in zip(s_before, S.parameters()))
    assert any(not torch.equal(a, p) for a, p in zip(d_before, D.parameters()))
    assert not any(p.requires_grad for p in D.parameters())  # frozen again for the next student update
    assert len(r1_calls) == int(with_r1)
