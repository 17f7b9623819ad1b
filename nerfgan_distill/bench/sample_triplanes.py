"""sample_triplanes benchmark: EG3D's FFHQ planes (3 x 32 x 256 x 256) sampled at one
pass of points (rays x 48 depth samples), forward and forward+backward, with the planes
as the backbone makes them (NCHW) and channels-last (what the teacher feeds the kernels).

The "hot_texels" config puts every point within a texel of the box centre: each plane's
gradient then lands on the same four texels, the worst case for the GPU kernels' atomic
adds. Its forward+backward time against planes_nchw's measures that contention."""
from __future__ import annotations

import functools

import torch

from ..ops import sample_triplanes
from ..ops.sample_triplanes_ref import sample_triplanes_ref

CHANNELS, PLANE_RES, SAMPLES = 32, 256, 48
# (batch, rays per image); points per image = rays * SAMPLES
SHAPES = {
    "quick": [(1, 16 * 16)],
    "cpu": [(1, 64 * 64), (4, 64 * 64)],  # 2 cores: 128^2 rays only on GPU
    "cuda": [(1, 128 * 128), (4, 128 * 128), (16, 128 * 128)],
}
CONFIGS = ("planes_nchw", "planes_channels_last", "hot_texels")


def cases(device: torch.device, dtypes: list[torch.dtype], quick: bool) -> list[dict]:
    shapes = SHAPES["quick"] if quick else SHAPES["cuda" if device.type == "cuda" else "cpu"]
    return [{"shape": shape, "dtype": dtype, "pass": pass_name, "config": config}
            for dtype in dtypes for config in CONFIGS for shape in shapes
            for pass_name in ("forward", "forward+backward")]


def traffic_bytes(case: dict) -> int:
    """Minimum traffic: planes and points in, features out; backward: feature grads in,
    planes and point grads out (planes grads in fp32)."""
    n, rays = case["shape"]
    points = n * rays * SAMPLES
    elt = torch.tensor([], dtype=case["dtype"]).element_size()
    planes = n * 3 * CHANNELS * PLANE_RES * PLANE_RES
    total = planes * elt + points * 3 * 4 + points * 3 * CHANNELS * elt
    if case["pass"] != "forward":
        total += points * 3 * CHANNELS * elt + planes * 4 + points * 3 * 4
    return total


def flops(case: dict) -> int:
    """Bilinear blends: 3 planes x C channels x (4 multiplies + 3 adds + 2 weight products)."""
    n, rays = case["shape"]
    forward = n * rays * SAMPLES * 3 * CHANNELS * 9
    return forward * (1 if case["pass"] == "forward" else 3)


def _ray_points(n: int, rays: int, device: torch.device) -> torch.Tensor:
    """[n, rays * SAMPLES, 3]: SAMPLES depths along each ray of a frontal camera at radius
    2.7 (FFHQ's), ray-major like the renderer's, so neighbouring points are close."""
    res = int(rays ** 0.5)
    v, u = torch.meshgrid(torch.linspace(-0.18, 0.18, res, device=device),
                          torch.linspace(-0.18, 0.18, res, device=device), indexing="ij")
    directions = torch.nn.functional.normalize(torch.stack([u, v, -torch.ones_like(u)], -1), dim=-1)
    depths = torch.linspace(2.25, 3.3, SAMPLES, device=device)
    origin = torch.tensor([0.0, 0.0, 2.7], device=device)
    points = origin + depths[None, :, None] * directions.reshape(-1, 1, 3)  # [rays, SAMPLES, 3]
    return points.reshape(1, res * res * SAMPLES, 3).expand(n, -1, -1).contiguous()


@functools.lru_cache(maxsize=None)
def _compiled_reference():
    return torch.compile(sample_triplanes_ref)


def make_step(provider: str, case: dict, device: torch.device):
    if provider == "torch":
        fn = sample_triplanes_ref
    elif provider == "torch.compile":
        fn = _compiled_reference()
    else:
        fn = functools.partial(sample_triplanes, backend=provider)
    n, rays = case["shape"]
    gen = torch.Generator(device=device).manual_seed(0)
    planes = torch.randn(n, 3, CHANNELS, PLANE_RES, PLANE_RES, device=device, dtype=case["dtype"], generator=gen)
    if case["config"] == "planes_channels_last":
        planes = planes.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    coords = _ray_points(n, rays, device)
    if case["config"] == "hot_texels":  # the same points squeezed into a quarter texel around the centre
        coords = (coords - coords.mean(dim=1, keepdim=True)) * (0.25 / PLANE_RES / coords.abs().amax())
    if case["pass"] == "forward":
        return lambda: fn(planes, coords)
    planes.requires_grad_(True)
    coords.requires_grad_(True)
    grad = torch.randn(n, 3, rays * SAMPLES, CHANNELS, device=device, dtype=case["dtype"], generator=gen)
    return lambda: torch.autograd.grad(fn(planes, coords), (planes, coords), grad)
