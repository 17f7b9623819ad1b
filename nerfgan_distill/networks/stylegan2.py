"""StyleGAN2 generator layers as EG3D uses them (../shared/docs/eg3d.md, section 4),
written from the spec on top of nerfgan_distill.ops.

Class, attribute, parameter and buffer names follow EG3D's networks_stylegan2.py, so an
official state dict loads one to one. Each layer has a `backend` attribute (the ops'
backend= argument, 'auto' by default); `set_ops_backend` sets it for a whole model,
'torch' giving the pure-PyTorch reference path.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from .. import ops

__all__ = ["FullyConnectedLayer", "MappingNetwork", "SynthesisLayer", "ToRGBLayer", "SynthesisBlock",
           "SynthesisBlockNoUp", "SynthesisNetwork", "Generator", "set_ops_backend", "normalize_2nd_moment"]

LRELU_GAIN = math.sqrt(2)  # bias_act's default gain of lrelu, the synthesis layers' activation


def set_ops_backend(module: nn.Module, backend: str) -> nn.Module:
    """Run every layer of `module` on ops backend `backend` ('auto', 'cuda', 'triton', 'cpu', 'torch')."""
    from ..dispatch import NAMES

    if backend not in ("auto",) + NAMES:
        raise ValueError(f"set_ops_backend: backend must be 'auto' or one of {NAMES}, got {backend!r}")
    for child in module.modules():
        if hasattr(child, "backend"):
            child.backend = backend
    return module


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def _check_latents(op: str, name: str, ws: torch.Tensor, count: int, w_dim: int) -> None:
    if not isinstance(ws, torch.Tensor) or ws.ndim != 3 or ws.shape[1:] != (count, w_dim):
        shape = list(ws.shape) if isinstance(ws, torch.Tensor) else type(ws).__name__
        raise ValueError(f"{op}: {name} must be [N, {count}, {w_dim}], got {shape}")


class FullyConnectedLayer(nn.Module):
    """y = act(x W^T g + b l): the stored weight is scaled at run time by
    g = lr_multiplier / sqrt(in_features), the bias by l = lr_multiplier."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation: str = "linear",
                 lr_multiplier: float = 1.0, bias_init=0.0, weight_init: float = 1.0):
        super().__init__()
        self.in_features, self.out_features, self.activation = in_features, out_features, activation
        # weight_init (StyleGAN3's): the initial std of the effective weight; bias_init: a number
        # or one value per output.
        weight = torch.randn([out_features, in_features])
        self.weight = nn.Parameter((weight if weight_init == 1 else weight * weight_init) / lr_multiplier)
        bias_values = torch.as_tensor(bias_init, dtype=torch.float32).expand(out_features).clone()
        self.bias = nn.Parameter(bias_values) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier
        self.backend = "auto"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return ops.bias_act(x.matmul(w.t()), b, act=self.activation, backend=self.backend)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"


