"""EG3D's pose-conditioned dual discriminator (../shared/docs/training.md, A.2 and A.3),
written from the spec on top of nerfgan_distill.ops.

D sees the final image and the raw neural rendering together: the raw image is resized
to the final resolution (bilinear, antialiased) and concatenated on channels, so the
blocks take 6 channels. A StyleGAN2 'resnet' discriminator follows (one block per
resolution from R down to 8, then an epilogue at 4x4 with minibatch std), and the camera
label c conditions the logit through a projection onto cmap = MappingNetwork(c).

Where it follows EG3D (eg3d/training/dual_discriminator.py, networks_stylegan2.py):
- Class, attribute, parameter and buffer names, so an official D state dict loads one to
  one (b{res}.fromrgb/conv0/conv1/skip, b4.conv/fc/out, mapping.embed/fc0..., and the
  unused resample_filter buffers EG3D registers).
- Constructor defaults, channel sizing, which blocks run in fp16 (on CUDA only; on CPU
  every layer computes in fp32, or fp64 for fp64 inputs) and the Freeze-D layer numbering.
- Only the 'resnet' architecture that EG3D uses is built; 'orig' and 'skip' raise.

Where it does not:
- disc_c_noise adds its noise out of place; EG3D adds it to the caller's c in place.
- EG3D's blur of the image D sees (the blur_sigma schedule) is done by the loss before D
  (training.md A.4, run_D), not by D, so D has no blur argument; it belongs in the stage-2
  loss, inside the R1 graph.

Every layer that calls an op has a `backend` attribute ('auto' by default);
`set_ops_backend(D, 'torch')` runs the pure-PyTorch reference path.
"""
from __future__ import annotations

import math
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from ..ops.bias_act_ref import ACTIVATIONS
from .stylegan2 import FullyConnectedLayer, MappingNetwork

__all__ = ["Conv2dLayer", "DiscriminatorBlock", "MinibatchStdLayer", "DiscriminatorEpilogue", "DualDiscriminator",
           "filtered_resizing"]

RESNET_GAIN = math.sqrt(0.5)  # the two resnet branches are scaled so their sum keeps unit variance


def _shape(t) -> Union[list, str]:
    return list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__


def _check_image(op: str, name: str, t, channels: int, resolution: Optional[int] = None) -> None:
    """t must be a float [N, channels, resolution, resolution] tensor (any H, W when resolution is None)."""
    size = "H, W" if resolution is None else f"{resolution}, {resolution}"
    ok = isinstance(t, torch.Tensor) and t.ndim == 4 and t.shape[1] == channels
    if ok and resolution is not None:
        ok = t.shape[2:] == (resolution, resolution)
    if not ok:
        raise ValueError(f"{op}: {name} must be [N, {channels}, {size}], got {_shape(t)}")
    if not t.is_floating_point():
        raise TypeError(f"{op}: {name} must be a float tensor, got {t.dtype}")


