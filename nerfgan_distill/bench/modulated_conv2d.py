"""modulated_conv2d benchmark: the synthesis layers of a StyleGAN2 512x512 generator with
EG3D's channel counts (channel_base 32768, channel_max 512), each a whole layer: the
modulated 3x3 conv (up=2 for a block's first conv) with noise, bias, lrelu, gain and
conv_clamp, and the 1x1 toRGB (no demodulation, linear). Forward and forward+backward.

References timed in the same run: StyleGAN2's two torch paths, the fused grouped
convolution ("torch") and the non-fused scale-conv-scale ("torch.nonfused"), eager and
under torch.compile. The kernel backends get the flag StyleGAN2 itself passes: fused at
inference (forward), non-fused in training (forward+backward); it only matters where a
backend runs the composite path.
"""
from __future__ import annotations

import functools
import math

import torch

from ..ops import modulated_conv2d, setup_filter
from ..ops.bias_act_ref import bias_act_ref
from ..ops.modulated_conv2d_ref import modulated_conv2d_ref

REFERENCES = ("torch", "torch.compile", "torch.nonfused", "torch.nonfused.compile")
CONV_CLAMP = 256.0


def channels(resolution: int) -> int:
    """EG3D's StyleGAN2 backbone: min(channel_base / resolution, channel_max)."""
    return min(32768 // resolution, 512)


# layer kind -> (kernel size, up, demodulate, activation)
LAYERS = {"conv0_up": (3, 2, True, "lrelu"), "conv1": (3, 1, True, "lrelu"), "torgb": (1, 1, False, "linear")}
RESOLUTIONS = (4, 8, 16, 32, 64, 128, 256, 512)
# shape = (batch, output resolution); channels follow from the resolution
SHAPES = {
    "quick": {"conv1": [(2, 8)]},
    "cpu": {"conv1": [(4, 8), (4, 32), (1, 128)], "conv0_up": [(4, 32), (1, 128)],
            "torgb": [(4, 128)]},
    # every resolution at batch 1, 8 and 32 (`--batch` picks some)
    "cuda": {kind: [(batch, res) for batch in (1, 8, 32) for res in RESOLUTIONS
                    if not (kind == "conv0_up" and res == 4)] for kind in LAYERS},
}


def cases(device: torch.device, dtypes: list[torch.dtype], quick: bool) -> list[dict]:
    table = SHAPES["quick"] if quick else SHAPES["cuda" if device.type == "cuda" else "cpu"]
    return [{"shape": shape, "dtype": dtype, "pass": pass_name, "config": kind}
            for dtype in dtypes for kind, shapes in table.items() for shape in shapes
            for pass_name in ("forward", "forward+backward")]


def _dims(case: dict):
    """(batch, in channels, out channels, input resolution, output resolution, kernel, up)."""
    batch, res = case["shape"]
    k, up, _, _ = LAYERS[case["config"]]
    in_res = res // up
    out_channels = 3 if case["config"] == "torgb" else channels(res)
    return batch, channels(in_res if up > 1 else res), out_channels, in_res, res, k, up


def flops(case: dict) -> int:
    """Multiply-adds of the convolution (x2), counted on the input grid for up=2 (a transposed
    conv); the backward pass costs two more (dx and dweight)."""
    n, i, o, in_res, _, k, _ = _dims(case)
    forward = 2 * n * o * i * k * k * in_res * in_res
    return forward if case["pass"] == "forward" else 3 * forward


def traffic_bytes(case: dict) -> int:
    """Minimum traffic: x, weight and noise in, y out; backward: dy in, dx and dweight out,
    x and weight read again."""
    n, i, o, in_res, res, k, _ = _dims(case)
    elt = torch.tensor([], dtype=case["dtype"]).element_size()
    x, y, w, noise = n * i * in_res ** 2, n * o * res ** 2, o * i * k * k, n * res ** 2
    forward = x + y + w + noise
    return elt * (forward if case["pass"] == "forward" else forward + y + 2 * x + 2 * w)


def _layer(x, weight, styles, noise, bias, f, *, config, fused_modconv, backend=None):
    """One synthesis layer; backend None is the torch reference."""
    k, up, demodulate, act = LAYERS[config]
    padding = k // 2
    if backend is not None:
        return modulated_conv2d(x, weight, styles, noise, up=up, padding=padding, resample_filter=f,
                                demodulate=demodulate, fused_modconv=fused_modconv, bias=bias, act=act,
                                clamp=CONV_CLAMP, backend=backend)
    y = modulated_conv2d_ref(x, weight, styles, noise, up, 1, (padding,) * 4, f, demodulate, True, fused_modconv)
    gain = math.sqrt(2) if act == "lrelu" else 1.0
    return bias_act_ref(y, bias.to(y.dtype), 1, act, 0.2, gain, CONV_CLAMP)


@functools.lru_cache(maxsize=None)
def _compiled(config: str, fused_modconv: bool):
    return torch.compile(functools.partial(_layer, config=config, fused_modconv=fused_modconv))


def _inputs(case: dict, device: torch.device):
    n, i, o, in_res, res, k, _ = _dims(case)
    dtype = case["dtype"]
    gen = torch.Generator(device=device).manual_seed(0)
    rand = functools.partial(torch.randn, device=device, generator=gen)
    x = rand(n, i, in_res, in_res).to(dtype)
    weight = rand(o, i, k, k).to(dtype)
    styles = (rand(n, i) + 1).to(dtype)
    noise = rand(n, 1, res, res).to(dtype) if case["config"] != "torgb" else None
    bias = rand(o).to(dtype)
    return x, weight, styles, noise, bias


def make_step(provider: str, case: dict, device: torch.device):
    config, training = case["config"], case["pass"] != "forward"
    if provider in REFERENCES:
        fused = not provider.startswith("torch.nonfused")
        fn = (_compiled(config, fused) if provider.endswith(".compile")
              else functools.partial(_layer, config=config, fused_modconv=fused))
    else:
        fn = functools.partial(_layer, config=config, fused_modconv=not training, backend=provider)
    x, weight, styles, noise, bias = _inputs(case, device)
    f = setup_filter([1, 3, 3, 1], device=device)
    if not training:
        return lambda: fn(x, weight, styles, noise, bias, f)
    leaves = [t.requires_grad_(True) for t in (x, weight, styles, bias)]
    dy = torch.randn_like(fn(x, weight, styles, noise, bias, f))
    return lambda: torch.autograd.grad(fn(x, weight, styles, noise, bias, f), leaves, dy)
