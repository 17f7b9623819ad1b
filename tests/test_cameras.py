"""Cameras and rays against the official EG3D code (tests/fixtures/cameras.pt, made by
tools/make_camera_fixtures.py) and the worked examples of docs/eg3d.md section 5."""
import dataclasses
import math
from pathlib import Path

import pytest
import torch

from nerfgan_distill import cameras
from nerfgan_distill.teacher import rays

FIXTURES = torch.load(Path(__file__).parent / "fixtures" / "cameras.pt", weights_only=True)
TOL = dict(rtol=0, atol=1e-6)


def ids(group):
    return [case.get("name", str(case.get("fov_degrees", case.get("resolution")))) for case in FIXTURES[group]]


# ----------------------------------------------------------------------------- against the official code

@pytest.mark.parametrize("case", FIXTURES["fov_to_intrinsics"], ids=ids("fov_to_intrinsics"))
def test_fov_to_intrinsics_matches_official(case):
    torch.testing.assert_close(cameras.fov_to_intrinsics(case["fov_degrees"]), case["intrinsics"], **TOL)


@pytest.mark.parametrize("case", FIXTURES["look_at"], ids=ids("look_at"))
def test_look_at_poses_match_official(case):
    batch = case["batch_size"]
    h = torch.full((batch,), case["horizontal"], dtype=torch.float64) if batch > 1 else case["horizontal"]
    pose = cameras.look_at_poses(h, case["vertical"], case["lookat"], case["radius"])
    assert pose.shape == (batch, 4, 4) and pose.dtype == torch.float32
    torch.testing.assert_close(pose, case["cam2world"], **TOL)


