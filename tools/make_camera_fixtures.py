"""Make tests/fixtures/cameras.pt from the official EG3D camera code.

Runs the official camera_utils (FOV_to_intrinsics, LookAtPoseSampler) and RaySampler on CPU,
in float32, and saves inputs and outputs:

    fov_to_intrinsics   FOV_to_intrinsics for several fields of view (18 is gen_samples' default
                        after click truncates 18.837)
    look_at             LookAtPoseSampler.sample with zero stddev (pi/2, 3.14/2, off-axis, clamped v)
    look_at_random      LookAtPoseSampler.sample with nonzero stddev after torch.manual_seed(seed),
                        plus the next torch.randn(4) (to check how much RNG the sampler consumed)
    rays                RaySampler for a few cameras at R = 4..8, with skew, fx != fy and off-centre cx/cy
    script_labels       the c vectors gen_samples.py and gen_videos.py build (their LookAtPoseSampler
                        calls and intrinsics, restated here with the scripts' constants)
    create_samples      gen_samples.create_samples for small N (the function is taken from the script
                        with ast and run alone, since the script imports click, mrcfile, ...)

Nothing of the official code is copied; it is imported from the path you give:

    git clone https://github.com/NVlabs/eg3d /tmp/eg3d   # or any copy of it
    pip install requests                                 # dnnlib imports it
    python tools/make_camera_fixtures.py /tmp/eg3d/eg3d
"""
import argparse
import ast
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch


