"""filtered_lrelu benchmark: the layers of StyleGAN3 config T at 512x512 (conv output size,
channels, factors, padding and Kaiser filters from networks.stylegan3's schedule), forward and
forward+backward, every backend next to the eager and compiled torch reference (the same
algorithm as StyleGAN3's reference path: upfirdn2d by conv2d, bias_act, strided downsampling)."""
from __future__ import annotations

import functools

import torch

from ..networks.stylegan3 import SynthesisLayer, layer_schedule
from ..ops import filtered_lrelu
from ..ops.filtered_lrelu import filtered_lrelu_output_size
from ..ops.filtered_lrelu_ref import filtered_lrelu_ref
from ..ops.upfirdn2d import filter_size

RESOLUTION, W_DIM = 512, 512
BATCHES = (1, 4, 8)
# Layers by index in config T's 15 at 512: 36 px at 512 channels, the 2x-upsampling layers,
# the 532 px critically sampled ones and ToRGB.
CPU_LAYERS, CUDA_LAYERS = (2, 6, 10, 12), tuple(range(15))


@functools.lru_cache(maxsize=None)
def layer_arguments(index: int, resolution: int = RESOLUTION) -> dict:
    """The filtered_lrelu call of layer `index` of config T: input size, channels and kwargs."""
    spec = layer_schedule(resolution, 3)[index]
    layer = SynthesisLayer(w_dim=8, **{k: v for k, v in vars(spec).items() if k != "index"})
    return {"size": layer.in_size + layer.conv_kernel - 1, "channels": layer.out_channels,
            "fu": layer.up_filter, "fd": layer.down_filter, "up": layer.up_factor, "down": layer.down_factor,
            "padding": tuple(layer.padding), "gain": 1.0 if layer.is_torgb else 2 ** 0.5,
            "slope": 1.0 if layer.is_torgb else 0.2, "clamp": layer.conv_clamp, "name": f"T{resolution}-L{index}"}


def cases(device: torch.device, dtypes: list[torch.dtype], quick: bool) -> list[dict]:
    if quick:
        layers, batches, resolution = (2,), (1,), 16
    else:
        layers, resolution = (CUDA_LAYERS, RESOLUTION) if device.type == "cuda" else (CPU_LAYERS, RESOLUTION)
        batches = BATCHES if device.type == "cuda" else (1,)
    out = []
    for dtype in dtypes:
        for index in layers:
            args = layer_arguments(index, resolution)
            channels = 16 if quick else args["channels"]  # each channel is independent: fewer time the same
            for batch in batches:
                for pass_name in ("forward", "forward+backward"):
                    out.append({"shape": (batch, channels, args["size"], args["size"]), "dtype": dtype,
                                "pass": pass_name, "config": args["name"], "layer": (index, resolution)})
    return out


def _kwargs(case: dict) -> dict:
    args = layer_arguments(*case["layer"])
    return {k: args[k] for k in ("up", "down", "padding", "gain", "slope", "clamp")}


def _output_shape(case: dict) -> list[int]:
    args = layer_arguments(*case["layer"])
    h, w = filtered_lrelu_output_size(case["shape"][2:], filter_size(args["fu"]), filter_size(args["fd"]),
                                      args["up"], args["down"], args["padding"])
    return [*case["shape"][:2], h, w]


def traffic_bytes(case: dict) -> int:
    """Minimum memory traffic of a fused kernel: x in, y out; backward: dy in, dx out."""
    elements = torch.Size(case["shape"]).numel() + torch.Size(_output_shape(case)).numel()
    passes = 1 if case["pass"] == "forward" else 2
    return passes * elements * torch.tensor([], dtype=case["dtype"]).element_size()


def _reference(x, fu, fd, b, up, down, padding, gain, slope, clamp):
    return filtered_lrelu_ref(x, fu, fd, b, up, down, padding, gain, slope, clamp, False)


@functools.lru_cache(maxsize=None)
def _compiled_reference():
    return torch.compile(_reference)


def make_step(provider: str, case: dict, device: torch.device):
    args, kwargs = layer_arguments(*case["layer"]), _kwargs(case)
    fu, fd = args["fu"].to(device), args["fd"].to(device)
    if provider in ("torch", "torch.compile"):
        reference = _reference if provider == "torch" else _compiled_reference()
        fn = lambda x, b: reference(x, fu, fd, b, **kwargs)  # noqa: E731
    else:
        fn = lambda x, b: filtered_lrelu(x, fu, fd, b, **kwargs, backend=provider)  # noqa: E731
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(case["shape"], device=device, dtype=case["dtype"], generator=gen)
    b = torch.randn(case["shape"][1], device=device, dtype=case["dtype"], generator=gen)
    if case["pass"] == "forward":
        return lambda: fn(x, b)
    x.requires_grad_(True)
    b.requires_grad_(True)
    dy = torch.randn(_output_shape(case), device=device, dtype=case["dtype"], generator=gen)
    return lambda: torch.autograd.grad(fn(x, b), [x, b], dy)
