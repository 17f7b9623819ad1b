"""composite_rays benchmark: EG3D's final compositing of 48 + 48 samples with 32
features per ray, forward and forward+backward."""
from __future__ import annotations

import functools

import torch

from ..ops import composite_rays
from ..ops.composite_rays_ref import composite_rays_ref

CHANNELS, SAMPLES = 32, 96
SHAPES = {  # (batch, rays per image)
    "quick": [(1, 16 * 16)],
    "cpu": [(1, 64 * 64), (1, 128 * 128), (4, 128 * 128)],
    "cuda": [(1, 128 * 128), (4, 128 * 128), (16, 128 * 128)],
}


def cases(device: torch.device, dtypes: list[torch.dtype], quick: bool) -> list[dict]:
    shapes = SHAPES["quick"] if quick else SHAPES["cuda" if device.type == "cuda" else "cpu"]
    return [{"shape": shape, "dtype": dtype, "pass": pass_name, "config": f"S{SAMPLES}_C{CHANNELS}"}
            for dtype in dtypes for shape in shapes for pass_name in ("forward", "forward+backward")]


def traffic_bytes(case: dict) -> int:
    """Minimum traffic: colors, densities, depths in; rgb, depth, weights out; backward:
    the inputs and output gradients in (weights too), color and density gradients out."""
    n, rays = case["shape"]
    samples = n * rays * SAMPLES
    elt = torch.tensor([], dtype=case["dtype"]).element_size()
    forward = samples * (CHANNELS + 2) + n * rays * (CHANNELS + 1) + samples
    backward = samples * (CHANNELS + 2) + n * rays * (CHANNELS + 1) + 2 * samples + samples * (CHANNELS + 1)
    return (forward + (backward if case["pass"] != "forward" else 0)) * elt


def flops(case: dict) -> int:
    """Per interval: the midpoint colors and their weighted sum (3 per channel) plus ~20 scalar ops."""
    n, rays = case["shape"]
    forward = n * rays * (SAMPLES - 1) * (3 * CHANNELS + 20)
    return forward * (1 if case["pass"] == "forward" else 3)


def _reference(colors, densities, depths):
    return composite_rays_ref(colors, densities, depths)


@functools.lru_cache(maxsize=None)
def _compiled_reference():
    return torch.compile(_reference)


def make_step(provider: str, case: dict, device: torch.device):
    if provider == "torch":
        fn = _reference
    elif provider == "torch.compile":
        fn = _compiled_reference()
    else:
        fn = functools.partial(composite_rays, backend=provider)
    n, rays = case["shape"]
    gen = torch.Generator(device=device).manual_seed(0)
    dtype = case["dtype"]
    colors = torch.rand(n, rays, SAMPLES, CHANNELS, device=device, dtype=dtype, generator=gen)
    densities = torch.randn(n, rays, SAMPLES, 1, device=device, dtype=dtype, generator=gen) * 4
    steps = torch.rand(n, rays, SAMPLES, 1, device=device, generator=gen) * (1.05 / SAMPLES)
    depths = (2.25 + steps.cumsum(2)).to(dtype)
    if case["pass"] == "forward":
        return lambda: fn(colors, densities, depths)
    colors.requires_grad_(True)
    densities.requires_grad_(True)
    return lambda: torch.autograd.grad(fn(colors, densities, depths)[0].sum(), (colors, densities))