class MappingNetwork(nn.Module):
    """z [N, z_dim] and c [N, c_dim] -> ws [N, num_ws, w_dim]: both inputs normalized by
    their second moment (c after its embedding), concatenated, then num_layers FC layers."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: Optional[int], num_layers: int = 8,
                 embed_features: Optional[int] = None, layer_features: Optional[int] = None,
                 activation: str = "lrelu", lr_multiplier: float = 0.01, w_avg_beta: Optional[float] = 0.998):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers, self.w_avg_beta = num_layers, w_avg_beta
        embed_features = (w_dim if embed_features is None else embed_features) if c_dim > 0 else 0
        layer_features = w_dim if layer_features is None else layer_features
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            setattr(self, f"fc{idx}", FullyConnectedLayer(features[idx], features[idx + 1], activation=activation,
                                                          lr_multiplier=lr_multiplier))
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: torch.Tensor, c: torch.Tensor, truncation_psi: float = 1, truncation_cutoff=None,
                update_emas: bool = False) -> torch.Tensor:
        op = "mapping"
        x = None
        if self.z_dim > 0:
            _check_input(op, "z", z, self.z_dim)
            x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            _check_input(op, "c", c, self.c_dim)
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1) if x is not None else y
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        if update_emas and self.w_avg_beta is not None:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            if self.w_avg_beta is None:
                raise ValueError(f"{op}: truncation needs w_avg, which this network does not track")
            if self.num_ws is None or truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                x = x.clone()
                x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x


def _check_input(op: str, name: str, t: torch.Tensor, width: int) -> None:
    if not isinstance(t, torch.Tensor) or t.ndim != 2 or t.shape[1] != width:
        shape = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"{op}: {name} must be [N, {width}], got {shape}")
    if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64)):
        raise TypeError(f"{op}: {name} must be a float tensor, got {t.dtype}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{op}: {name} has non-finite values")


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally up x2), noise, bias, lrelu * sqrt(2), clamp."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, kernel_size: int = 3,
                 up: int = 1, use_noise: bool = True, activation: str = "lrelu", resample_filter=(1, 3, 3, 1),
                 conv_clamp: Optional[float] = None, channels_last: bool = False):
        super().__init__()
        self.in_channels, self.out_channels, self.w_dim = in_channels, out_channels, w_dim
        self.resolution, self.up, self.use_noise, self.activation = resolution, up, use_noise, activation
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", ops.setup_filter(list(resample_filter)))
        self.padding = kernel_size // 2
        self.act_gain = LRELU_GAIN if activation in ("lrelu", "relu", "swish") else 1.0
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size])
                                   .to(memory_format=memory_format))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.backend = "auto"

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random", fused_modconv: bool = True,
                gain: float = 1) -> torch.Tensor:
        if noise_mode not in ("random", "const", "none"):
            raise ValueError(f"SynthesisLayer: noise_mode must be 'random', 'const' or 'none', got {noise_mode!r}")
        in_resolution = self.resolution // self.up
        if x.ndim != 4 or x.shape[1:] != (self.in_channels, in_resolution, in_resolution):
            raise ValueError(f"SynthesisLayer: x must be [N, {self.in_channels}, {in_resolution}, {in_resolution}], "
                             f"got {list(x.shape)}")
        styles = self.affine(w)
        noise = None
        if self.use_noise and noise_mode == "random":
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device)
            noise = noise * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        # Noise, then bias, activation, gain and clamp: one epilogue of the modulated conv.
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return ops.modulated_conv2d(x, self.weight, styles, noise=None if noise is None else noise.to(x.dtype),
                                    up=self.up, padding=self.padding, resample_filter=self.resample_filter,
                                    flip_weight=(self.up == 1), fused_modconv=fused_modconv,
                                    bias=self.bias.to(x.dtype), act=self.activation, gain=self.act_gain * gain,
                                    clamp=clamp, backend=self.backend)

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, resolution={self.resolution}, "
                f"up={self.up}, activation={self.activation}")


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv without demodulation (styles scaled by 1/sqrt(fan-in)), bias, clamp."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 1,
                 conv_clamp: Optional[float] = None, channels_last: bool = False):
        super().__init__()
        self.in_channels, self.out_channels, self.w_dim, self.conv_clamp = in_channels, out_channels, w_dim, conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size])
                                   .to(memory_format=memory_format))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.backend = "auto"

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool = True) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        return ops.modulated_conv2d(x, self.weight, styles, demodulate=False, fused_modconv=fused_modconv,
                                    bias=self.bias.to(x.dtype), clamp=self.conv_clamp, backend=self.backend)


class SynthesisBlock(nn.Module):
    """One resolution of the 'skip' synthesis network: (const or conv0 up x2), conv1, and a
    torgb added to the FIR-upsampled image of the previous block. fp16 (on CUDA only) when
    use_fp16; the image accumulator stays fp32."""

    upsamples = True  # SynthesisBlockNoUp: conv0 keeps the resolution and img is not upsampled

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 is_last: bool, architecture: str = "skip", resample_filter=(1, 3, 3, 1),
                 conv_clamp: Optional[float] = 256, use_fp16: bool = False, fp16_channels_last: bool = False,
                 fused_modconv_default=True, **layer_kwargs):
        super().__init__()
        if architecture != "skip":
            raise ValueError(f"SynthesisBlock: architecture {architecture!r} is not supported (EG3D uses 'skip')")
        self.in_channels, self.w_dim, self.resolution, self.img_channels = in_channels, w_dim, resolution, img_channels
        self.is_last, self.architecture, self.use_fp16 = is_last, architecture, use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.fused_modconv_default = fused_modconv_default
        self.register_buffer("resample_filter", ops.setup_filter(list(resample_filter)))
        self.num_conv = self.num_torgb = 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            up_kwargs = {"up": 2, "resample_filter": resample_filter} if self.upsamples else {}
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim=w_dim, resolution=resolution,
                                        conv_clamp=conv_clamp, channels_last=self.channels_last,
                                        **up_kwargs, **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim=w_dim, resolution=resolution,
                                    conv_clamp=conv_clamp, channels_last=self.channels_last, **layer_kwargs)
        self.num_conv += 1
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp,
                                channels_last=self.channels_last)
        self.num_torgb += 1
        self.backend = "auto"

    def forward(self, x: Optional[torch.Tensor], img: Optional[torch.Tensor], ws: torch.Tensor,
                force_fp32: bool = False, fused_modconv=None, update_emas: bool = False, **layer_kwargs):
        del update_emas  # the synthesis layers keep no running statistics
        name = type(self).__name__
        _check_latents(name, "ws", ws, self.num_conv + self.num_torgb, self.w_dim)
        w_iter = iter(ws.unbind(dim=1))
        # As in EG3D, fp16 only on CUDA: on CPU every block computes in fp32.
        if ws.device.type != "cuda":
            force_fp32 = True
        dtype = torch.float16 if self.use_fp16 and not force_fp32 else torch.float32
        memory_format = torch.channels_last if self.channels_last and not force_fp32 else torch.contiguous_format
        if fused_modconv is None:
            fused_modconv = self.fused_modconv_default
        if fused_modconv == "inference_only":
            fused_modconv = not self.training
        if self.in_channels == 0:
            x = self.const.to(dtype=dtype, memory_format=memory_format)
            x = x.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
        else:
            x_resolution = self.resolution // 2 if self.upsamples else self.resolution
            if x is None or x.ndim != 4 or x.shape[1:] != (self.in_channels, x_resolution, x_resolution):
                raise ValueError(f"{name}: x must be [N, {self.in_channels}, {x_resolution}, {x_resolution}], "
                                 f"got {None if x is None else list(x.shape)}")
            x = x.to(dtype=dtype, memory_format=memory_format)
            x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
        if img is not None and self.upsamples:
            img = ops.upsample2d(img, self.resample_filter, backend=self.backend)
        y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv)
        y = y.to(dtype=torch.float32, memory_format=torch.contiguous_format)
        img = img + y if img is not None else y
        return x, img

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, architecture={self.architecture}, use_fp16={self.use_fp16}"


class SynthesisBlockNoUp(SynthesisBlock):
    """EG3D's super-resolution block that keeps its input resolution (superresolution.py)."""

    upsamples = False


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> image [N, img_channels, img_resolution, img_resolution] (fp32)."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_fp16_res: int = 4, **block_kwargs):
        super().__init__()
        log2 = int(math.log2(img_resolution)) if img_resolution >= 4 else 0
        if img_resolution < 4 or 2 ** log2 != img_resolution:
            raise ValueError(f"SynthesisNetwork: img_resolution must be a power of 2 >= 4, got {img_resolution}")
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.num_fp16_res = num_fp16_res
        self.block_resolutions = [2 ** i for i in range(2, log2 + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (log2 + 1 - num_fp16_res), 8)
        self.num_ws = 0
        for res in self.block_resolutions:
            is_last = res == img_resolution
            block = SynthesisBlock(channels[res // 2] if res > 4 else 0, channels[res], w_dim=w_dim, resolution=res,
                                   img_channels=img_channels, is_last=is_last, use_fp16=res >= fp16_resolution,
                                   **block_kwargs)
            self.num_ws += block.num_conv + (block.num_torgb if is_last else 0)
            setattr(self, f"b{res}", block)

    def forward(self, ws: torch.Tensor, **block_kwargs) -> torch.Tensor:
        _check_latents("synthesis", "ws", ws, self.num_ws, self.w_dim)
        ws = ws.to(torch.float32)
        x = img = None
        start = 0
        # Block windows overlap: each torgb shares its w with the next block's first conv.
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            x, img = block(x, img, ws.narrow(1, start, block.num_conv + block.num_torgb), **block_kwargs)
            start += block.num_conv
        return img


class Generator(nn.Module):
    """StyleGAN2's generator: mapping then synthesis (EG3D's backbone)."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 mapping_kwargs: Optional[dict] = None, **synthesis_kwargs):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                          **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws,
                                      **(mapping_kwargs or {}))

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False, **synthesis_kwargs):
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.synthesis(ws, update_emas=update_emas, **synthesis_kwargs)