def _full_precision(t: torch.Tensor) -> torch.dtype:
    """EG3D's fp32 path, except that fp64 inputs stay fp64 (so gradcheck can run)."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def filtered_resizing(image: torch.Tensor, size: int, f: Optional[torch.Tensor] = None,
                      filter_mode: Union[str, float] = "antialiased", backend: str = "auto") -> torch.Tensor:
    """Resize image [N, C, H, W] to [N, C, size, size] as EG3D's D and loss do.

    'antialiased' (D's and the loss's default): bilinear, align_corners=False, antialias=True
    (antialiasing only matters when shrinking). 'none': bilinear without antialias. A float p
    in (0, 1): (1 - p) * aliased + p * antialiased. 'classic': FIR x2 up with f, bilinear to
    2 * size + 2, FIR x2 down with f (padding -1, flipped filter)."""
    def bilinear(x, n, antialias):
        return F.interpolate(x, size=(n, n), mode="bilinear", align_corners=False, antialias=antialias)

    if filter_mode == "antialiased":
        return bilinear(image, size, True)
    if filter_mode == "none":
        return bilinear(image, size, False)
    if filter_mode == "classic":
        if f is None:
            raise ValueError("filtered_resizing: filter_mode 'classic' needs the FIR filter f")
        x = ops.upsample2d(image, f, up=2, backend=backend)
        x = bilinear(x, 2 * size + 2, False)
        return ops.downsample2d(x, f, down=2, padding=-1, flip_filter=True, backend=backend)
    if isinstance(filter_mode, float) and 0 < filter_mode < 1:
        return torch.lerp(bilinear(image, size, False), bilinear(image, size, True), filter_mode)
    raise ValueError(f"filtered_resizing: filter_mode must be 'antialiased', 'none', 'classic' or a float in (0, 1), "
                     f"got {filter_mode!r}")


class Conv2dLayer(nn.Module):
    """Equalised-lr conv: y = clamp(act(conv(x, W / sqrt(fan_in)) + b) * g * gain, +-conv_clamp * gain),
    with FIR up/downsampling around the conv (conv2d_resample) and g the activation's default gain.
    trainable=False (Freeze-D) keeps weight and bias as buffers."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = "linear", up: int = 1, down: int = 1, resample_filter=(1, 3, 3, 1),
                 conv_clamp: Optional[float] = None, channels_last: bool = False, trainable: bool = True):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"Conv2dLayer: unknown activation {activation!r}; "
                             f"expected one of {', '.join(ACTIVATIONS)}")
        self.in_channels, self.out_channels, self.activation = in_channels, out_channels, activation
        self.up, self.down, self.conv_clamp = up, down, conv_clamp
        self.register_buffer("resample_filter", ops.setup_filter(list(resample_filter)))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.act_gain = ACTIVATIONS[activation].default_gain
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format)
        bias_value = torch.zeros([out_channels]) if bias else None
        if trainable:
            self.weight = nn.Parameter(weight)
            self.bias = nn.Parameter(bias_value) if bias else None
        else:
            self.register_buffer("weight", weight)
            self.register_buffer("bias", bias_value)  # None registers nothing in the state dict
        self.backend = "auto"

    def forward(self, x: torch.Tensor, gain: float = 1) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"Conv2dLayer: x must be [N, {self.in_channels}, H, W], got {_shape(x)}")
        w = (self.weight * self.weight_gain).to(x.dtype)
        b = self.bias.to(x.dtype) if self.bias is not None else None
        x = ops.conv2d_resample(x, w, self.resample_filter, up=self.up, down=self.down, padding=self.padding,
                                flip_weight=(self.up == 1), backend=self.backend)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return ops.bias_act(x, b, act=self.activation, gain=self.act_gain * gain, clamp=clamp, backend=self.backend)

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, activation={self.activation}, "
                f"up={self.up}, down={self.down}")


class DiscriminatorBlock(nn.Module):
    """One 'resnet' resolution: (fromrgb in the first block), then
    skip(x) * sqrt(1/2) + conv1(conv0(x)) * sqrt(1/2), both halving the resolution.
    fp16 on CUDA when use_fp16."""

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, resolution: int, img_channels: int,
                 first_layer_idx: int = 0, architecture: str = "resnet", activation: str = "lrelu",
                 resample_filter=(1, 3, 3, 1), conv_clamp: Optional[float] = None, use_fp16: bool = False,
                 fp16_channels_last: bool = False, freeze_layers: int = 0):
        super().__init__()
        if architecture != "resnet":
            raise ValueError(f"DiscriminatorBlock: architecture {architecture!r} is not supported "
                             f"(EG3D uses 'resnet')")
        if in_channels not in (0, tmp_channels):
            raise ValueError(f"DiscriminatorBlock: in_channels must be 0 (first block) or tmp_channels={tmp_channels}, "
                             f"got {in_channels}")
        self.in_channels, self.resolution, self.img_channels = in_channels, resolution, img_channels
        self.first_layer_idx, self.architecture, self.use_fp16 = first_layer_idx, architecture, use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.register_buffer("resample_filter", ops.setup_filter(list(resample_filter)))
        self.num_layers = 0

        def layer(*args, **kwargs):
            # Freeze-D numbers layers across the whole D in creation order.
            trainable = self.first_layer_idx + self.num_layers >= freeze_layers
            self.num_layers += 1
            return Conv2dLayer(*args, trainable=trainable, channels_last=self.channels_last, **kwargs)

        if in_channels == 0:
            self.fromrgb = layer(img_channels, tmp_channels, kernel_size=1, activation=activation,
                                 conv_clamp=conv_clamp)
        self.conv0 = layer(tmp_channels, tmp_channels, kernel_size=3, activation=activation, conv_clamp=conv_clamp)
        self.conv1 = layer(tmp_channels, out_channels, kernel_size=3, activation=activation, down=2,
                           resample_filter=resample_filter, conv_clamp=conv_clamp)
        # No clamp on the skip branch, as in EG3D.
        self.skip = layer(tmp_channels, out_channels, kernel_size=1, bias=False, down=2,
                          resample_filter=resample_filter)

    def forward(self, x: Optional[torch.Tensor], img: Optional[torch.Tensor], force_fp32: bool = False):
        """-> (features [N, out, res/2, res/2], None): the resnet architecture consumes img in
        the first block. The first block takes img, the others x."""
        name = type(self).__name__
        res = self.resolution
        ref = x if x is not None else img
        if ref.device.type != "cuda":
            force_fp32 = True  # fp16 only on CUDA, as in EG3D
        dtype = torch.float16 if self.use_fp16 and not force_fp32 else _full_precision(ref)
        memory_format = torch.channels_last if self.channels_last and not force_fp32 else torch.contiguous_format
        if self.in_channels == 0:
            _check_image(name, "img", img, self.img_channels, res)
            x = self.fromrgb(img.to(dtype=dtype, memory_format=memory_format))
        else:
            if x is None or x.ndim != 4 or x.shape[1:] != (self.in_channels, res, res):
                raise ValueError(f"{name}: x must be [N, {self.in_channels}, {res}, {res}], got "
                                 f"{None if x is None else _shape(x)}")
            x = x.to(dtype=dtype, memory_format=memory_format)
        y = self.skip(x, gain=RESNET_GAIN)
        x = self.conv1(self.conv0(x), gain=RESNET_GAIN)
        return y + x, None

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, architecture={self.architecture}, use_fp16={self.use_fp16}"


