"""Check our teacher against the official EG3D generator, and make the test fixtures.

For each config it builds the official TriPlaneGenerator (imported from the path you give;
nothing of it is copied) with seeded random weights (nerfgan_distill.teacher.synthetic),
pickles it with the official persistence code, loads that pickle with our safe loader,
and runs both in fp32 on CPU in deterministic mode (coarse samples at bin starts,
importance uniforms linspace(0, 1, n); backbone noise 'const'). It reports the largest
differences against the issue's tolerances: ws 1e-5, image and image_raw 2e-3 max abs,
depth 1e-3 relative L2.

    git clone https://github.com/NVlabs/eg3d /tmp/eg3d       # or any copy of it
    pip install requests                                    # dnnlib imports it
    python tools/eg3d_parity.py /tmp/eg3d/eg3d              # every official config
    python tools/eg3d_parity.py /tmp/eg3d/eg3d --fixtures tests/fixtures/teacher_parity.pt

With --fixtures it runs the smaller fixture cases instead and saves their inputs and
(subsampled) official outputs for tests/test_teacher_parity.py.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import pickle
import sys
import time
from pathlib import Path

import torch

if __name__ == "__main__":  # run as a script from a checkout; imported (tests), leave sys.path alone
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nerfgan_distill import teacher  # noqa: E402
from nerfgan_distill.teacher.configs import OFFICIAL_CONFIGS, official_config  # noqa: E402
from nerfgan_distill.teacher.synthetic import random_state  # noqa: E402

TOLERANCES = {"ws": 1e-5, "image": 2e-3, "image_raw": 2e-3, "image_depth": 1e-3}


def fixture_cases() -> list[dict]:
    """Small cases for the tests: every official architecture, both SR resize paths, a
    batch of 2, truncation. The 8X and 4X modules exist in EG3D but no official pickle
    uses them; they are checked on the FFHQ backbone."""
    def case(name, config, batch=1, resolution=None, sr=None, img_resolution=None, psi=1.0, seed=0):
        return dict(name=name, config=config, batch=batch, resolution=resolution, sr=sr,
                    img_resolution=img_resolution, psi=psi, seed=seed)
    return [
        case("ffhq512-64_batch2_psi0.7", "ffhq512-64", batch=2, psi=0.7, seed=1),
        case("afhqcats512-128", "afhqcats512-128", seed=2),
        case("shapenetcars128-64", "shapenetcars128-64", seed=3),
        case("sr8X_512-32", "ffhq512-64", resolution=32, sr="SuperresolutionHybrid8X", seed=4),
        case("sr4X_256-64", "ffhq512-64", sr="SuperresolutionHybrid4X", img_resolution=256, seed=5),
    ]


def build_kwargs(case: dict) -> tuple[dict, int]:
    kwargs, resolution = official_config(case["config"])
    if case.get("sr"):
        kwargs["rendering_kwargs"]["superresolution_module"] = f"training.superresolution.{case['sr']}"
    if case.get("img_resolution"):
        kwargs["img_resolution"] = case["img_resolution"]
    return kwargs, case.get("resolution") or resolution


def cameras(official_camera_utils, kwargs: dict, batch: int, generator: torch.Generator):
    """Conditioning c (frontal, as the scripts) and render c (a few yaws/pitches)."""
    rk = kwargs["rendering_kwargs"]
    pivot = torch.tensor(rk["avg_camera_pivot"], dtype=torch.float32)
    radius = rk["avg_camera_radius"]
    focal = 1.7074 if kwargs["img_resolution"] == 128 else 4.2647
    intrinsics = torch.tensor([[focal, 0, 0.5], [0, focal, 0.5], [0, 0, 1]], dtype=torch.float32)
    sampler = official_camera_utils.LookAtPoseSampler

    def label(h, v):
        pose = sampler.sample(h, v, pivot, radius=radius, batch_size=1)
        return torch.cat([pose.reshape(-1, 16), intrinsics.reshape(-1, 9)], 1)

    c_cond = label(math.pi / 2, math.pi / 2).repeat(batch, 1)
    offsets = (torch.rand(batch, 2, generator=generator) - 0.5) * 0.6
    c_render = torch.cat([label(math.pi / 2 + float(h), math.pi / 2 + float(v)) for h, v in offsets])
    return c_cond, c_render


@contextlib.contextmanager
def deterministic_official_renderer():
    """EG3D's renderer with our deterministic contract: zero stratified jitter
    (torch.rand_like in sample_stratified) and u = linspace(0, 1, n) (torch.rand in sample_pdf)."""
    rand, rand_like = torch.rand, torch.rand_like

    def linspace_rand(*size, device=None, **_):
        size = tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)) else size
        return torch.linspace(0, 1, size[-1], device=device).expand(*size).contiguous()

    torch.rand, torch.rand_like = linspace_rand, lambda t, **_: torch.zeros_like(t)
    try:
        yield
    finally:
        torch.rand, torch.rand_like = rand, rand_like


def run_official(eg3d_path: Path, case: dict) -> dict:
    sys.path.insert(0, str(eg3d_path))
    import camera_utils
    from training.triplane import TriPlaneGenerator

    kwargs, resolution = build_kwargs(case)
    torch.manual_seed(case["seed"])  # the official constructor's own init, overwritten below
    official = TriPlaneGenerator(**kwargs).eval().requires_grad_(False)
    official.load_state_dict(random_state(official, case["seed"]))
    official.neural_rendering_resolution = resolution
    generator = torch.Generator().manual_seed(case["seed"])
    z = torch.randn(case["batch"], kwargs["z_dim"], generator=generator)
    c_cond, c_render = cameras(camera_utils, kwargs, case["batch"], generator)
    start = time.perf_counter()
    with torch.no_grad(), deterministic_official_renderer():
        ws = official.mapping(z, c_cond, truncation_psi=case["psi"], truncation_cutoff=14)
        out = official.synthesis(ws, c_render, noise_mode="const")
    seconds = time.perf_counter() - start
    # The snapshot format of training_loop.py: the official persistence pickles the module.
    snapshot = pickle.dumps({"training_set_kwargs": {}, "G": None, "D": None, "G_ema": official,
                             "augment_pipe": None})
    return dict(kwargs=kwargs, resolution=resolution, z=z, c_cond=c_cond, c_render=c_render, ws=ws,
                seconds=seconds, snapshot=snapshot, **{k: out[k] for k in ("image", "image_raw", "image_depth")})


def run_ours(snapshot: bytes, official: dict, psi: float) -> dict:
    model = teacher.load(io.BytesIO(snapshot))
    start = time.perf_counter()
    with torch.no_grad():
        ws = model.mapping(official["z"], official["c_cond"], truncation_psi=psi, truncation_cutoff=14)
        out = model.synthesis(ws, official["c_render"], noise_mode="const", deterministic=True)
    return dict(ws=ws, seconds=time.perf_counter() - start, **out)


def differences(ours: dict, official: dict) -> dict:
    diff = {k: (ours[k] - official[k]).abs().max().item() for k in ("ws", "image", "image_raw")}
    depth, reference = ours["image_depth"], official["image_depth"]
    diff["image_depth"] = ((depth - reference).norm() / reference.norm()).item()
    return diff


def subsample(image: torch.Tensor, limit: int = 64) -> torch.Tensor:
    """Every step-th pixel, at most `limit` per side; a copy (torch.save would store a
    view's whole storage)."""
    step = max(1, image.shape[-1] // limit)
    return image[..., ::step, ::step].clone()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("eg3d", type=Path, help="the eg3d/ folder of the official repository")
    parser.add_argument("--configs", nargs="*", default=list(OFFICIAL_CONFIGS), help="official configs to check")
    parser.add_argument("--fixtures", type=Path, help="run the fixture cases and save them here")
    parser.add_argument("--report", type=Path, help="write the differences as JSON here")
    args = parser.parse_args()
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    torch.set_grad_enabled(False)

    cases = fixture_cases() if args.fixtures else [dict(name=name, config=name, batch=1, psi=0.7, seed=i)
                                                   for i, name in enumerate(args.configs)]
    report, saved, failed = [], [], False
    for case in cases:
        official = run_official(args.eg3d, case)
        ours = run_ours(official["snapshot"], official, case["psi"])
        diff = differences(ours, official)
        ok = all(diff[k] <= TOLERANCES[k] for k in TOLERANCES)
        failed |= not ok
        report.append(dict(case=case["name"], ok=ok, differences=diff, tolerances=TOLERANCES,
                           official_seconds=official["seconds"], ours_seconds=ours["seconds"]))
        print(f"{case['name']:28} {'ok  ' if ok else 'FAIL'} " + "  ".join(f"{k} {v:.2e}" for k, v in diff.items())
              + f"   official {official['seconds']:.1f} s, ours {ours['seconds']:.1f} s", flush=True)
        if args.fixtures:
            saved.append(dict(case=case, kwargs=official["kwargs"], resolution=official["resolution"],
                              z=official["z"], c_cond=official["c_cond"], c_render=official["c_render"],
                              ws=official["ws"].clone(), image=subsample(official["image"]),
                              image_mean=official["image"].mean((2, 3)), image_abs_mean=official["image"].abs().mean(),
                              image_raw=subsample(official["image_raw"], 64),
                              image_depth=subsample(official["image_depth"], 64)))
    if args.fixtures:
        torch.save({"source": "NVlabs/eg3d 7cf1fd1", "tolerances": TOLERANCES, "cases": saved}, args.fixtures)
        print(f"wrote {args.fixtures} ({args.fixtures.stat().st_size / 1e3:.0f} KB)")
    if args.report:
        args.report.write_text(json.dumps(report, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
