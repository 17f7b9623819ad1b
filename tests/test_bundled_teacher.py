"""The bundled teacher: its procedural scene family, the shipped model (it loads, covers its
pose range and reproduces the analytic scenes it was trained on, on held-out latents and
poses), its training record, and the script that trains it."""
import json
import math
import sys
from pathlib import Path

import pytest
import torch

from nerfgan_distill import teacher
from nerfgan_distill.distill.poses import OrbitPoses
from nerfgan_distill.teacher import bundled_model as bundled_module
from nerfgan_distill.teacher import scenes
from nerfgan_distill.teacher.rays import sample_rays

ROOT = Path(__file__).resolve().parents[1]
RK = dict(ray_start=2.25, ray_end=3.3)


def frontal_rays(resolution=16, n=1):
    poses = OrbitPoses(radius=2.7, pivot=(0, 0, 0), focal=4.2647)
    c = poses.frontal().expand(n, -1)
    return sample_rays(c[:, :16].reshape(-1, 4, 4), c[:, 16:].reshape(-1, 3, 3), resolution)


# --- scenes ----------------------------------------------------------------------------------------

def test_scene_params_follow_z_and_reject_bad_latents():
    z = torch.randn(64, scenes.SCENE_DIMS, generator=torch.Generator().manual_seed(0))
    p = scenes.scene_params(z)
    assert set(p["kind"].tolist()) == set(range(len(scenes.KINDS)))  # every kind appears in 64 draws
    assert p["colour"].shape == (64, 3) and 0 <= p["colour"].min() and p["colour"].max() <= 1
    assert torch.equal(scenes.scene_params(z)["size"], p["size"])
    # the mapping network sees z / rms(z): so does the scene
    assert torch.allclose(scenes.scene_params(3 * z)["size"], p["size"])
    other = scenes.scene_params(z.roll(1, 0))
    assert not torch.equal(other["colour"], p["colour"])
    for bad in (torch.randn(4, scenes.SCENE_DIMS - 1), torch.randn(scenes.SCENE_DIMS), "z"):
        with pytest.raises(ValueError, match="scene_params: z must be"):
            scenes.scene_params(bad)


def test_density_is_high_inside_and_zero_outside_the_box():
    p = scenes.scene_params(torch.randn(4, scenes.SCENE_DIMS, generator=torch.Generator().manual_seed(1)))
    behind_wall = torch.tensor([[0.0, 0.0, -0.4]]).expand(4, 1, 3)
    empty_front = torch.tensor([[0.45, 0.45, 0.45]]).expand(4, 1, 3)
    outside_box = torch.tensor([[0.0, 0.0, -0.7]]).expand(4, 1, 3)
    assert (scenes.density(p, behind_wall) > 0.9 * scenes.DENSITY_SCALE).all()
    assert (scenes.density(p, empty_front) < 1e-3).all()
    assert (scenes.density(p, outside_box) < 1e-3).all()


def test_render_hits_surfaces_in_front_of_the_wall():
    z = torch.randn(3, scenes.SCENE_DIMS, generator=torch.Generator().manual_seed(2))
    p = scenes.scene_params(z)
    o, d = frontal_rays(16, 3)
    rgb, depth = scenes.render(p, o, d, **RK)
    assert rgb.shape == (3, 256, 3) and depth.shape == (3, 256)
    assert torch.isfinite(rgb).all() and rgb.min() >= -1 and rgb.max() <= 1
    hit = depth < RK["ray_end"]
    assert hit.float().mean() > 0.95  # the wall fills the frontal view
    points = o + depth[..., None] * d
    assert scenes.sdf(p, points)[hit].abs().max() < 5e-3
    wall_depth = 2.7 - scenes.WALL_Z
    centre = depth[:, 8 * 16 + 8]
    assert (centre < wall_depth - 0.02).all(), "the object stands in front of the wall at the centre"
    miss_o = o + torch.tensor([5.0, 0, 0])  # rays that pass beside the box hit nothing: black
    rgb_miss, depth_miss = scenes.render(p, miss_o, d, **RK)
    assert (rgb_miss == -1).all() and (depth_miss == RK["ray_end"]).all()


# --- the shipped model -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def G():
    return teacher.bundled()


