"""EG3D's super-resolution modules (../shared/docs/eg3d.md, section 3): two StyleGAN2
synthesis blocks driven by the last backbone w, taking the 32-channel feature image
(which includes the 3 raw RGB channels) and the raw RGB image as the skip image.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from .stylegan2 import SynthesisBlock, SynthesisBlockNoUp

__all__ = ["SUPERRESOLUTION_MODULES", "superresolution_class", "SuperresolutionStack"]

SR_W_DIM = 512  # EG3D builds its SR blocks with w_dim=512, whatever the generator's w_dim


class _Superresolution(nn.Module):
    # (block0 class, block0 channels, block1 channels, input resolution, output resolution)
    layout: tuple
    upsample_when = "different"  # 4X resizes only inputs smaller than its input resolution
    has_resample_filter = True  # all but 8XDC also register a (unused) resample_filter buffer

    def __init__(self, channels: int, img_resolution: int, sr_num_fp16_res: int, sr_antialias: bool,
                 num_fp16_res: int = 4, conv_clamp=None, channel_base=None, channel_max=None, **block_kwargs):
        super().__init__()
        del num_fp16_res, conv_clamp, channel_base, channel_max  # accepted and ignored, as in EG3D
        block0_class, channels0, channels1, self.input_resolution, resolution = self.layout
        name = type(self).__name__
        if img_resolution != resolution:
            raise ValueError(f"{name} makes {resolution}x{resolution} images, not img_resolution={img_resolution}")
        self.sr_antialias = sr_antialias
        use_fp16 = sr_num_fp16_res > 0
        clamp = 256 if use_fp16 else None
        resolution0 = resolution // 2
        self.block0 = block0_class(channels, channels0, w_dim=SR_W_DIM, resolution=resolution0, img_channels=3,
                                   is_last=False, use_fp16=use_fp16, conv_clamp=clamp, **block_kwargs)
        self.block1 = SynthesisBlock(channels0, channels1, w_dim=SR_W_DIM, resolution=resolution, img_channels=3,
                                     is_last=True, use_fp16=use_fp16, conv_clamp=clamp, **block_kwargs)
        if self.has_resample_filter:
            self.register_buffer("resample_filter", ops.setup_filter([1, 3, 3, 1]))

    def forward(self, rgb: torch.Tensor, x: torch.Tensor, ws: torch.Tensor, return_raw: bool = False,
                **block_kwargs):
        """-> the image, or (image, raw image as EG3D returns it) with return_raw.

        EG3D's blocks add their torgb output to the skip image in place. When the input is
        not resized and block0 does not upsample (2X, and 4X at 128), that tensor is the
        caller's raw RGB image, so EG3D's 'image_raw' comes back with block0's torgb added,
        in inference and in training alike; return_raw gives that image, without mutation."""
        ws = ws[:, -1:, :].repeat(1, 3, 1)
        size = x.shape[-1]
        resize = size < self.input_resolution if self.upsample_when == "smaller" else size != self.input_resolution
        raw = rgb
        if resize:
            target = (self.input_resolution, self.input_resolution)
            x = F.interpolate(x, size=target, mode="bilinear", align_corners=False, antialias=self.sr_antialias)
            rgb = F.interpolate(rgb, size=target, mode="bilinear", align_corners=False, antialias=self.sr_antialias)
        x, rgb = self.block0(x, rgb, ws, **block_kwargs)
        if not resize and not self.block0.upsamples:
            raw = rgb
        x, rgb = self.block1(x, rgb, ws, **block_kwargs)
        return (rgb, raw) if return_raw else rgb


class SuperresolutionHybrid8XDC(_Superresolution):
    layout = (SynthesisBlock, 256, 128, 128, 512)
    has_resample_filter = False


class SuperresolutionHybrid8X(_Superresolution):
    layout = (SynthesisBlock, 128, 64, 128, 512)


class SuperresolutionHybrid4X(_Superresolution):
    layout = (SynthesisBlockNoUp, 128, 64, 128, 256)
    upsample_when = "smaller"


class SuperresolutionHybrid2X(_Superresolution):
    layout = (SynthesisBlockNoUp, 128, 64, 64, 128)


class SuperresolutionStack(nn.Module):
    """EG3D's hybrid super-resolution generalised (not an EG3D class): the feature image is
    resized to `input_resolution`, then StyleGAN2 blocks of `block_channels`, the last
    log2(img_resolution / input_resolution) of them upsampling x2, all driven by the last w.
    EG3D's 2X is block_channels=(128, 64) from 64 to 128, its 8XDC (256, 128) from 128 to
    512; slimmer stacks make small teachers and fast students."""

    def __init__(self, channels: int, img_resolution: int, sr_num_fp16_res: int = 0, sr_antialias: bool = True,
                 input_resolution: int | None = None, block_channels=(128, 64), w_dim: int = SR_W_DIM,
                 num_fp16_res: int = 4, conv_clamp=None, channel_base=None, channel_max=None, **block_kwargs):
        super().__init__()
        del num_fp16_res, conv_clamp, channel_base, channel_max  # the teacher's backbone options; unused here
        block_channels = [int(c) for c in block_channels]
        if not block_channels or min(block_channels) < 1:
            raise ValueError(f"SuperresolutionStack: block_channels must be a non-empty list of ints >= 1, "
                             f"got {block_channels}")
        input_resolution = img_resolution // 2 ** len(block_channels) if input_resolution is None else input_resolution
        ratio = img_resolution // max(input_resolution, 1)
        ups = ratio.bit_length() - 1
        if input_resolution < 4 or ratio * input_resolution != img_resolution or 2 ** ups != ratio \
                or ups > len(block_channels):
            raise ValueError(f"SuperresolutionStack: img_resolution / input_resolution must be a power of 2 of at "
                             f"most 2**len(block_channels), got {img_resolution} / {input_resolution} with "
                             f"{len(block_channels)} blocks")
        self.input_resolution, self.img_resolution, self.sr_antialias = input_resolution, img_resolution, sr_antialias
        self.block_channels, self.w_dim = block_channels, w_dim
        use_fp16 = sr_num_fp16_res > 0
        clamp = 256 if use_fp16 else None
        resolution, in_channels = input_resolution, channels
        self.num_blocks = len(block_channels)
        for index, out_channels in enumerate(block_channels):
            upsamples = index >= len(block_channels) - ups
            resolution = resolution * 2 if upsamples else resolution
            block_class = SynthesisBlock if upsamples else SynthesisBlockNoUp
            setattr(self, f"block{index}", block_class(in_channels, out_channels, w_dim=w_dim, resolution=resolution,
                                                       img_channels=3, is_last=index == len(block_channels) - 1,
                                                       use_fp16=use_fp16, conv_clamp=clamp, **block_kwargs))
            in_channels = out_channels

    def forward(self, rgb: torch.Tensor, x: torch.Tensor, ws: torch.Tensor, return_raw: bool = False,
                **block_kwargs):
        """-> the image, or (image, raw image) with return_raw; the raw image is `rgb` as given
        (no block's output is added to it, unlike two of EG3D's classes)."""
        w = ws[:, -1:, :].repeat(1, 3, 1)
        raw = rgb
        if x.shape[-1] != self.input_resolution:
            target = (self.input_resolution, self.input_resolution)
            x = F.interpolate(x, size=target, mode="bilinear", align_corners=False, antialias=self.sr_antialias)
            rgb = F.interpolate(rgb, size=target, mode="bilinear", align_corners=False, antialias=self.sr_antialias)
        for index in range(self.num_blocks):
            x, rgb = getattr(self, f"block{index}")(x, rgb, w, **block_kwargs)
        return (rgb, raw) if return_raw else rgb


SUPERRESOLUTION_MODULES = {cls.__name__: cls for cls in (SuperresolutionHybrid8XDC, SuperresolutionHybrid8X,
                                                          SuperresolutionHybrid4X, SuperresolutionHybrid2X,
                                                          SuperresolutionStack)}


def superresolution_class(module_name: str) -> type:
    """The class for EG3D's rendering_kwargs['superresolution_module'] (a dotted path such
    as 'training.superresolution.SuperresolutionHybrid8XDC'); only the name is used."""
    if not isinstance(module_name, str):
        raise TypeError(f"superresolution_module must be a string, got {type(module_name).__name__}")
    name = module_name.rsplit(".", 1)[-1]
    if name not in SUPERRESOLUTION_MODULES:
        raise ValueError(f"superresolution_module {module_name!r} is not understood; known: "
                         f"{', '.join(SUPERRESOLUTION_MODULES)}")
    return SUPERRESOLUTION_MODULES[name]
