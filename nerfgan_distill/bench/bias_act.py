"""bias_act benchmark: StyleGAN2 layer shapes, lrelu with bias and clamp, forward
and forward+backward, every backend next to the eager and compiled torch reference."""
from __future__ import annotations

import functools

import torch

from ..ops import bias_act
from ..ops.bias_act_ref import bias_act_ref

ACT, CLAMP = "lrelu", 256.0  # what StyleGAN2's fp16 synthesis layers run

# NCHW synthesis layers, and one fully connected layout [N, C] (the bias innermost): the
# tri-plane decoder's hidden layer over 8 x 32^2 rays x 48 samples.
FC = (393216, 64)
SHAPES = {
    "quick": [(2, 64, 32, 32)],
    "cpu": [(8, 512, 16, 16), (8, 256, 64, 64), (4, 64, 256, 256), FC],
    "cuda": [(8, 512, 32, 32), (32, 256, 64, 64), (8, 128, 256, 256), (32, 64, 256, 256), FC],
}


def cases(device: torch.device, dtypes: list[torch.dtype], quick: bool) -> list[dict]:
    shapes = SHAPES["quick"] if quick else SHAPES["cuda" if device.type == "cuda" else "cpu"]
    return [{"shape": shape, "dtype": dtype, "pass": pass_name, "config": f"{ACT}+bias+clamp"}
            for dtype in dtypes for shape in shapes for pass_name in ("forward", "forward+backward")]


def traffic_bytes(case: dict) -> int:
    """Minimum memory traffic: x and b in, y out; backward: dy, x, b in, dx out, dx in for db."""
    numel, channels = torch.Size(case["shape"]).numel(), case["shape"][1]
    forward = 2 * numel + channels
    backward = 4 * numel + 2 * channels if case["pass"] != "forward" else 0
    return (forward + backward) * torch.tensor([], dtype=case["dtype"]).element_size()


def _reference(x, b):
    return bias_act_ref(x, b, 1, ACT, 0.2, 2 ** 0.5, CLAMP)


@functools.lru_cache(maxsize=None)
def _compiled_reference():
    return torch.compile(_reference)


def make_step(provider: str, case: dict, device: torch.device):
    if provider == "torch":
        fn = _reference
    elif provider == "torch.compile":
        fn = _compiled_reference()
    else:
        fn = functools.partial(bias_act, act=ACT, clamp=CLAMP, backend=provider)
    gen = torch.Generator(device=device).manual_seed(0)
    shape, dtype = case["shape"], case["dtype"]
    x = torch.randn(shape, device=device, dtype=dtype, generator=gen)
    b = torch.randn(shape[1], device=device, dtype=dtype, generator=gen)
    if case["pass"] == "forward":
        return lambda: fn(x, b)
    x.requires_grad_(True)
    b.requires_grad_(True)
    dy = torch.randn_like(x)
    return lambda: torch.autograd.grad(fn(x, b), (x, b), dy)
