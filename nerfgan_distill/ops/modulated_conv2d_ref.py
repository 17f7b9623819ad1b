"""Pure-PyTorch reference of StyleGAN2's modulated convolution, written from its definition.

With per-sample styles s [N, I] and a shared weight W [O, I, kh, kw]:
  w[n] = W * s[n] (scaling the input channels);
  demodulation: d[n, o] = rsqrt(sum_{i,kh,kw} w[n, o]^2 + 1e-8), w[n, o] *= d[n, o];
  y[n] = conv2d_resample(x[n], w[n]) (+ noise, added after the demodulation).
For float16 x with demodulation, W and s are first scaled to a max-abs of 1 (W also by
1/sqrt(I*kh*kw)) so the per-sample weights cannot overflow; demodulation cancels it.
`fused_modconv` picks how it is computed, as in StyleGAN2: one grouped convolution
with per-sample weights (True), or scaling x by s, convolving with W and scaling the
result by d (False). The math is the same; the rounding differs.
"""
from __future__ import annotations

from typing import Callable

import torch

from .conv2d_resample_ref import conv2d_resample_ref


def modulated_conv2d_ref(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, noise, up: int, down: int,
                         padding: tuple[int, int, int, int], resample_filter, demodulate: bool, flip_weight: bool,
                         fused_modconv: bool, resample: Callable = conv2d_resample_ref) -> torch.Tensor:
    """Reference modulated conv on validated arguments. `resample(x, w, f, up, down, padding, groups,
    flip_weight, flip_filter)` is the convolution; the public op passes a backend's."""
    n, in_channels = styles.shape
    out_channels, _, kh, kw = weight.shape
    if x.dtype == torch.float16 and demodulate:
        weight = weight * (1 / (in_channels * kh * kw) ** 0.5
                           / weight.abs().amax(dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.abs().amax(dim=1, keepdim=True)

    per_sample = None
    if demodulate or fused_modconv:
        per_sample = weight.unsqueeze(0) * styles.reshape(n, 1, in_channels, 1, 1)  # [N, O, I, kh, kw]
    dcoefs = (per_sample.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt() if demodulate else None  # [N, O]

    if not fused_modconv or n == 0:  # n == 0: the grouped conv would need groups=0; this gives the same (empty) y
        x = x * styles.to(x.dtype).reshape(n, in_channels, 1, 1)
        x = resample(x, weight.to(x.dtype), resample_filter, up, down, padding, 1, flip_weight, False)
        if demodulate:
            x = x * dcoefs.to(x.dtype).reshape(n, out_channels, 1, 1)
        if noise is None:
            return x
        return x + noise if fused_modconv else x + noise.to(x.dtype)  # the fused form's sum promotes

    if demodulate:
        per_sample = per_sample * dcoefs.reshape(n, out_channels, 1, 1, 1)
    y = resample(x.reshape(1, n * in_channels, *x.shape[2:]),
                 per_sample.reshape(n * out_channels, in_channels, kh, kw).to(x.dtype),
                 resample_filter, up, down, padding, n, flip_weight, False)
    y = y.reshape(n, out_channels, *y.shape[2:])
    return y if noise is None else y + noise