class MinibatchStdLayer(nn.Module):
    """Append num_channels features: the std over a group of samples, averaged over each
    channel slice and all pixels. Groups are strided (sample i is in group i mod N/G), as in
    EG3D's reshape. Pure torch, so it has no backend."""

    def __init__(self, group_size: Optional[int], num_channels: int = 1):
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            raise ValueError(f"MinibatchStdLayer: x must be [N, C, H, W], got {_shape(x)}")
        n, c, h, w = x.shape
        g = min(self.group_size, n) if self.group_size is not None else n
        f = self.num_channels
        if n % g or c % f:
            raise ValueError(f"MinibatchStdLayer: the batch ({n}) must be divisible by the group size ({g}) and the "
                             f"channels ({c}) by num_channels ({f})")
        y = x.reshape(g, -1, f, c // f, h, w)
        y = (y - y.mean(dim=0)).square().mean(dim=0)  # biased variance over the group
        y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4])  # [n, F]
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_channels={self.num_channels}"


class DiscriminatorEpilogue(nn.Module):
    """The 4x4 head, always fp32 (fp64 for fp64 inputs): mbstd, 3x3 conv, fc, out. With cmap_dim > 0 the logit is the
    projection (out * cmap).sum / sqrt(cmap_dim); with cmap_dim 0, out is the logit."""

    def __init__(self, in_channels: int, cmap_dim: int, resolution: int, img_channels: int,
                 architecture: str = "resnet", mbstd_group_size: Optional[int] = 4, mbstd_num_channels: int = 1,
                 activation: str = "lrelu", conv_clamp: Optional[float] = None):
        super().__init__()
        if architecture != "resnet":
            raise ValueError(f"DiscriminatorEpilogue: architecture {architecture!r} is not supported "
                             f"(EG3D uses 'resnet')")
        self.in_channels, self.cmap_dim, self.resolution = in_channels, cmap_dim, resolution
        self.img_channels, self.architecture = img_channels, architecture
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, kernel_size=3, activation=activation,
                                conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * resolution ** 2, in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x: torch.Tensor, img: Optional[torch.Tensor], cmap: Optional[torch.Tensor],
                force_fp32: bool = False) -> torch.Tensor:
        del img, force_fp32  # img feeds only the 'skip' architecture; the epilogue is always fp32
        name = type(self).__name__
        res = self.resolution
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1:] != (self.in_channels, res, res):
            raise ValueError(f"{name}: x must be [N, {self.in_channels}, {res}, {res}], got {_shape(x)}")
        x = x.to(dtype=_full_precision(x), memory_format=torch.contiguous_format)
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.out(self.fc(self.conv(x).flatten(1)))
        if self.cmap_dim > 0:
            if not isinstance(cmap, torch.Tensor) or cmap.shape != (x.shape[0], self.cmap_dim):
                raise ValueError(f"{name}: cmap must be [{x.shape[0]}, {self.cmap_dim}], got {_shape(cmap)}")
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.cmap_dim))
        return x

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, architecture={self.architecture}, cmap_dim={self.cmap_dim}"


