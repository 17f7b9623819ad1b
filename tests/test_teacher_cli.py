"""nerfgan-distill render, mesh and bench-teacher, run as a user would (convert is in
test_teacher_loader.py)."""
import json
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import pytest
import torch
from PIL import Image

from nerfgan_distill import teacher

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "nerfgan_distill.cli", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    kwargs, _ = teacher.official_config("shapenetcars128-64")
    kwargs.update(channel_base=1024, channel_max=32)
    kwargs["rendering_kwargs"].update(depth_resolution=6, depth_resolution_importance=6)
    model = teacher.TriPlaneGenerator(**kwargs)
    model.load_state_dict(teacher.random_state(model, seed=1))
    model.neural_rendering_resolution = 16
    path = tmp_path_factory.mktemp("teacher") / "small.safetensors"
    teacher.save(model, path)
    return path


def read_png(path: Path) -> torch.Tensor:
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "RGB"
    return torch.from_numpy(iio.imread(path))


def test_render_writes_one_png_per_seed_and_view(teacher_file, tmp_path):
    result = run_cli("render", teacher_file, "--seeds", "0-1", "--yaw", "-0.3", "0.3", "--deterministic",
                     "--device", "cpu", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    files = sorted(p.name for p in tmp_path.glob("*.png"))
    assert files == ["seed0000_view0.png", "seed0000_view1.png", "seed0001_view0.png", "seed0001_view1.png"]
    images = [torch.from_numpy(iio.imread(tmp_path / name)) for name in files]
    assert images[0].shape == (128, 128, 3)
    assert not torch.equal(images[0], images[1]) and not torch.equal(images[0], images[2])


def test_render_rejects_bad_seeds(teacher_file, tmp_path):
    result = run_cli("render", teacher_file, "--seeds", "x-1", "--out", tmp_path)
    assert result.returncode == 2 and "seeds" in result.stderr


def test_mesh_writes_a_ply(teacher_file, tmp_path):
    pytest.importorskip("skimage", reason="the [mesh] extra (scikit-image) is part of [test]")
    out = tmp_path / "shape.ply"
    # Random weights: the raw density has no surface at EG3D's level 10, so pick level 0.
    result = run_cli("mesh", teacher_file, "--resolution", "24", "--level", "0", "--device", "cpu", "--out", out)
    assert result.returncode == 0, result.stderr
    vertices, faces = teacher.mesh.read_ply(out)
    assert len(vertices) > 0 and len(faces) > 0
    assert abs(vertices).max() <= 0.8 + 1e-4  # inside ShapeNet's box (box_warp 1.6)


def test_bench_teacher_writes_json_and_plot(tmp_path):
    result = run_cli("bench-teacher", "--config", "shapenetcars128-64", "--batch", "1", "--resolution", "16",
                     "--repeats", "1", "--warmup", "0", "--device", "cpu", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    (path,) = tmp_path.glob("teacher-cpu-*.json")
    data = json.loads(path.read_text())
    assert data["meta"]["config"] == "shapenetcars128-64" and "commit" in data["meta"]
    rows = {row["path"]: row for row in data["rows"]}
    assert set(rows) == {"fast", "reference"}
    for row in rows.values():
        assert row["batch"] == 1 and row["images_per_s"] > 0 and row["peak_memory_mib"] > 0
    assert rows["fast"]["speedup_vs_reference"] > 0
    with Image.open(path.with_suffix(".png")) as im:
        assert im.format == "PNG" and im.width > im.height > 100
        assert "shapenetcars128-64" in im.info["Title"]
        assert im.info["Description"] == "images/s; peak memory (MiB)"
