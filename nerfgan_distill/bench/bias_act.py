"""bias_act benchmark: StyleGAN2 layer shapes, lrelu with bias and clamp, forward
and forward+backward, every backend next to the eager and compiled torch reference."""
from __future__ import annotations

import torch

from ..ops import bias_act
from ..ops.bias_act_ref import bias_act_ref

ACT, CLAMP = "lrelu", 256.0  # what StyleGAN2's fp16 synthesis layers run

SHAPES = {
    "quick": [(2, 64, 32, 32)],
    "cpu": [(8, 512, 16, 16), (8, 256, 64, 64), (4, 64, 256, 256)],
    "cuda": [(8, 512, 32, 32), (32, 256, 64, 64), (8, 128, 256, 256), (32, 64, 256, 256)],
}


def traffic_bytes(shape, itemsize: int, with_backward: bool) -> int:
    """Minimum memory traffic: x and b in, y out; backward: dy, x, b in, dx out, dx in for db."""
    numel, channels = torch.Size(shape).numel(), shape[1]
    forward = 2 * numel + channels
    backward = 4 * numel + 2 * channels if with_backward else 0
    return (forward + backward) * itemsize


def providers(device: torch.device, backends: list[str]) -> dict:
    """name -> function(x, b) for each kernel backend and for the eager/compiled reference."""
    def backend_fn(name):
        return lambda x, b: bias_act(x, b, act=ACT, clamp=CLAMP, backend=name)

    reference = lambda x, b: bias_act_ref(x, b, 1, ACT, 0.2, 2 ** 0.5, CLAMP)  # noqa: E731
    out = {name: backend_fn(name) for name in backends}
    out["torch"] = reference
    out["torch.compile"] = torch.compile(reference)
    return out


def cases(device: torch.device, dtypes: list[torch.dtype], quick: bool):
    shapes = SHAPES["quick"] if quick else SHAPES["cuda" if device.type == "cuda" else "cpu"]
    for dtype in dtypes:
        for shape in shapes:
            for pass_name in ("forward", "forward+backward"):
                yield shape, dtype, pass_name


def make_step(fn, shape, dtype, device, pass_name):
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(shape, device=device, dtype=dtype, generator=gen)
    b = torch.randn(shape[1], device=device, dtype=dtype, generator=gen)
    if pass_name == "forward":
        return lambda: fn(x, b)
    x.requires_grad_(True)
    b.requires_grad_(True)
    dy = torch.randn_like(x)
    return lambda: torch.autograd.grad(fn(x, b), (x, b), dy)
