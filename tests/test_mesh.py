"""Shape export: the EG3D grid and volume layout, marching cubes in world units, PLY files."""
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nerfgan_distill.teacher import mesh

FIXTURES = torch.load(Path(__file__).parent / "fixtures" / "cameras.pt", weights_only=True)


def ball(center, radius, scale=100.0):
    """A raw-sigma-like density: level 10 exactly at distance `radius` from `center`, higher inside."""
    c = torch.tensor(center, dtype=torch.float32)

    def density(points):
        return scale * (radius - (points - c).norm(dim=-1, keepdim=True)) + 10.0
    return density


def needs_skimage():
    pytest.importorskip("skimage.measure")


# ----------------------------------------------------------------------------- grid and volume

def test_grid_points_order():
    pts = mesh.grid_points(3, 1.0)
    assert pts.shape == (27, 3) and pts.dtype == torch.float32
    torch.testing.assert_close(pts[0], torch.tensor([-0.5, -0.5, -0.5]))
    torch.testing.assert_close(pts[1], torch.tensor([-0.5, -0.5, 0.0]))  # z varies fastest
    torch.testing.assert_close(pts[3], torch.tensor([-0.5, 0.0, -0.5]))  # then y
    torch.testing.assert_close(pts[9], torch.tensor([0.0, -0.5, -0.5]))  # x slowest
    torch.testing.assert_close(pts[-1], torch.tensor([0.5, 0.5, 0.5]))


@pytest.mark.parametrize("case", FIXTURES["create_samples"], ids=lambda c: f"N{c['resolution']}")
def test_grid_points_against_official_create_samples(case):
    n, bw = case["resolution"], case["box_warp"]
    ours, official = mesh.grid_points(n, bw), case["samples"]
    size = bw / (n - 1)
    assert case["voxel_size"] == pytest.approx(size) and case["voxel_origin"] == pytest.approx([-bw / 2] * 3)
    torch.testing.assert_close(ours[:, 2], official[:, 2], rtol=0, atol=1e-6)  # z: exact integers there too
    # x and y: the script divides in float32, a non-negative sub-voxel skew (y + iz/N, x + iy/N + iz/N^2 voxels).
    skew = official - ours
    assert (skew[:, :2] >= -1e-6).all()
    assert (skew[:, 1] <= size * (n - 1) / n + 1e-6).all()
    assert (skew[:, 0] <= size * ((n - 1) / n + (n - 1) / n ** 2) + 1e-6).all()


def test_density_volume_layout_is_eg3d_flipped():
    n, bw = 5, 1.0
    vol = mesh.density_volume(lambda p: (100 * p[..., :1] + 10 * p[..., 1:2] + p[..., 2:]), n, bw, progress=False)
    assert vol.shape == (n, n, n) and vol.dtype == np.float32 and vol.flags.c_contiguous
    coord = np.linspace(-bw / 2, bw / 2, n)
    for a, j, k in [(0, 0, 0), (0, 1, 4), (4, 2, 3), (1, 3, 0)]:
        x, y, z = coord[n - 1 - a], coord[j], coord[k]  # axis 0 is x, flipped as gen_samples does
        assert vol[a, j, k] == pytest.approx(100 * x + 10 * y + z, abs=1e-4)


def test_density_volume_chunks_progress_and_no_grad(capsys):
    seen = []

    def density(points):
        seen.append((points.shape, torch.is_grad_enabled()))
        return ball((0.1, 0.0, 0.0), 0.3)(points)

    full = mesh.density_volume(density, 6, 1.0, progress=False)
    assert seen == [((1, 216, 3), False)]
    assert capsys.readouterr().err == ""
    seen.clear()
    chunked = mesh.density_volume(density, 6, 1.0, chunk=50, progress=True)
    assert [s[0][1] for s in seen] == [50, 50, 50, 50, 16]
    np.testing.assert_array_equal(full, chunked)
    assert "density_volume: 216/216 (100%" in capsys.readouterr().err


def test_density_volume_errors():
    with pytest.raises(ValueError, match=r"sample_density must return a tensor \[1, 8, 1\]"):
        mesh.density_volume(lambda p: p, 2, 1.0, progress=False)
    with pytest.raises(ValueError, match="sample_density must return"):
        mesh.density_volume(lambda p: p.numpy(), 2, 1.0, progress=False)
    with pytest.raises(TypeError, match="sample_density must be callable"):
        mesh.density_volume(None, 2, 1.0)
    with pytest.raises(ValueError, match="resolution must be an int >= 2"):
        mesh.density_volume(ball((0, 0, 0), 0.2), 1, 1.0)
    with pytest.raises(ValueError, match="box_warp must be a finite number > 0"):
        mesh.density_volume(ball((0, 0, 0), 0.2), 4, 0.0)
    with pytest.raises(ValueError, match="chunk must be a positive int"):
        mesh.density_volume(ball((0, 0, 0), 0.2), 4, 1.0, chunk=0)
    with pytest.raises(ValueError, match="resolution must be an int >= 2"):
        mesh.grid_points(2.0, 1.0)


