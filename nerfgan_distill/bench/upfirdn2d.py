"""upfirdn2d benchmark: the FIR resampling a StyleGAN2 512x512 generator and its
discriminator run ([1,3,3,1] filter) with EG3D's channel counts, forward and
forward+backward, every backend next to the eager and compiled torch reference."""
from __future__ import annotations

import functools

import torch

from ..ops import setup_filter, upfirdn2d
from ..ops.upfirdn2d import output_shape, parse_padding, parse_scaling
from ..ops.upfirdn2d_ref import upfirdn2d_ref
from .modulated_conv2d import channels

# config -> upfirdn2d arguments; channel counts follow StyleGAN2's config for 512x512
CONFIGS = {
    "upconv_fir": dict(padding=1, gain=4),          # after the stride-2 transposed conv of an up-block
    "upsample2d": dict(up=2, padding=[2, 1, 2, 1], gain=4),  # the skip-RGB path (and feature upsampling)
    "downsample2d": dict(down=2, padding=[1, 1, 1, 1]),      # the discriminator's resampling
}
BATCHES, RESOLUTIONS = (1, 8, 32), (8, 16, 32, 64, 128, 256, 512)
SHAPES = {
    "quick": {"upconv_fir": [(2, 32, 33, 33)]},
    "cpu": {"upconv_fir": [(4, 512, 33, 33), (4, 128, 257, 257)],
            "upsample2d": [(4, 256, 64, 64)],
            "downsample2d": [(4, 128, 128, 128)]},
    # Every output resolution r of the generator (8 to 512) and discriminator (512 to 8) at
    # batch 1, 8 and 32 (`--batch` picks some): an up-block's conv output (r + 1)^2 with
    # channels(r), the skip path's RGB image from r / 2, the discriminator's input at r.
    "cuda": {"upconv_fir": [(b, channels(r), r + 1, r + 1) for b in BATCHES for r in RESOLUTIONS],
             "upsample2d": [(b, 3, r // 2, r // 2) for b in BATCHES for r in RESOLUTIONS],
             "downsample2d": [(b, channels(r), r, r) for b in BATCHES for r in RESOLUTIONS]},
}


def cases(device: torch.device, dtypes: list[torch.dtype], quick: bool) -> list[dict]:
    table = SHAPES["quick"] if quick else SHAPES["cuda" if device.type == "cuda" else "cpu"]
    return [{"shape": shape, "dtype": dtype, "pass": pass_name, "config": config}
            for dtype in dtypes for config, shapes in table.items() for shape in shapes
            for pass_name in ("forward", "forward+backward")]


def _output_shape(case: dict) -> list[int]:
    kwargs = CONFIGS[case["config"]]
    scaling = [*parse_scaling("bench", "up", kwargs.get("up", 1)),
               *parse_scaling("bench", "down", kwargs.get("down", 1))]
    padding = parse_padding("bench", kwargs.get("padding", 0))
    return output_shape(case["shape"], (4, 4), scaling, padding)  # the 4x4 [1,3,3,1] filter


def traffic_bytes(case: dict) -> int:
    """Minimum memory traffic: x in, y out; backward: dy in, dx out."""
    elements = torch.Size(case["shape"]).numel() + torch.Size(_output_shape(case)).numel()
    passes = 1 if case["pass"] == "forward" else 2
    return passes * elements * torch.tensor([], dtype=case["dtype"]).element_size()


def flops(case: dict) -> int:
    """Multiply-adds (x2) of the filter taps that meet input samples: 16 per output pixel, a
    quarter of them after a 2x upsampling (the rest meet inserted zeros); the backward is
    another upfirdn2d of the same size."""
    kwargs = CONFIGS[case["config"]]
    taps = 16 // (kwargs.get("up", 1) ** 2)
    forward = 2 * taps * torch.Size(_output_shape(case)).numel()
    return forward if case["pass"] == "forward" else 2 * forward


def _reference(x, f, config):
    kwargs = CONFIGS[config]
    return upfirdn2d_ref(x, f, parse_scaling("bench", "up", kwargs.get("up", 1)),
                         parse_scaling("bench", "down", kwargs.get("down", 1)),
                         parse_padding("bench", kwargs.get("padding", 0)), False, kwargs.get("gain", 1))


@functools.lru_cache(maxsize=None)
def _compiled_reference():
    return torch.compile(_reference)


def make_step(provider: str, case: dict, device: torch.device):
    config = case["config"]
    if provider == "torch":
        fn = functools.partial(_reference, config=config)
    elif provider == "torch.compile":
        fn = functools.partial(_compiled_reference(), config=config)
    else:
        fn = functools.partial(upfirdn2d, **CONFIGS[config], backend=provider)
    f = setup_filter([1, 3, 3, 1], device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(case["shape"], device=device, dtype=case["dtype"], generator=gen)
    if case["pass"] == "forward":
        return lambda: fn(x, f)
    x.requires_grad_(True)
    dy = torch.randn(_output_shape(case), device=device, dtype=case["dtype"], generator=gen)
    return lambda: torch.autograd.grad(fn(x, f), x, dy)
