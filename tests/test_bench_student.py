"""bench-student's code path on tiny models, one run of each: the JSON has its fields and they
are positive. No timing is asserted (speed is measured in benchmarks, not in tests)."""
import json

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


def test_training_section_times_our_step_against_torch(tmp_path):
    args = _args(tmp_path, "--training", "--training-presets", "tiny", "--training-batch", "2", "--no-compile")
    (path,) = bench_student.run(args)
    data = json.loads(path.read_text())
    assert data["suite"] == "student-training"
    rows = {r["path"]: r for r in data["rows"]}
    assert set(rows) == {"ours", "torch"}
    for row in rows.values():
        assert row["preset"] == "tiny" and row["batch"] == 2
        _positive(row, "median_ms", "ms_per_image", "images_per_s", "params")
    _positive(rows["ours"], "speedup_vs_torch", "paired_speedup_vs_torch")


def test_training_step_runs_the_stage2_hook_and_updates_the_weights():
    from nerfgan_distill import student, teacher

    kwargs, resolution = teacher.tiny_config()
    G = bench_student.build_teacher(kwargs, resolution, torch.device("cpu"))
    S = student.build("tiny", teacher=G).train()
    c = teacher.cameras.frontal_camera(G.camera_defaults(), batch_size=2)
    ws = G.mapping(torch.randn(2, G.z_dim), c)
    with torch.no_grad():
        targets = {k: torch.zeros_like(v) for k, v in S(ws, c).items()}
    calls = []

    def stage2(model, out):
        calls.append(model)
        return out["image"].mean() * 0

    before = [p.detach().clone() for p in S.parameters()]
    optimizer = torch.optim.Adam(S.parameters(), lr=1e-3)
    loss = bench_student.training_step(S, optimizer, ws, c, targets, stage2_step=stage2)()
    assert calls == [S] and torch.isfinite(loss) and loss > 0
    assert any(not torch.equal(a, p) for a, p in zip(before, S.parameters()))
