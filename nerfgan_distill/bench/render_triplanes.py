"""render_triplanes benchmark: EG3D's FFHQ renderer (3 x 32 x 256^2 planes, 48 + 48
samples per ray, the 32 -> 64 -> 33 decoder), forward in deterministic mode, per backend
(the cpu and cuda rows run the fused kernel) next to the composable torch pipeline eager
and under torch.compile."""
from __future__ import annotations

import functools

import torch

from ..ops import RenderOptions, TriplaneDecoder, render_triplanes
from ..ops.importance_depths import importance_uniforms
from ..ops.render_triplanes_ref import render_triplanes_composable

CHANNELS, PLANE_RES, HIDDEN = 32, 256, 64
OPTIONS = RenderOptions(depth_resolution=48, depth_resolution_importance=48, ray_start=2.25, ray_end=3.3)
SHAPES = {  # (batch, neural rendering resolution): rays = resolution^2 per image
    "quick": [(1, 16)],
    # 2 CPU cores: batch 16 at 128^2 would take the torch reference about half a minute per call
    "cpu": [(1, 64), (4, 64), (1, 128)],
    "cuda": [(1, 128), (4, 128), (16, 128)],
}
FLOPS_PER_SAMPLE = 2 * (CHANNELS * HIDDEN + HIDDEN * (CHANNELS + 1)) + 3 * CHANNELS * 9 + 3 * CHANNELS + 40
# The H100 SXM peaks of ../shared/docs/perf.md section 4 (FP32 cores, special-function units,
# HBM3), and its count of transcendentals per sample (softplus x 64, sigmoid x 32, density).
H100_FP32_FLOPS, H100_MUFU_OPS, H100_HBM_BYTES = 67e12, 4.2e12, 3.35e12
MUFU_PER_SAMPLE = 200


def cases(device: torch.device, dtypes: list[torch.dtype], quick: bool) -> list[dict]:
    shapes = SHAPES["quick"] if quick else SHAPES["cuda" if device.type == "cuda" else "cpu"]
    return [{"shape": shape, "dtype": dtype, "pass": "forward", "config": "ffhq_48+48"}
            for dtype in dtypes for shape in shapes]


def _samples(case: dict) -> int:
    n, res = case["shape"]
    return n * res * res * OPTIONS.samples_per_ray


def traffic_bytes(case: dict) -> int:
    """What a fused renderer must move: the planes once, the rays in, 34 values per ray out."""
    n, res = case["shape"]
    elt = torch.tensor([], dtype=case["dtype"]).element_size()
    return n * 3 * CHANNELS * PLANE_RES * PLANE_RES * elt + n * res * res * (6 + CHANNELS + 2) * 4


def flops(case: dict) -> int:
    return _samples(case) * FLOPS_PER_SAMPLE


def h100_roofline_ms(case: dict) -> float:
    """perf.md's roofline for a fused renderer on one H100, for this case: one decode per
    sample on the FP32 cores (the kernels' decoder does not use tensor cores), its
    transcendentals on the special-function units and the minimum traffic from HBM, each at
    peak and perfectly overlapped. At 128^2 rays that is about 0.22 ms per image (FP32-bound)."""
    seconds = max(flops(case) / H100_FP32_FLOPS, _samples(case) * MUFU_PER_SAMPLE / H100_MUFU_OPS,
                  traffic_bytes(case) / H100_HBM_BYTES)
    return seconds * 1e3


def _inputs(case: dict, device: torch.device):
    n, res = case["shape"]
    gen = torch.Generator(device=device).manual_seed(0)
    planes = torch.randn(n, 3, CHANNELS, PLANE_RES, PLANE_RES, device=device, dtype=case["dtype"], generator=gen)
    decoder = TriplaneDecoder(
        torch.randn(HIDDEN, CHANNELS, device=device, generator=gen) / CHANNELS ** 0.5,
        torch.randn(HIDDEN, device=device, generator=gen) * 0.1,
        torch.randn(CHANNELS + 1, HIDDEN, device=device, generator=gen) / HIDDEN ** 0.5,
        torch.randn(CHANNELS + 1, device=device, generator=gen) * 0.1)
    # A camera at radius 2.7 looking at the box, one ray per pixel of a res x res image.
    v, u = torch.meshgrid(torch.linspace(-0.18, 0.18, res, device=device),
                          torch.linspace(-0.18, 0.18, res, device=device), indexing="ij")
    directions = torch.nn.functional.normalize(torch.stack([u, v, -torch.ones_like(u)], -1), dim=-1)
    directions = directions.reshape(1, res * res, 3).expand(n, -1, -1).contiguous()
    origins = torch.tensor([0.0, 0.0, 2.7], device=device).expand(n, res * res, 3).contiguous()
    return planes, decoder, origins, directions


def _composable(planes, decoder, origins, directions, jitter):
    uniforms = importance_uniforms(origins.shape[0] * origins.shape[1], OPTIONS.depth_resolution_importance,
                                   True, None, origins)
    return render_triplanes_composable(planes, decoder, origins, directions, OPTIONS, jitter, uniforms)


@functools.lru_cache(maxsize=None)
def _compiled_reference():
    return torch.compile(_composable)


def make_step(provider: str, case: dict, device: torch.device):
    planes, decoder, origins, directions = _inputs(case, device)
    if provider in ("torch", "torch.compile"):
        fn = _composable if provider == "torch" else _compiled_reference()
        jitter = origins.new_zeros(origins.shape[0], origins.shape[1], OPTIONS.depth_resolution, 1)
        return lambda: fn(planes, decoder, origins, directions, jitter)
    return lambda: render_triplanes(planes, decoder, origins, directions, OPTIONS, deterministic=True,
                                    backend=provider)
