"""StyleGAN3's synthesis network (configs T and R; ../shared/docs/training.md, part B),
written from the spec on top of nerfgan_distill.ops.

Class, attribute, parameter and buffer names follow StyleGAN3's networks_stylegan3.py
(input.*, L{i}_{size}_{channels}.*), so the synthesis weights of an official checkpoint load
one to one. Every layer has a `backend` attribute (networks.stylegan2.set_ops_backend sets
it for a whole model).

    Fourier features (rotated and translated by w[0]) -> 14 layers, each: modulated conv
    (kernel 3, or 1 in config R) -> filtered_lrelu (upsample x2 or x4, bias, leaky ReLU,
    clamp, low-pass and downsample to the layer's rate) -> ToRGB (1x1 conv, linear)
    -> x output_scale.

The per-layer cutoffs, stopbands, sampling rates, sizes and channels follow a geometric
schedule (layer_schedule); the last num_critical layers are critically sampled.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import nn

from .. import ops
from .filters import lowpass_filter
from .stylegan2 import FullyConnectedLayer, _check_latents

__all__ = ["LayerSpec", "layer_schedule", "SynthesisInput", "SynthesisLayer", "SynthesisNetwork"]


@dataclass(frozen=True)
class LayerSpec:
    """One synthesis layer's place in the schedule: it maps index max(i - 1, 0) to index i."""

    index: int
    in_channels: int
    out_channels: int
    in_size: int
    out_size: int
    in_sampling_rate: int
    out_sampling_rate: int
    in_cutoff: float
    out_cutoff: float
    in_half_width: float
    out_half_width: float
    is_torgb: bool
    is_critically_sampled: bool
    use_fp16: bool


def layer_schedule(img_resolution: int, img_channels: int, channel_base: int = 32768, channel_max: int = 512,
                   num_layers: int = 14, num_critical: int = 2, first_cutoff: float = 2,
                   first_stopband: float = 2 ** 2.1, last_stopband_rel: float = 2 ** 0.3, margin_size: int = 10,
                   num_fp16_res: int = 4) -> list[LayerSpec]:
    """The layers of StyleGAN3's synthesis network, from the input (index 0) to ToRGB (index
    num_layers). Computed in float64 with StyleGAN3's formulas, so channel counts round alike."""
    if num_layers <= num_critical or num_critical < 0:
        raise ValueError(f"SynthesisNetwork: need num_layers > num_critical >= 0, got {num_layers} and {num_critical}")
    last_cutoff = img_resolution / 2
    last_stopband = last_cutoff * last_stopband_rel
    exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
    cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents
    stopbands = first_stopband * (last_stopband / first_stopband) ** exponents
    rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
    half_widths = np.maximum(stopbands, rates / 2) - cutoffs
    sizes = rates + margin_size * 2
    sizes[-2:] = img_resolution  # the last layers have no margin
    channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
    channels[-1] = img_channels
    specs = []
    for i in range(num_layers + 1):
        p = max(i - 1, 0)
        specs.append(LayerSpec(
            index=i, in_channels=int(channels[p]), out_channels=int(channels[i]), in_size=int(sizes[p]),
            out_size=int(sizes[i]), in_sampling_rate=int(rates[p]), out_sampling_rate=int(rates[i]),
            in_cutoff=float(cutoffs[p]), out_cutoff=float(cutoffs[i]), in_half_width=float(half_widths[p]),
            out_half_width=float(half_widths[i]), is_torgb=i == num_layers,
            is_critically_sampled=i >= num_layers - num_critical,
            use_fp16=bool(rates[i] * 2 ** num_fp16_res > img_resolution)))
    return specs