def load_function(path: Path, name: str):
    """The top-level function `name` of the script at `path`, run alone with numpy and torch in scope."""
    tree = ast.parse(path.read_text())
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    scope = {"np": np, "torch": torch}
    exec(compile(ast.Module(body=[node], type_ignores=[]), str(path), "exec"), scope)
    return scope[name]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("eg3d", type=Path, help="the folder that holds camera_utils.py (eg3d/eg3d in the repo)")
    parser.add_argument("--commit", help="the official commit, when the folder is not a git checkout")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests/fixtures/cameras.pt")
    args = parser.parse_args()
    for rel in ("camera_utils.py", "training/volumetric_rendering/ray_sampler.py", "gen_samples.py"):
        if not (args.eg3d / rel).is_file():
            sys.exit(f"{args.eg3d} does not hold {rel}")
    sys.path.insert(0, str(args.eg3d))
    from camera_utils import FOV_to_intrinsics, LookAtPoseSampler  # the official code
    from training.volumetric_rendering.ray_sampler import RaySampler  # the official code
    create_samples = load_function(args.eg3d / "gen_samples.py", "create_samples")  # the official code

    # ------------------------------------------------------------------ intrinsics
    fovs = []
    for fov in (5.0, 12.5, 18, 18.837, 30.0, 60.0, 90.0):
        fovs.append({"fov_degrees": fov, "intrinsics": FOV_to_intrinsics(fov)})

    # ------------------------------------------------------------------ poses, zero stddev
    half, pi = 3.14 / 2, math.pi
    looks = []
    for name, h, v, lookat, radius, batch in [
        ("pi_half_ffhq", pi / 2, pi / 2, [0, 0, 0.2], 2.7, 1),
        ("script_half_ffhq", half, half, [0, 0, 0.2], 2.7, 1),
        ("script_half_afhq", half, half, [0, 0, -0.06], 2.7, 1),
        ("script_half_shapenet", half, half, [0, 0, 0], 1.7, 1),
        ("gen_samples_yaw+0.4", pi / 2 + 0.4, pi / 2 - 0.2, [0, 0, 0.2], 2.7, 1),
        ("gen_samples_yaw-0.4", pi / 2 - 0.4, pi / 2 - 0.2, [0, 0, 0.2], 2.7, 1),
        ("off_axis_batch3", 0.3, 2.9, [0.1, -0.2, 0.05], 1.3, 3),
        ("behind", 4.5, 1.2, [0.0, 0.1, 0.0], 2.0, 1),
        ("v_clamped_low", 1.0, -0.3, [0, 0, 0.2], 2.7, 1),
        ("v_clamped_high", 2.0, 4.0, [0, 0, 0.2], 2.7, 2),
        ("numpy_float64_angles", np.float64(half) + 0.35 * np.sin(2 * 3.14 * 0.3),
         np.float64(half) - 0.05 + 0.25 * np.cos(2 * 3.14 * 0.3), [0, 0, 0.2], 2.7, 1),
    ]:
        pose = LookAtPoseSampler.sample(h, v, torch.tensor(lookat, dtype=torch.float32), radius=radius,
                                        batch_size=batch)
        looks.append({"name": name, "horizontal": float(h), "vertical": float(v), "lookat": list(map(float, lookat)),
                      "radius": radius, "batch_size": batch, "cam2world": pose})

    # ------------------------------------------------------------------ poses, nonzero stddev
    randoms = []
    for name, seed, h, v, hs, vs, lookat, radius, batch in [
        ("ffhq_b5", 7, pi / 2, pi / 2, 0.3, 0.15, [0, 0, 0.2], 2.7, 5),
        ("shapenet_b20", 123, pi / 2, pi / 2, pi, pi / 2, [0, 0, 0], 1.7, 20),  # numel >= 16: vectorized randn
        ("h_only_b3", 2024, 1.0, 1.3, 0.5, 0.0, [0.05, 0.0, 0.1], 2.2, 3),
    ]:
        torch.manual_seed(seed)
        pose = LookAtPoseSampler.sample(h, v, torch.tensor(lookat, dtype=torch.float32), horizontal_stddev=hs,
                                        vertical_stddev=vs, radius=radius, batch_size=batch)
        after = torch.randn(4)
        randoms.append({"name": name, "seed": seed, "horizontal_mean": h, "vertical_mean": v,
                        "horizontal_stddev": hs, "vertical_stddev": vs, "lookat": list(map(float, lookat)),
                        "radius": radius, "batch_size": batch, "cam2world": pose, "next_randn": after})

    # ------------------------------------------------------------------ rays
    gen = torch.Generator().manual_seed(99)
    sampler = RaySampler()
    rays = []

    def k(fx, fy, cx, cy, sk=0.0):
        return torch.tensor([[fx, sk, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float32)

    random_pose = LookAtPoseSampler.sample(0.9, 1.2, torch.tensor([0.1, 0.0, -0.1]), radius=1.9)[0]
    tilted = random_pose.clone()
    tilted[:3, 3] += torch.randn(3, generator=gen) * 0.1  # not looking at anything in particular
    frontal = LookAtPoseSampler.sample(pi / 2, pi / 2, torch.tensor([0, 0, 0.2]), radius=2.7)[0]
    for name, poses, intrinsics, res in [
        ("ffhq_frontal_r4", [frontal], [k(4.2647, 4.2647, 0.5, 0.5)], 4),
        ("skew_offcentre_r5", [random_pose], [k(1.7, 2.1, 0.43, 0.58, 0.3)], 5),
        ("batch2_r6", [frontal, tilted], [k(4.2647, 4.2647, 0.5, 0.5), k(1.2, 1.1, 0.6, 0.45, -0.2)], 6),
        ("fov18_r7", [tilted], [FOV_to_intrinsics(18)], 7),
        ("shapenet_r8", [LookAtPoseSampler.sample(2.0, 1.0, torch.tensor([0.0, 0, 0]), radius=1.7)[0]],
         [k(1.7074, 1.7074, 0.5, 0.5)], 8),
    ]:
        cam2world, intr = torch.stack(poses), torch.stack(intrinsics)
        origins, directions = sampler(cam2world, intr, res)
        rays.append({"name": name, "cam2world": cam2world, "intrinsics": intr, "resolution": res,
                     "origins": origins, "directions": directions})

    # ------------------------------------------------------------------ labels the scripts build
    def label(pose, intr):
        return torch.cat([pose.reshape(-1, 16), intr.reshape(-1, 9)], 1)

    def gen_videos_k(focal):
        return torch.tensor([[focal, 0, 0.5], [0, focal, 0.5], [0, 0, 1]], dtype=torch.float32)

    labels = []
    # gen_samples.py: intrinsics FOV_to_intrinsics(18) (click makes the 18.837 default an int);
    # conditioning LookAt(pi/2, pi/2); render views LookAt(pi/2 + yaw, pi/2 - 0.2), yaw in (0.4, 0, -0.4).
    k18 = FOV_to_intrinsics(18)
    ffhq_pivot, ffhq_r = torch.tensor([0, 0, 0.2]), 2.7
    labels.append({"name": "gen_samples_ffhq_conditioning", "dataset": "ffhq", "exact_scripts": False,
                   "yaw": 0.0, "pitch": 0.0, "fov_degrees": 18,
                   "c": label(LookAtPoseSampler.sample(np.pi / 2, np.pi / 2, ffhq_pivot, radius=ffhq_r), k18)})
    for yaw in (0.4, 0, -0.4):
        labels.append({"name": f"gen_samples_ffhq_render_yaw{yaw:+}", "dataset": "ffhq", "exact_scripts": False,
                       "yaw": float(yaw), "pitch": -0.2, "fov_degrees": 18,
                       "c": label(LookAtPoseSampler.sample(np.pi / 2 + yaw, np.pi / 2 + -0.2, ffhq_pivot,
                                                           radius=ffhq_r), k18)})
    # gen_videos.py: focal 4.2647 (1.7074 for Shapenet), conditioning LookAt(3.14/2, 3.14/2), and per frame
    # yaw 3.14/2 + 0.35 sin(2*3.14*t), pitch 3.14/2 - 0.05 + 0.25 cos(2*3.14*t), t = frame / (keyframes * w_frames).
    for dataset, pivot, radius, focal in [("ffhq", [0, 0, 0.2], 2.7, 4.2647), ("afhq", [0, 0, -0.06], 2.7, 4.2647),
                                          ("shapenet", [0, 0, 0], 1.7, 1.7074)]:
        pivot = torch.tensor(pivot)
        labels.append({"name": f"gen_videos_{dataset}_conditioning", "dataset": dataset, "exact_scripts": True,
                       "yaw": 0.0, "pitch": 0.0, "fov_degrees": None,
                       "c": label(LookAtPoseSampler.sample(3.14 / 2, 3.14 / 2, pivot, radius=radius),
                                  gen_videos_k(focal))})
        if dataset == "afhq":
            continue
        frames = 2 * 120  # the defaults: num_keyframes follows --seeds, w_frames = 120
        for frame_idx in (0, 37, 121, 200):
            t = frame_idx / frames
            pose = LookAtPoseSampler.sample(3.14 / 2 + 0.35 * np.sin(2 * 3.14 * t),
                                            3.14 / 2 - 0.05 + 0.25 * np.cos(2 * 3.14 * t), pivot, radius=radius)
            labels.append({"name": f"gen_videos_{dataset}_frame{frame_idx}", "dataset": dataset,
                           "exact_scripts": True, "yaw": float(0.35 * np.sin(2 * 3.14 * t)),
                           "pitch": float(-0.05 + 0.25 * np.cos(2 * 3.14 * t)), "fov_degrees": None,
                           "c": label(pose, gen_videos_k(focal))})

    # ------------------------------------------------------------------ the shape grid
    grids = []
    for n, cube in ((3, 1.0), (5, 1.6), (6, 1.0)):
        samples, origin, size = create_samples(N=n, voxel_origin=[0, 0, 0], cube_length=cube)
        grids.append({"resolution": n, "box_warp": cube, "samples": samples[0], "voxel_origin": origin.tolist(),
                      "voxel_size": float(size)})

    for group in (fovs, looks, randoms, rays, labels, grids):
        for case in group:
            for key, value in case.items():
                if isinstance(value, torch.Tensor) and not torch.isfinite(value).all():
                    raise AssertionError(f"the official code gave non-finite {key}")

    commit = args.commit or subprocess.run(["git", "-C", str(args.eg3d), "rev-parse", "HEAD"],
                                           capture_output=True, text=True).stdout.strip() or "unknown"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"source": f"NVlabs/eg3d@{commit}", "torch_version": str(torch.__version__),
                "fov_to_intrinsics": fovs, "look_at": looks, "look_at_random": randoms, "rays": rays,
                "script_labels": labels, "create_samples": grids}, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes): {len(fovs)} fov_to_intrinsics, {len(looks)} look_at, "
          f"{len(randoms)} look_at_random, {len(rays)} rays, {len(labels)} script_labels, "
          f"{len(grids)} create_samples cases")


if __name__ == "__main__":
    main()
