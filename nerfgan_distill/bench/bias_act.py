"""bias_act benchmark: StyleGAN2 layer shapes, lrelu with bias and clamp, and every
activation with an exp/log/tanh in it at one shape (the CPU kernel vectorises those itself),
forward and forward+backward, every backend next to the eager and compiled torch reference."""
from __future__ import annotations

import functools

import torch

from ..ops import bias_act
from ..ops.bias_act_ref import ACTIVATIONS, bias_act_ref

ACT, CLAMP = "lrelu", 256.0  # what StyleGAN2's fp16 synthesis layers run
TRANSCENDENTAL = ("tanh", "sigmoid", "elu", "selu", "softplus", "swish")  # with bias, no clamp

# NCHW synthesis layers, and one fully connected layout [N, C] (the bias innermost): the
# tri-plane decoder's hidden layer over 8 x 32^2 rays x 48 samples.
FC = (393216, 64)
SHAPES = {
    "quick": [(2, 64, 32, 32)],
    "cpu": [(8, 512, 16, 16), (8, 256, 64, 64), (4, 64, 256, 256), FC],
    "cuda": [(8, 512, 32, 32), (32, 256, 64, 64), (8, 128, 256, 256), (32, 64, 256, 256), FC],
}
TRANSCENDENTAL_SHAPE = {"quick": (2, 64, 32, 32), "cpu": (8, 256, 64, 64), "cuda": (32, 256, 64, 64)}


def cases(device: torch.device, dtypes: list[torch.dtype], quick: bool) -> list[dict]:
    size = "quick" if quick else "cuda" if device.type == "cuda" else "cpu"
    runs = [(ACT, CLAMP, shape) for shape in SHAPES[size]] + [(act, None, TRANSCENDENTAL_SHAPE[size])
                                                             for act in TRANSCENDENTAL]
    return [{"shape": shape, "dtype": dtype, "pass": pass_name, "act": act, "clamp": clamp,
             "config": f"{act}+bias" + ("+clamp" if clamp is not None else "")}
            for dtype in dtypes for act, clamp, shape in runs for pass_name in ("forward", "forward+backward")]


def traffic_bytes(case: dict) -> int:
    """Minimum memory traffic: x and b in, y out; backward: dy, x, b in, dx out, dx in for db."""
    numel, channels = torch.Size(case["shape"]).numel(), case["shape"][1]
    forward = 2 * numel + channels
    backward = 4 * numel + 2 * channels if case["pass"] != "forward" else 0
    return (forward + backward) * torch.tensor([], dtype=case["dtype"]).element_size()


def _reference(x, b, act, clamp):
    spec = ACTIVATIONS[act]
    return bias_act_ref(x, b, 1, act, spec.default_alpha, spec.default_gain, clamp)


@functools.lru_cache(maxsize=None)
def _compiled_reference(act, clamp):
    return torch.compile(functools.partial(_reference, act=act, clamp=clamp))


def make_step(provider: str, case: dict, device: torch.device):
    act, clamp = case["act"], case["clamp"]
    if provider == "torch":
        fn = functools.partial(_reference, act=act, clamp=clamp)
    elif provider == "torch.compile":
        fn = _compiled_reference(act, clamp)
    else:
        fn = functools.partial(bias_act, act=act, clamp=clamp, backend=provider)
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