# ----------------------------------------------------------------------------- marching cubes

def test_sphere_mesh_lies_at_the_radius_in_world_units():
    needs_skimage()
    n, bw, r = 64, 1.6, 0.4
    verts, faces = mesh.extract_mesh(mesh.density_volume(ball((0, 0, 0), r), n, bw, progress=False), bw)
    assert verts.dtype == np.float32 and faces.dtype == np.int32 and faces.shape[1] == 3
    dist = np.linalg.norm(verts, axis=1)
    assert np.abs(dist - r).max() < 0.5 * bw / (n - 1)
    np.testing.assert_allclose(verts.mean(0), 0, atol=1e-3)
    # World-frame triangles wind counter-clockwise seen from outside: right-hand normals point outwards.
    tri = verts[faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    assert ((normals * tri.mean(1)).sum(1) > 0).all()


def test_offset_blob_keeps_its_world_position_and_eg3d_frame_is_rotated():
    needs_skimage()
    n, bw, center = 48, 1.0, np.array([0.25, 0.1, -0.05])
    vol = mesh.density_volume(ball(tuple(center), 0.15), n, bw, progress=False)
    verts, _ = mesh.extract_mesh(vol, bw)
    np.testing.assert_allclose(verts.mean(0), center, atol=0.01)
    # The scripts' own PLY (frame="eg3d") is in voxel units with world (x, y, z) -> (z, y, -x):
    # the +x blob lands at -z there (checked against gen_samples' pipeline with its create_samples).
    raw, raw_faces = mesh.extract_mesh(vol, bw, frame="eg3d")
    size = bw / (n - 1)
    np.testing.assert_allclose((raw.mean(0) - (n - 1) / 2) * size, [center[2], center[1], -center[0]], atol=0.01)
    # Same triangles, with the winding reversed in the world frame.
    world, world_faces = mesh.extract_mesh(vol, bw)
    np.testing.assert_array_equal(world_faces, raw_faces[:, ::-1])
    np.testing.assert_allclose(world, np.stack([bw / 2 - raw[:, 2] * size, raw[:, 1] * size - bw / 2,
                                                raw[:, 0] * size - bw / 2], 1), atol=1e-6)


def test_eg3d_frame_is_the_scripts_marching_cubes():
    needs_skimage()
    from skimage.measure import marching_cubes
    n = 40
    vol = mesh.density_volume(ball((0.1, -0.1, 0.2), 0.2), n, 1.0, progress=False)
    pad = int(30 * n / 256)
    ref = vol.copy()
    ref[:pad], ref[-pad:], ref[:, :pad], ref[:, -pad:], ref[:, :, :pad], ref[:, :, -pad:] = (-1000,) * 6
    v_ref, f_ref, _, _ = marching_cubes(np.transpose(ref, (2, 1, 0)), level=10, spacing=[1, 1, 1])
    verts, faces = mesh.extract_mesh(vol, 1.0, frame="eg3d")
    np.testing.assert_array_equal(verts, v_ref.astype(np.float32))
    np.testing.assert_array_equal(faces, f_ref)
    assert mesh.default_border(512) == 60 and mesh.default_border(n) == 4


def test_border_closes_a_volume_full_of_density():
    needs_skimage()
    n, bw = 32, 1.0
    vol = np.full((n, n, n), 50.0, dtype=np.float32)
    verts, _ = mesh.extract_mesh(vol, bw, border=5)
    size = bw / (n - 1)
    inner = bw / 2 - 5 * size
    assert np.abs(verts).max() <= inner + size + 1e-6 and np.abs(verts).max() >= inner - 1e-6
    with pytest.raises(ValueError, match="no surface"):
        mesh.extract_mesh(vol, bw, border=0)
    # A torch volume works too, and the input is not modified.
    t = torch.from_numpy(vol.copy())
    mesh.extract_mesh(t, bw, border=5)
    assert (t == 50).all()


def test_extract_mesh_errors():
    vol = np.zeros((8, 8, 8), dtype=np.float32)
    with pytest.raises(ValueError, match=r"volume must be a cube \[N,N,N\]"):
        mesh.extract_mesh(np.zeros((8, 8, 7)), 1.0)
    with pytest.raises(ValueError, match="volume contains NaN"):
        mesh.extract_mesh(np.full((8, 8, 8), np.nan), 1.0)
    with pytest.raises(TypeError, match="volume must be a numpy array"):
        mesh.extract_mesh([[[0.0]]], 1.0)
    with pytest.raises(ValueError, match="border must be an int in"):
        mesh.extract_mesh(vol, 1.0, border=4)
    with pytest.raises(ValueError, match="frame must be"):
        mesh.extract_mesh(vol, 1.0, border=0, frame="opengl")
    with pytest.raises(ValueError, match="level must be a finite number"):
        mesh.extract_mesh(vol, 1.0, level=float("nan"))
    with pytest.raises(ValueError, match="box_warp"):
        mesh.extract_mesh(vol, -1.0)


def test_missing_skimage_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)
    monkeypatch.setitem(sys.modules, "skimage.measure", None)
    with pytest.raises(ImportError, match="pip install scikit-image"):
        mesh.extract_mesh(np.zeros((8, 8, 8)), 1.0, border=1)