class SynthesisInput(nn.Module):
    """Fourier features [N, C, size, size] at `sampling_rate`, of frequencies within
    `bandwidth`, rotated and translated by an affine transform of w (identity at init)."""

    def __init__(self, w_dim: int, channels: int, size: int, sampling_rate: float, bandwidth: float):
        super().__init__()
        self.w_dim, self.channels, self.size = w_dim, channels, int(size)
        self.sampling_rate, self.bandwidth = float(sampling_rate), float(bandwidth)
        # Frequencies inside the band, denser towards zero; random phases.
        freqs = torch.randn([channels, 2])
        radii = freqs.norm(dim=1, keepdim=True)
        freqs = freqs / (radii * radii.square().exp().pow(0.25)) * bandwidth
        phases = torch.rand([channels]) - 0.5
        self.weight = nn.Parameter(torch.randn([channels, channels]))  # a channel mix after the features
        self.affine = FullyConnectedLayer(w_dim, 4, weight_init=0, bias_init=[1, 0, 0, 0])
        self.register_buffer("transform", torch.eye(3, 3))  # a user's inverse transform of the image
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", phases)
        self.backend = "auto"

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        t = self.affine(w)  # (cos, sin, tx, ty), up to scale
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        one, zero = torch.ones_like(t[:, 0]), torch.zeros_like(t[:, 0])
        rotate = torch.stack([t[:, 0], -t[:, 1], zero, t[:, 1], t[:, 0], zero, zero, zero, one], 1).view(-1, 3, 3)
        translate = torch.stack([one, zero, -t[:, 2], zero, one, -t[:, 3], zero, zero, one], 1).view(-1, 3, 3)
        m = rotate @ translate @ self.transform  # the inverse transform of the output image
        phases = self.phases + (self.freqs @ m[:, :2, 2:]).squeeze(2)  # [N, C]
        freqs = self.freqs @ m[:, :2, :2]  # [N, C, 2]
        # Damp what the transform pushed out of band.
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)
        # Pixel centres, in units where 1 is sampling_rate pixels.
        coords = (torch.arange(self.size, device=w.device, dtype=torch.float32) + 0.5 - self.size / 2) \
            / self.sampling_rate
        x = (coords.view(1, 1, -1, 1) * freqs[:, None, None, :, 0]
             + coords.view(1, -1, 1, 1) * freqs[:, None, None, :, 1])  # [N, H, W, C]
        x = torch.sin((x + phases[:, None, None, :]) * (2 * math.pi)) * amplitudes[:, None, None, :]
        x = x @ (self.weight / math.sqrt(self.channels)).t()
        return x.permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        return (f"w_dim={self.w_dim}, channels={self.channels}, size={self.size}, "
                f"sampling_rate={self.sampling_rate:g}, bandwidth={self.bandwidth:g}")


