"""modulated_conv2d: StyleGAN2's modulated (and demodulated) convolution.

For now a composite on every backend: the modulation math of modulated_conv2d_ref, the
convolution through conv2d_resample, whose FIR steps run on the chosen backend. The fused CUDA and
Triton kernels (style scaling in the load, demodulation, noise, bias and activation
in the epilogue) are to come; their results will be tested against this.
"""
from __future__ import annotations

import functools
from typing import Optional

import torch

from ..dispatch import resolve
from ._common import check_float_tensor
from .conv2d_resample import conv2d_resample
from .modulated_conv2d_ref import modulated_conv2d_ref
from .upfirdn2d import parse_padding

__all__ = ["modulated_conv2d"]


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor,
                     noise: Optional[torch.Tensor] = None, up: int = 1, down: int = 1, padding=0,
                     resample_filter: Optional[torch.Tensor] = None, demodulate: bool = True,
                     flip_weight: bool = True, fused_modconv: bool = True, backend: str = "auto") -> torch.Tensor:
    """x [N, I, H, W], weight [O, I, kh, kw], styles [N, I] -> [N, O, H', W'] (see modulated_conv2d_ref).

    noise, if given, is added to the output (it must broadcast to [N, O, H', W']).
    up/down/padding/resample_filter/flip_weight are conv2d_resample's.
    """
    op = "modulated_conv2d"
    for name, t in (("x", x), ("weight", weight), ("styles", styles)):
        check_float_tensor(op, name, t)
    if x.ndim != 4 or weight.ndim != 4:
        raise ValueError(f"modulated_conv2d: x must be [N, I, H, W] and weight [O, I, kh, kw], got "
                         f"{list(x.shape)} and {list(weight.shape)}")
    if weight.shape[1] != x.shape[1]:
        raise ValueError(f"modulated_conv2d: weight has {weight.shape[1]} input channels but x has {x.shape[1]}")
    if styles.shape != (x.shape[0], x.shape[1]):
        raise ValueError(f"modulated_conv2d: styles must be [N, I] = {[x.shape[0], x.shape[1]]}, "
                         f"got {list(styles.shape)}")
    for name, t in (("weight", weight), ("styles", styles), ("noise", noise), ("resample_filter", resample_filter)):
        if t is not None and t.device != x.device:
            raise ValueError(f"modulated_conv2d: {name} is on {t.device} but x is on {x.device}")
    if noise is not None:
        check_float_tensor(op, "noise", noise)
    for name, flag in (("demodulate", demodulate), ("fused_modconv", fused_modconv)):
        if not isinstance(flag, bool):
            raise TypeError(f"modulated_conv2d: {name} must be a bool, got {type(flag).__name__}")
    padding = parse_padding(op, padding)
    # The public conv2d_resample validates up, down, the filter and flip_weight, and runs
    # the reference for backend 'torch'.
    resample = functools.partial(_resample, backend=resolve(backend, x.device))
    return modulated_conv2d_ref(x, weight, styles, noise, up, down, padding, resample_filter, demodulate,
                                flip_weight, fused_modconv, resample=resample)


def _resample(x, w, f, up, down, padding, groups, flip_weight, flip_filter, backend):
    return conv2d_resample(x, w, f, up=up, down=down, padding=list(padding), groups=groups,
                           flip_weight=flip_weight, flip_filter=flip_filter, backend=backend)
