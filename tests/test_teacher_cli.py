"""nerfgan-distill render, mesh and bench-teacher, run as a user would (convert is in
test_teacher_loader.py)."""
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import imageio.v3
import pytest
import torch

from nerfgan_distill import teacher
from nerfgan_distill.png import to_uint8, write_png

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
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        assert struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0] == zlib.crc32(kind + body)
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, color) == (8, 2)
    raw = zlib.decompress(chunks[b"IDAT"])
    rows = [raw[y * (3 * width + 1):(y + 1) * (3 * width + 1)] for y in range(height)]
    assert all(row[0] == 0 for row in rows)
    return torch.frombuffer(bytearray(b"".join(row[1:] for row in rows)), dtype=torch.uint8).reshape(height, width, 3)


def test_png_round_trip(tmp_path):
    image = torch.rand(3, 5, 7) * 2.2 - 1.1
    write_png(tmp_path / "x.png", image)
    assert torch.equal(read_png(tmp_path / "x.png"), to_uint8(image))
    with pytest.raises(ValueError, match="image"):
        write_png(tmp_path / "y.png", image[0])


def test_render_writes_one_png_per_seed_and_view(teacher_file, tmp_path):
    result = run_cli("render", teacher_file, "--seeds", "0-1", "--yaw", "-0.3", "0.3", "--deterministic",
                     "--device", "cpu", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    files = sorted(p.name for p in tmp_path.glob("*.png"))
    assert files == ["seed0000_view0.png", "seed0000_view1.png", "seed0001_view0.png", "seed0001_view1.png"]
    images = [torch.from_numpy(imageio.v3.imread(tmp_path / name)) for name in files]
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
    svg = path.with_suffix(".svg").read_text()
    assert svg.startswith("<svg") and "images/s" in svg and "peak memory" in svg
