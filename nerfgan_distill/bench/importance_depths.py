"""importance_depths benchmark: EG3D's fine depths (48 coarse, 48 importance samples per
ray) from the coarse pass's weights, deterministic uniforms; forward only (EG3D runs it
under no_grad)."""
from __future__ import annotations

import functools

import torch

from ..ops import importance_depths
from ..ops.importance_depths_ref import importance_from_uniforms, importance_uniforms

COARSE, FINE = 48, 48
SHAPES = {  # (batch, rays per image)
    "quick": [(1, 16 * 16)],
    "cpu": [(1, 64 * 64), (1, 128 * 128), (4, 128 * 128)],
    "cuda": [(1, 128 * 128), (4, 128 * 128), (16, 128 * 128)],
}


def cases(device: torch.device, dtypes: list[torch.dtype], quick: bool) -> list[dict]:
    shapes = SHAPES["quick"] if quick else SHAPES["cuda" if device.type == "cuda" else "cpu"]
    return [{"shape": shape, "dtype": dtype, "pass": "forward", "config": f"D{COARSE}_Di{FINE}"}
            for dtype in dtypes for shape in shapes]


def traffic_bytes(case: dict) -> int:
    """Minimum traffic: coarse depths and weights in, fine depths out."""
    n, rays = case["shape"]
    elt = torch.tensor([], dtype=case["dtype"]).element_size()
    return n * rays * (COARSE + COARSE - 1 + FINE) * elt


def flops(case: dict) -> int:
    """Per ray: the smoothed cdf (~6 per weight), then per fine depth a binary search and a lerp (~2 log2 D + 8)."""
    n, rays = case["shape"]
    return n * rays * (6 * COARSE + FINE * (2 * COARSE.bit_length() + 8))


def _reference(depths, weights):
    n, r = depths.shape[:2]
    return importance_from_uniforms(depths, weights, importance_uniforms(n * r, FINE, True, None, depths))


@functools.lru_cache(maxsize=None)
def _compiled_reference():
    return torch.compile(_reference)


def make_step(provider: str, case: dict, device: torch.device):
    if provider == "torch":
        fn = _reference
    elif provider == "torch.compile":
        fn = _compiled_reference()
    else:
        fn = functools.partial(importance_depths, n_importance=FINE, deterministic=True, backend=provider)
    n, rays = case["shape"]
    gen = torch.Generator(device=device).manual_seed(0)
    steps = torch.rand(n, rays, COARSE, 1, device=device, generator=gen) * (1.05 / COARSE)
    depths = (2.25 + steps.cumsum(2)).to(case["dtype"])
    weights = torch.rand(n, rays, COARSE - 1, 1, device=device, generator=gen).to(case["dtype"])
    return lambda: fn(depths, weights)