class SynthesisLayer(nn.Module):
    """Modulated conv and filtered_lrelu between two points of the schedule (see LayerSpec);
    the input is normalised by a running estimate of its magnitude (magnitude_ema)."""

    def __init__(self, w_dim: int, is_torgb: bool, is_critically_sampled: bool, use_fp16: bool,
                 in_channels: int, out_channels: int, in_size: int, out_size: int, in_sampling_rate: int,
                 out_sampling_rate: int, in_cutoff: float, out_cutoff: float, in_half_width: float,
                 out_half_width: float, conv_kernel: int = 3, filter_size: int = 6, lrelu_upsampling: int = 2,
                 use_radial_filters: bool = False, conv_clamp: Optional[float] = 256,
                 magnitude_ema_beta: float = 0.999):
        super().__init__()
        self.w_dim, self.is_torgb, self.is_critically_sampled = w_dim, is_torgb, is_critically_sampled
        self.use_fp16, self.in_channels, self.out_channels = use_fp16, in_channels, out_channels
        self.in_size, self.out_size = int(in_size), int(out_size)
        self.in_sampling_rate, self.out_sampling_rate = in_sampling_rate, out_sampling_rate
        self.tmp_sampling_rate = max(in_sampling_rate, out_sampling_rate) * (1 if is_torgb else lrelu_upsampling)
        self.in_cutoff, self.out_cutoff = in_cutoff, out_cutoff
        self.in_half_width, self.out_half_width = in_half_width, out_half_width
        self.conv_kernel = 1 if is_torgb else conv_kernel
        self.conv_clamp, self.magnitude_ema_beta = conv_clamp, magnitude_ema_beta
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, self.conv_kernel, self.conv_kernel]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))

        # The activation runs at tmp_sampling_rate: up- and downsampling factors and their filters.
        self.up_factor = self._factor(self.tmp_sampling_rate, in_sampling_rate, "in")
        self.down_factor = self._factor(self.tmp_sampling_rate, out_sampling_rate, "out")
        self.up_taps = filter_size * self.up_factor if self.up_factor > 1 and not is_torgb else 1
        self.down_taps = filter_size * self.down_factor if self.down_factor > 1 and not is_torgb else 1
        self.down_radial = use_radial_filters and not is_critically_sampled
        self.register_buffer("up_filter", lowpass_filter(self.up_taps, in_cutoff, in_half_width * 2,
                                                         self.tmp_sampling_rate))
        self.register_buffer("down_filter", lowpass_filter(self.down_taps, out_cutoff, out_half_width * 2,
                                                           self.tmp_sampling_rate, radial=self.down_radial))

        # Padding that gives out_size, with the sample positions of the symmetric interpretation
        # (StyleGAN3 appendix C.3).
        total = ((self.out_size - 1) * self.down_factor + 1 - (self.in_size + self.conv_kernel - 1) * self.up_factor
                 + self.up_taps + self.down_taps - 2)
        low = (total + self.up_factor) // 2
        self.padding = [low, total - low, low, total - low]
        self.backend = "auto"

    def _factor(self, high: float, low: float, which: str) -> int:
        factor = int(round(high / low))
        if low * factor != high:
            raise ValueError(f"SynthesisLayer: the {which}put sampling rate {low} does not divide the "
                             f"activation's {high}")
        return factor

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random", force_fp32: bool = False,
                update_emas: bool = False) -> torch.Tensor:
        del noise_mode  # StyleGAN3 has no noise inputs; accepted for StyleGAN2's calling convention
        if x.ndim != 4 or tuple(x.shape[1:]) != (self.in_channels, self.in_size, self.in_size):
            raise ValueError(f"SynthesisLayer: x must be [N, {self.in_channels}, {self.in_size}, {self.in_size}], "
                             f"got {list(x.shape)}")
        if update_emas:
            with torch.no_grad():
                magnitude = x.detach().to(torch.float32).square().mean()
                self.magnitude_ema.copy_(magnitude.lerp(self.magnitude_ema, self.magnitude_ema_beta))
        input_gain = self.magnitude_ema.rsqrt()
        styles = self.affine(w)
        weight = self.weight
        if self.is_torgb:
            styles = styles / math.sqrt(self.in_channels * self.conv_kernel ** 2)
        else:  # pre-normalise weight (per output channel) and styles (over the whole batch)
            weight = weight * weight.square().mean([1, 2, 3], keepdim=True).rsqrt()
            styles = styles * styles.square().mean().rsqrt()
        dtype = torch.float16 if self.use_fp16 and not force_fp32 and x.device.type == "cuda" else torch.float32
        # input_gain scales every input channel after demodulation: the output scales with it.
        x = ops.modulated_conv2d((x * input_gain).to(dtype), weight, styles, padding=self.conv_kernel - 1,
                                 demodulate=not self.is_torgb, backend=self.backend)
        gain, slope = (1.0, 1.0) if self.is_torgb else (math.sqrt(2), 0.2)
        return ops.filtered_lrelu(x, self.up_filter, self.down_filter, self.bias.to(x.dtype), up=self.up_factor,
                                  down=self.down_factor, padding=self.padding, gain=gain, slope=slope,
                                  clamp=self.conv_clamp, backend=self.backend)

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, in_size={self.in_size}, "
                f"out_size={self.out_size}, rates={self.in_sampling_rate}->{self.out_sampling_rate} "
                f"(x{self.up_factor}/{self.down_factor}), cutoff={self.out_cutoff:g}, torgb={self.is_torgb}, "
                f"critical={self.is_critically_sampled}, fp16={self.use_fp16}")


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> image [N, img_channels, img_resolution, img_resolution] (fp32);
    num_ws = num_layers + 2 (the input's transform, then one per layer)."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_layers: int = 14, num_critical: int = 2, first_cutoff: float = 2,
                 first_stopband: float = 2 ** 2.1, last_stopband_rel: float = 2 ** 0.3, margin_size: int = 10,
                 output_scale: float = 0.25, num_fp16_res: int = 4, **layer_kwargs):
        super().__init__()
        if isinstance(img_resolution, bool) or not isinstance(img_resolution, int) or img_resolution < 4:
            raise ValueError(f"SynthesisNetwork: img_resolution must be an int >= 4, got {img_resolution!r}")
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.num_layers, self.num_critical, self.margin_size = num_layers, num_critical, margin_size
        self.output_scale, self.num_fp16_res = output_scale, num_fp16_res
        self.num_ws = num_layers + 2
        specs = layer_schedule(img_resolution, img_channels, channel_base, channel_max, num_layers, num_critical,
                               first_cutoff, first_stopband, last_stopband_rel, margin_size, num_fp16_res)
        first = specs[0]
        self.input = SynthesisInput(w_dim, first.in_channels, first.in_size, first.in_sampling_rate, first.in_cutoff)
        self.layer_names = []
        for spec in specs:
            fields = {k: v for k, v in vars(spec).items() if k != "index"}
            layer = SynthesisLayer(w_dim=w_dim, **fields, **layer_kwargs)
            name = f"L{spec.index}_{spec.out_size}_{spec.out_channels}"
            setattr(self, name, layer)
            self.layer_names.append(name)

    def forward(self, ws: torch.Tensor, **layer_kwargs) -> torch.Tensor:
        _check_latents("synthesis", "ws", ws, self.num_ws, self.w_dim)
        ws = ws.to(torch.float32).unbind(dim=1)
        x = self.input(ws[0])
        for name, w in zip(self.layer_names, ws[1:]):
            x = getattr(self, name)(x, w, **layer_kwargs)
        if self.output_scale != 1:
            x = x * self.output_scale
        return x.to(torch.float32)

    def extra_repr(self) -> str:
        return (f"w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}, "
                f"img_channels={self.img_channels}, num_layers={self.num_layers}, num_critical={self.num_critical}")