class DualDiscriminator(nn.Module):
    """EG3D's dual discriminator: D({'image': [N, C, R, R], 'image_raw': [N, C, h, w]}, c [N, c_dim])
    -> logits [N, 1], C = img_channels. The raw image is resized to R and concatenated, so
    self.img_channels (as in EG3D) is 2 * img_channels."""

    def __init__(self, c_dim: int, img_resolution: int, img_channels: int = 3, architecture: str = "resnet",
                 channel_base: int = 32768, channel_max: int = 512, num_fp16_res: int = 4,
                 conv_clamp: Optional[float] = 256, cmap_dim: Optional[int] = None, disc_c_noise: float = 0,
                 block_kwargs: Optional[dict] = None, mapping_kwargs: Optional[dict] = None,
                 epilogue_kwargs: Optional[dict] = None):
        super().__init__()
        log2 = int(math.log2(img_resolution)) if isinstance(img_resolution, int) and img_resolution >= 8 else 0
        if log2 == 0 or 2 ** log2 != img_resolution:
            raise ValueError(f"DualDiscriminator: img_resolution must be a power of 2 >= 8, got {img_resolution!r}")
        if not isinstance(c_dim, int) or c_dim < 0:
            raise ValueError(f"DualDiscriminator: c_dim must be an int >= 0, got {c_dim!r}")
        self.c_dim, self.img_resolution, self.img_resolution_log2 = c_dim, img_resolution, log2
        self.raw_channels = img_channels
        self.img_channels = img_channels * 2
        self.block_resolutions = [2 ** i for i in range(log2, 2, -1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions + [4]}
        fp16_resolution = max(2 ** (log2 + 1 - num_fp16_res), 8)
        if cmap_dim is None:
            cmap_dim = channels[4]
        if c_dim == 0:
            cmap_dim = 0
        self.cmap_dim = cmap_dim
        common = dict(img_channels=self.img_channels, architecture=architecture, conv_clamp=conv_clamp)
        layer_idx = 0
        for res in self.block_resolutions:
            block = DiscriminatorBlock(channels[res] if res < img_resolution else 0, channels[res], channels[res // 2],
                                       resolution=res, first_layer_idx=layer_idx, use_fp16=res >= fp16_resolution,
                                       **(block_kwargs or {}), **common)
            setattr(self, f"b{res}", block)
            layer_idx += block.num_layers
        if c_dim > 0:
            self.mapping = MappingNetwork(z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None,
                                          **(mapping_kwargs or {}))
        self.b4 = DiscriminatorEpilogue(channels[4], cmap_dim=cmap_dim, resolution=4, **(epilogue_kwargs or {}),
                                        **common)
        # EG3D registers it for filtered_resizing's 'classic' mode, which D never uses.
        self.register_buffer("resample_filter", ops.setup_filter([1, 3, 3, 1]))
        self.disc_c_noise = disc_c_noise
        self.backend = "auto"

    def _check_inputs(self, img, c) -> None:
        name = type(self).__name__
        if not isinstance(img, dict) or "image" not in img or "image_raw" not in img:
            keys = sorted(img) if isinstance(img, dict) else type(img).__name__
            raise ValueError(f"{name}: img must be a dict with keys 'image' and 'image_raw', got {keys}")
        image, raw = img["image"], img["image_raw"]
        _check_image(name, "img['image']", image, self.raw_channels, self.img_resolution)
        _check_image(name, "img['image_raw']", raw, self.raw_channels)
        n = image.shape[0]
        if raw.shape[0] != n:
            raise ValueError(f"{name}: img['image_raw'] must be [{n}, {self.raw_channels}, H, W] to match "
                             f"img['image'], got {_shape(raw)}")
        if raw.device != image.device:
            raise ValueError(f"{name}: img['image_raw'] is on {raw.device} but img['image'] is on {image.device}")
        if self.c_dim > 0:
            if not isinstance(c, torch.Tensor) or c.shape != (n, self.c_dim):
                raise ValueError(f"{name}: c must be [{n}, {self.c_dim}], got {_shape(c)}")
            if not c.is_floating_point():
                raise TypeError(f"{name}: c must be a float tensor, got {c.dtype}")
            if c.device != image.device:
                raise ValueError(f"{name}: c is on {c.device} but img['image'] is on {image.device}")
            if self.disc_c_noise > 0 and n < 2:
                raise ValueError(f"{name}: disc_c_noise scales its noise by the std of c over the batch, "
                                 f"which needs N >= 2, got N = {n}")

    def forward(self, img: dict, c: Optional[torch.Tensor], update_emas: bool = False,
                force_fp32: bool = False) -> torch.Tensor:
        """img: {'image': [N, C, R, R], 'image_raw': [N, C, h, w]}; c: [N, c_dim] (ignored when
        c_dim is 0). update_emas is accepted for EG3D's call signature; D keeps no EMAs."""
        del update_emas
        self._check_inputs(img, c)
        image = img["image"]
        raw = filtered_resizing(img["image_raw"], image.shape[-1], self.resample_filter, backend=self.backend)
        both = torch.cat([image, raw.to(image.dtype)], dim=1)  # [N, 2C, R, R]
        x = None
        for res in self.block_resolutions:  # the first block consumes `both`, then passes None
            x, both = getattr(self, f"b{res}")(x, both, force_fp32=force_fp32)
        cmap = None
        if self.c_dim > 0:
            if self.disc_c_noise > 0:
                # Per-dimension noise scaled by the batch std of c; out of place, unlike EG3D.
                c = c + torch.randn_like(c) * c.std(0) * self.disc_c_noise
            cmap = self.mapping(None, c)
        return self.b4(x, both, cmap)

    def extra_repr(self) -> str:
        return f"c_dim={self.c_dim}, img_resolution={self.img_resolution}, img_channels={self.img_channels}"