# ----------------------------------------------------------------------------- PLY

def test_ply_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    verts = rng.normal(size=(10, 3)).astype(np.float32)
    faces = rng.integers(0, 10, size=(7, 3)).astype(np.int64)
    path = tmp_path / "mesh.ply"
    mesh.write_ply(path, verts, faces)
    data = path.read_bytes()
    assert data.startswith(b"ply\nformat binary_little_endian 1.0\n")
    assert b"element vertex 10\n" in data and b"property list uchar int vertex_indices\n" in data
    assert len(data) - data.index(b"end_header\n") - len(b"end_header\n") == 10 * 12 + 7 * 13
    v2, f2 = mesh.read_ply(path)
    np.testing.assert_array_equal(v2, verts)
    np.testing.assert_array_equal(f2, faces)
    # Overwriting replaces the file and leaves no temporary behind; torch tensors are accepted.
    mesh.write_ply(str(path), torch.from_numpy(verts[:3]), torch.tensor([[0, 1, 2]]))
    v3, f3 = mesh.read_ply(path)
    assert v3.shape == (3, 3) and f3.tolist() == [[0, 1, 2]]
    assert os.listdir(tmp_path) == ["mesh.ply"]


def test_ply_of_an_extracted_mesh(tmp_path):
    needs_skimage()
    vol = mesh.density_volume(ball((0, 0, 0), 0.3), 24, 1.0, progress=False)
    verts, faces = mesh.extract_mesh(vol, 1.0)
    mesh.write_ply(tmp_path / "s.ply", verts, faces)
    v2, f2 = mesh.read_ply(tmp_path / "s.ply")
    np.testing.assert_array_equal(v2, verts)
    np.testing.assert_array_equal(f2, faces)


def test_empty_ply(tmp_path):
    mesh.write_ply(tmp_path / "e.ply", np.zeros((0, 3)), np.zeros((0, 3)))
    v, f = mesh.read_ply(tmp_path / "e.ply")
    assert v.shape == (0, 3) and f.shape == (0, 3)


def test_write_ply_errors(tmp_path):
    path = tmp_path / "bad.ply"
    with pytest.raises(ValueError, match=r"vertices must be numbers of shape \[V, 3\]"):
        mesh.write_ply(path, np.zeros((4, 2)), np.zeros((1, 3), dtype=int))
    with pytest.raises(ValueError, match=r"faces must be integers of shape \[F, 3\]"):
        mesh.write_ply(path, np.zeros((4, 3)), np.zeros((1, 4), dtype=int))
    with pytest.raises(ValueError, match="faces must be integers"):
        mesh.write_ply(path, np.zeros((4, 3)), np.full((1, 3), 0.5))
    with pytest.raises(ValueError, match=r"faces index vertices outside \[0, 3\]"):
        mesh.write_ply(path, np.zeros((4, 3)), np.array([[0, 1, 4]]))
    with pytest.raises(ValueError, match="vertices contain NaN"):
        mesh.write_ply(path, np.full((4, 3), np.inf), np.array([[0, 1, 2]]))
    with pytest.raises(FileNotFoundError):
        mesh.write_ply(tmp_path / "missing" / "x.ply", np.zeros((3, 3)), np.array([[0, 1, 2]]))
    assert os.listdir(tmp_path) == []
    path.write_bytes(b"not a ply")
    with pytest.raises(ValueError, match="not a PLY file"):
        mesh.read_ply(path)