def test_bundled_teacher_is_an_eg3d_generator_with_its_pose_range(G):
    assert isinstance(G, teacher.TriPlaneGenerator)
    assert not any(p.requires_grad for p in G.parameters())
    assert (G.img_resolution, G.neural_rendering_resolution, G.plane_resolution, G.plane_channels) == (64, 32, 64, 16)
    assert bundled_module.BUNDLED_FILE.stat().st_size < 10 * 2 ** 20  # a few MB inside the package
    poses = OrbitPoses.for_teacher(G)
    assert poses.yaw_range[0] <= -0.5 and poses.yaw_range[1] >= 0.5
    assert poses.pitch_range[0] <= -0.25 and poses.pitch_range[1] >= 0.25
    camera = G.camera_defaults()
    assert camera.radius == pytest.approx(2.7) and camera.pivot == (0.0, 0.0, 0.0)
    assert teacher.load_named("bundled") is not G and isinstance(teacher.load_named("bundled"), teacher.TriPlaneGenerator)


def test_bundled_teacher_reproduces_held_out_scenes(G):
    # Latents and poses from a seed stream the training script never used.
    gen = torch.Generator().manual_seed(424242)
    z = torch.randn(8, G.z_dim, generator=gen)
    poses = OrbitPoses.for_teacher(G)
    c = poses.sample(gen, 8)
    with torch.no_grad():
        out = G.synthesis(G.mapping(z, c), c, deterministic=True)
    o, d = sample_rays(c[:, :16].reshape(-1, 4, 4), c[:, 16:].reshape(-1, 3, 3), 64)
    rgb, _ = scenes.render(scenes.scene_params(z), o, d, **RK)
    target = rgb.permute(0, 2, 1).reshape(8, 3, 64, 64)
    psnr = -10 * math.log10(((out["image"] - target) / 2).square().mean().item())
    record = json.loads(bundled_module.BUNDLED_FILE.with_suffix(".json").read_text())
    assert psnr > 20, f"bundled teacher PSNR {psnr:.1f} dB against the analytic scenes"
    assert psnr > record["held_out"]["psnr_image"] - 3  # the model shipped is the model the record describes
    # Different latents give different scenes (the latent space is not collapsed).
    assert (out["image"][0] - out["image"][1]).abs().mean() > 0.05


def test_training_record_says_how_it_was_made():
    record = json.loads(bundled_module.BUNDLED_FILE.with_suffix(".json").read_text())
    assert record["command"].startswith("train_bundled_teacher.py")
    for key in ("seed", "point_steps", "image_steps", "seconds", "minutes_total", "torch", "commit"):
        assert key in record
    assert record["held_out"]["psnr_image"] > 23 and record["held_out"]["psnr_image_raw"] > 23


def test_missing_bundled_file_says_how_to_make_it(monkeypatch, tmp_path):
    monkeypatch.setattr(bundled_module, "BUNDLED_FILE", tmp_path / "absent.safetensors")
    with pytest.raises(teacher.BundledTeacherMissing, match="train_bundled_teacher.py"):
        teacher.bundled()


def test_training_script_runs_and_writes_a_loadable_teacher(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import train_bundled_teacher as script
    finally:
        sys.path.remove(str(ROOT / "tools"))
    out = tmp_path / "t.safetensors"
    assert script.main(["--out", str(out), "--work", str(tmp_path / "work"), "--point-steps", "2",
                        "--image-steps", "1", "--batch", "2", "--eval-count", "2"]) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["point_steps"] == 2 and math.isfinite(record["held_out"]["psnr_image"])
    trained = teacher.load(out)
    assert trained.rendering_kwargs["pose_distribution"] == teacher.bundled_config()[0]["rendering_kwargs"][
        "pose_distribution"]
    # --init continues from that file: the new run starts from its weights and records it.
    again = tmp_path / "t2.safetensors"
    assert script.main(["--init", str(out), "--out", str(again), "--work", str(tmp_path / "work2"), "--point-steps",
                        "0", "--image-steps", "1", "--batch", "2", "--eval-count", "2", "--lr", "1e-9"]) == 0
    continued = json.loads(again.with_suffix(".json").read_text())
    assert continued["init"] == record
    assert continued["minutes_total_with_init"] >= record["minutes_total"]
    weights, weights_again = dict(trained.named_parameters()), dict(teacher.load(again).named_parameters())
    assert all(torch.allclose(weights[k], weights_again[k], atol=1e-5) for k in weights), \
        "a step at lr 1e-9 from the init weights must stay at them"
    with pytest.raises(SystemExit, match="--init"):
        script.main(["--init", str(ROOT / "tests" / "data" / "missing.safetensors"), "--out", str(tmp_path / "x"),
                     "--work", str(tmp_path / "work3"), "--point-steps", "0", "--image-steps", "1"])