@pytest.mark.parametrize("case", FIXTURES["look_at"], ids=ids("look_at"))
def test_sample_look_at_poses_zero_std_match_official(case):
    pose = cameras.sample_look_at_poses(case["horizontal"], case["vertical"], case["lookat"],
                                        radius=case["radius"], batch_size=case["batch_size"],
                                        generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(pose, case["cam2world"], **TOL)


def sample_random(case, generator):
    return cameras.sample_look_at_poses(case["horizontal_mean"], case["vertical_mean"], case["lookat"],
                                        case["horizontal_stddev"], case["vertical_stddev"], case["radius"],
                                        case["batch_size"], generator=generator)


@pytest.mark.parametrize("case", FIXTURES["look_at_random"], ids=ids("look_at_random"))
def test_sample_look_at_poses_random_match_official_with_generator(case):
    gen = torch.Generator().manual_seed(case["seed"])
    torch.testing.assert_close(sample_random(case, gen), case["cam2world"], **TOL)
    # Same RNG consumption: two randn((B, 1)) calls, so the next draws agree too.
    torch.testing.assert_close(torch.randn(4, generator=gen), case["next_randn"], rtol=0, atol=0)


@pytest.mark.parametrize("case", FIXTURES["look_at_random"], ids=ids("look_at_random"))
def test_sample_look_at_poses_random_match_official_default_rng(case):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(case["seed"])
        pose = sample_random(case, None)
        after = torch.randn(4)
    torch.testing.assert_close(pose, case["cam2world"], **TOL)
    torch.testing.assert_close(after, case["next_randn"], rtol=0, atol=0)


@pytest.mark.parametrize("case", FIXTURES["rays"], ids=ids("rays"))
def test_sample_rays_match_official(case):
    origins, directions = rays.sample_rays(case["cam2world"], case["intrinsics"], case["resolution"])
    n, m = case["cam2world"].shape[0], case["resolution"] ** 2
    assert origins.shape == directions.shape == (n, m, 3)
    assert origins.dtype == directions.dtype == torch.float32
    torch.testing.assert_close(origins, case["origins"], **TOL)
    torch.testing.assert_close(directions, case["directions"], **TOL)


@pytest.mark.parametrize("case", FIXTURES["script_labels"], ids=ids("script_labels"))
def test_frontal_camera_matches_script_labels(case):
    focal = None if case["fov_degrees"] is None else cameras.fov_to_intrinsics(case["fov_degrees"])[0, 0].item()
    c = cameras.frontal_camera(case["dataset"], yaw=case["yaw"], pitch=case["pitch"],
                               exact_scripts=case["exact_scripts"], focal=focal)
    assert c.shape == (1, 25) and c.dtype == torch.float32
    torch.testing.assert_close(c, case["c"], **TOL)


def test_fixture_source_is_recorded():
    assert FIXTURES["source"].startswith("NVlabs/eg3d@")


# ----------------------------------------------------------------------------- worked examples (docs 5.1, 5.2)

def test_frontal_pose_worked_example():
    pose = cameras.look_at_poses(math.pi / 2, math.pi / 2, (0.0, 0.0, 0.2), 2.7)[0]
    torch.testing.assert_close(pose[:3, 3], torch.tensor([0.0, 0.0, 2.7]), **TOL)
    torch.testing.assert_close(pose[:3, :3], torch.diag(torch.tensor([1.0, -1.0, -1.0])), **TOL)
    torch.testing.assert_close(pose[3], torch.tensor([0.0, 0.0, 0.0, 1.0]), rtol=0, atol=0)


def test_script_half_pi_moves_the_camera_off_axis():
    pose = cameras.look_at_poses(cameras.SCRIPT_HALF_PI, cameras.SCRIPT_HALF_PI, (0.0, 0.0, 0.2), 2.7)[0]
    assert pose[0, 2].item() == pytest.approx(8.6e-4, abs=1e-5)
    torch.testing.assert_close(pose[:3, 3], torch.tensor([-0.00215, 0.00137, 2.7]), rtol=0, atol=1e-5)


def test_pitch_map_is_nonlinear_and_clamped():
    # v = pi/4 gives phi = arccos(1/2) = pi/3, not pi/4: the camera height is r cos(phi) = r/2.
    pose = cameras.look_at_poses(math.pi / 2, math.pi / 4, (0.0, 0.0, 0.0), 2.0)[0]
    assert pose[1, 3].item() == pytest.approx(1.0, abs=1e-6)
    top = cameras.look_at_poses(math.pi / 2, -1.0, (0.0, 0.0, 0.0), 1.0)  # clamped to 1e-5, not past the pole
    assert torch.isfinite(top).all() and top[0, 1, 3].item() == pytest.approx(1.0, abs=1e-4)


def test_fov_worked_examples():
    assert cameras.fov_to_intrinsics(18.837)[0, 0].item() == pytest.approx(4.26339, abs=1e-5)
    assert cameras.fov_to_intrinsics(18)[0, 0].item() == pytest.approx(4.46517, abs=1e-5)
    k = cameras.fov_to_intrinsics(30.0, dtype=torch.float64)
    assert k.dtype == torch.float64 and k[0, 2] == k[1, 2] == 0.5 and k[0, 1] == 0 and k[2, 2] == 1


def test_rays_follow_opencv_row_major_convention():
    c2w = cameras.look_at_poses(math.pi / 2, math.pi / 2, (0.0, 0.0, 0.0), 2.7)
    k = cameras.focal_to_intrinsics(4.2647)[None]
    origins, dirs = rays.sample_rays(c2w, k, 5)
    torch.testing.assert_close(dirs.norm(dim=-1), torch.ones(1, 25), **TOL)
    torch.testing.assert_close(origins, torch.tensor([0.0, 0.0, 2.7]).expand(1, 25, 3), **TOL)
    torch.testing.assert_close(dirs[0, 12], torch.tensor([0.0, 0.0, -1.0]), **TOL)  # centre pixel (2, 2)
    top_right = dirs[0, 0 * 5 + 4]  # row 0, column 4: image right (+x) and up (world +y)
    assert top_right[0] > 0 and top_right[1] > 0
    bottom_left = dirs[0, 4 * 5 + 0]
    assert bottom_left[0] < 0 and bottom_left[1] < 0
    assert (rays.pixel_centers(4)[:5] == torch.tensor([[0.125, 0.125], [0.375, 0.125], [0.625, 0.125],
                                                       [0.875, 0.125], [0.125, 0.375]])).all()


def test_rays_accept_float64_and_return_float32():
    c2w = cameras.look_at_poses(1.0, 1.2, (0.0, 0.0, 0.0), 2.0).double()
    o, d = rays.sample_rays(c2w, cameras.fov_to_intrinsics(18, dtype=torch.float64)[None], 3)
    assert o.dtype == d.dtype == torch.float32


# ----------------------------------------------------------------------------- sampling behaviour

def test_sample_look_at_poses_consumes_two_draws_even_with_zero_std():
    gen = torch.Generator().manual_seed(5)
    cameras.sample_look_at_poses(1.0, 1.0, (0, 0, 0), batch_size=3, generator=gen)
    ref = torch.Generator().manual_seed(5)
    torch.randn((3, 1), generator=ref), torch.randn((3, 1), generator=ref)
    assert torch.equal(torch.randn(2, generator=gen), torch.randn(2, generator=ref))


def test_sample_look_at_poses_statistics():
    gen = torch.Generator().manual_seed(0)
    poses = cameras.sample_look_at_poses(math.pi / 2, math.pi / 2, (0, 0, 0), 0.3, 0.0, 2.7, 4000, generator=gen)
    theta = math.pi - torch.atan2(poses[:, 2, 3], poses[:, 0, 3])  # origin = r (cos(pi - h), 0, sin(pi - h))
    assert theta.mean().item() == pytest.approx(math.pi / 2, abs=0.02)
    assert theta.std().item() == pytest.approx(0.3, abs=0.02)
    torch.testing.assert_close(poses[:, :3, 3].norm(dim=-1), torch.full((4000,), 2.7), rtol=0, atol=1e-5)


def test_look_at_poses_batches_and_broadcasts():
    h = torch.tensor([1.0, 1.5, 2.0])
    poses = cameras.look_at_poses(h, 1.3, torch.tensor([0.0, 0.0, 0.2]), 2.7)
    for i in range(3):
        torch.testing.assert_close(poses[i], cameras.look_at_poses(h[i].item(), 1.3, (0, 0, 0.2), 2.7)[0], **TOL)
    per_row = cameras.look_at_poses(h, h, torch.tensor([[0.0, 0, 0], [0.1, 0, 0], [0, 0.1, 0]]),
                                    torch.tensor([1.0, 2.0, 3.0]))
    torch.testing.assert_close(per_row[:, :3, 3].norm(dim=-1), torch.tensor([1.0, 2.0, 3.0]), **TOL)
    # Scalar angles with batched lookat or radius broadcast too.
    assert cameras.look_at_poses(1.0, 1.3, torch.zeros(4, 3), 2.0).shape == (4, 4, 4)
    assert cameras.look_at_poses(1.0, 1.3, (0, 0, 0), torch.tensor([1.0, 2.0])).shape == (2, 4, 4)
    with pytest.raises(ValueError, match="lookat has 2 rows"):
        cameras.look_at_poses(h, 1.3, torch.zeros(2, 3), 2.0)
    # Looking at the pivot: the forward axis (third column) points from the origin to lookat.
    f = per_row[1, :3, 2]
    target = torch.tensor([0.1, 0, 0]) - per_row[1, :3, 3]
    torch.testing.assert_close(f, target / target.norm(), **TOL)


def test_rotations_are_orthonormal():
    gen = torch.Generator().manual_seed(1)
    poses = cameras.sample_look_at_poses(1.0, 1.4, (0.1, -0.1, 0.2), 1.0, 0.6, 1.5, 64, generator=gen)
    r = poses[:, :3, :3]
    torch.testing.assert_close(r @ r.transpose(1, 2), torch.eye(3).expand(64, 3, 3), rtol=0, atol=1e-5)
    torch.testing.assert_close(torch.linalg.det(r), torch.ones(64), rtol=0, atol=1e-5)
    assert (r[:, 1, 0].abs() < 1e-6).all()  # no roll: the right axis stays horizontal


# ----------------------------------------------------------------------------- labels and datasets

def test_camera_label_round_trip():
    poses = cameras.look_at_poses(torch.tensor([1.0, 2.0]), 1.5, (0, 0, 0.2), 2.7)
    k = cameras.fov_to_intrinsics(18)
    c = cameras.camera_label(poses, k)
    assert c.shape == (2, 25)
    torch.testing.assert_close(c[0, :16], poses[0].flatten(), rtol=0, atol=0)
    torch.testing.assert_close(c[1, 16:], k.flatten(), rtol=0, atol=0)
    p2, k2 = cameras.split_camera_label(c)
    assert torch.equal(p2, poses) and torch.equal(k2, k.expand(2, 3, 3))
    assert torch.equal(cameras.camera_label(p2, k2), c)


def test_dataset_table():
    ffhq = cameras.dataset_camera("FFHQ")
    assert (ffhq.radius, ffhq.pivot, ffhq.focal, ffhq.box_warp) == (2.7, (0.0, 0.0, 0.2), 4.2647, 1.0)
    assert cameras.dataset_camera("afhq").pivot == (0.0, 0.0, -0.06)
    shapenet = cameras.dataset_camera("shapenet")
    assert (shapenet.radius, shapenet.focal, shapenet.box_warp) == (1.7, 1.7074, 1.6)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ffhq.radius = 3.0
    with pytest.raises(TypeError):
        cameras.DATASET_CAMERAS["ffhq"] = shapenet
    with pytest.raises(ValueError, match="dataset must be one of"):
        cameras.dataset_camera("celeba")


def test_frontal_camera_options():
    exact = cameras.frontal_camera("ffhq", exact_scripts=False)
    p, k = cameras.split_camera_label(exact)
    torch.testing.assert_close(p[0, :3, 3], torch.tensor([0.0, 0.0, 2.7]), **TOL)
    assert k[0, 0, 0].item() == pytest.approx(4.2647)
    c = cameras.frontal_camera("shapenet", batch_size=3)
    assert c.shape == (3, 25) and torch.equal(c[0], c[2])
    yaws = torch.tensor([-0.3, 0.0, 0.3])
    views = cameras.frontal_camera("ffhq", yaw=yaws, exact_scripts=False)
    assert views.shape == (3, 25)
    torch.testing.assert_close(views[1], exact[0], **TOL)
    with pytest.raises(ValueError, match="batch_size"):
        cameras.frontal_camera("ffhq", batch_size=2, yaw=yaws)
    with pytest.raises(ValueError, match="focal"):
        cameras.frontal_camera("ffhq", focal=-1.0)


# ----------------------------------------------------------------------------- bad inputs

@pytest.mark.parametrize("fov", [0, -10.0, 360.0, float("nan"), float("inf"), True, "18"])
def test_fov_to_intrinsics_rejects(fov):
    with pytest.raises((ValueError, TypeError), match="fov_degrees"):
        cameras.fov_to_intrinsics(fov)


def test_label_errors():
    poses = cameras.look_at_poses(1.0, 1.0, (0, 0, 0), 1.0)
    k = cameras.fov_to_intrinsics(18)
    with pytest.raises(ValueError, match=r"c must have shape \[B, 25\]"):
        cameras.split_camera_label(torch.zeros(2, 24))
    with pytest.raises(ValueError, match=r"c must have shape \[B, 25\]"):
        cameras.split_camera_label(torch.zeros(25))
    with pytest.raises(ValueError, match="c contains NaN"):
        cameras.split_camera_label(torch.full((1, 25), float("nan")))
    with pytest.raises(TypeError, match="c must be a floating-point"):
        cameras.split_camera_label(torch.zeros(1, 25, dtype=torch.int64))
    with pytest.raises(TypeError, match="c must be a torch.Tensor"):
        cameras.split_camera_label([0.0] * 25)
    with pytest.raises(ValueError, match=r"cam2world must have shape \[B, 4, 4\]"):
        cameras.camera_label(poses[0], k)
    with pytest.raises(ValueError, match="intrinsics must have shape"):
        cameras.camera_label(poses, k[None].expand(2, 3, 3))
    with pytest.raises(ValueError, match="cam2world contains NaN"):
        cameras.camera_label(poses * float("inf"), k)


def test_pose_errors():
    with pytest.raises(ValueError, match="parallel to the up axis"):
        cameras.create_cam2world_matrix(torch.tensor([[0.0, 1.0, 0.0]]), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="origin must have shape"):
        cameras.create_cam2world_matrix(torch.tensor([[0.0, 0.0, 1.0]]), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="lookat must have shape"):
        cameras.look_at_poses(1.0, 1.0, (0.0, 0.0), 1.0)
    with pytest.raises(TypeError, match="lookat must be 3 numbers"):
        cameras.look_at_poses(1.0, 1.0, None, 1.0)
    with pytest.raises(ValueError, match="radius must be > 0"):
        cameras.look_at_poses(1.0, 1.0, (0, 0, 0), 0.0)
    with pytest.raises(ValueError, match="horizontal must be finite"):
        cameras.look_at_poses(float("nan"), 1.0, (0, 0, 0), 1.0)
    with pytest.raises(ValueError, match="horizontal has 2 rows but another argument has 3"):
        cameras.look_at_poses(torch.zeros(2), torch.zeros(3), (0, 0, 1), 1.0)
    with pytest.raises(ValueError, match="horizontal must have shape"):
        cameras.look_at_poses(torch.zeros(2, 2), 1.0, (0, 0, 0), 1.0)
    with pytest.raises(ValueError, match="batch_size"):
        cameras.sample_look_at_poses(1.0, 1.0, (0, 0, 0), batch_size=0)
    with pytest.raises(TypeError, match="generator"):
        cameras.sample_look_at_poses(1.0, 1.0, (0, 0, 0), generator=3)
    with pytest.raises(TypeError, match="horizontal_stddev must be a number"):
        cameras.sample_look_at_poses(1.0, 1.0, (0, 0, 0), horizontal_stddev=torch.tensor(1.0))


def test_ray_errors():
    c2w = torch.eye(4)[None]
    k = cameras.fov_to_intrinsics(18)[None]
    with pytest.raises(ValueError, match=r"cam2world must have shape \[N, 4, 4\]"):
        rays.sample_rays(c2w[0], k, 4)
    with pytest.raises(ValueError, match=r"intrinsics must have shape \[N, 3, 3\]"):
        rays.sample_rays(c2w, k[0], 4)
    with pytest.raises(ValueError, match="intrinsics has 2 cameras but cam2world has 1"):
        rays.sample_rays(c2w, k.expand(2, 3, 3), 4)
    with pytest.raises(TypeError, match="cam2world must be a floating-point"):
        rays.sample_rays(c2w.long(), k, 4)
    with pytest.raises(TypeError, match="intrinsics must be a torch.Tensor"):
        rays.sample_rays(c2w, k.tolist(), 4)
    for bad in (0, -1, 4.0, True):
        with pytest.raises(ValueError, match="resolution must be a positive int"):
            rays.sample_rays(c2w, k, bad)
