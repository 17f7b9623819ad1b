"""The pose-conditioned convolutional student (the paper's figure, bottom row):

    teacher ws [N, T, w_dim], render camera c [N, 25]
      -> mapping: a new MLP on (w_i, c) for each teacher w_i        -> ws' [N, S, w_dim]
      -> synthesis: StyleGAN2 ("ST2") or StyleGAN3 ("ST3", backbone='stylegan3') at the
         teacher's neural rendering resolution
                                                                   -> feature_image [N, C, r, r]
                                                                      (image_raw = its first 3 channels)
      -> super-resolution driven by the last w'                     -> image [N, 3, R, R]

The mapping runs the same MLP on every teacher w, so truncation and style mixing done on
the teacher's ws carry over layer by layer; the teacher's T entries are assigned to the
student's S layers in order (nearest index), coarse to coarse and fine to fine.

The synthesis layers have no per-pixel noise: noise is fixed to the screen, so it would not
follow the object when the camera moves, and the teacher's targets (rendered with constant
noise in its backbone, which is sampled in 3D) hold nothing it could explain.
"""
from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import nn

from ..networks import stylegan2, stylegan3
from ..networks.stylegan2 import MappingNetwork
from ..networks.superresolution import superresolution_class

__all__ = ["StudentGenerator", "CAMERA_LABEL_SIZE", "BACKBONES"]

CAMERA_LABEL_SIZE = 25  # cam2world [4x4] and normalized intrinsics [3x3], row-major
# The synthesis networks a student can use, and the keyword arguments each gets by default.
BACKBONES = {
    "stylegan2": (stylegan2.SynthesisNetwork, {"use_noise": False}),
    "stylegan3": (stylegan3.SynthesisNetwork, {}),
}


class StudentGenerator(nn.Module):
    def __init__(self, w_dim: int, teacher_num_ws: int, raw_resolution: int, feature_channels: int,
                 img_resolution: int, superresolution_module: str, c_dim: int = CAMERA_LABEL_SIZE,
                 mapping_kwargs: Optional[dict] = None, synthesis_kwargs: Optional[dict] = None,
                 sr_kwargs: Optional[dict] = None, sr_num_fp16_res: int = 0, sr_antialias: bool = True,
                 sr_noise_mode: str = "none", preset: Optional[str] = None, backbone: str = "stylegan2"):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"StudentGenerator: backbone must be one of {', '.join(BACKBONES)}, got {backbone!r}")
        if feature_channels < 3:
            raise ValueError(f"StudentGenerator: feature_channels must be >= 3 (RGB first), got {feature_channels}")
        if isinstance(teacher_num_ws, bool) or not isinstance(teacher_num_ws, int) or teacher_num_ws < 1:
            raise ValueError(f"StudentGenerator: teacher_num_ws must be an int >= 1, got {teacher_num_ws!r}")
        if sr_noise_mode not in ("none", "const", "random"):
            raise ValueError(f"StudentGenerator: sr_noise_mode must be 'none', 'const' or 'random', "
                             f"got {sr_noise_mode!r}")
        # The config travels with the weights (student.save writes it as JSON metadata).
        self.init_kwargs = copy.deepcopy(dict(
            w_dim=w_dim, teacher_num_ws=teacher_num_ws, raw_resolution=raw_resolution,
            feature_channels=feature_channels, img_resolution=img_resolution,
            superresolution_module=superresolution_module, c_dim=c_dim, mapping_kwargs=dict(mapping_kwargs or {}),
            synthesis_kwargs=dict(synthesis_kwargs or {}), sr_kwargs=dict(sr_kwargs or {}),
            sr_num_fp16_res=sr_num_fp16_res, sr_antialias=sr_antialias, sr_noise_mode=sr_noise_mode, preset=preset,
            backbone=backbone))
        self.w_dim, self.c_dim, self.teacher_num_ws = w_dim, c_dim, teacher_num_ws
        self.raw_resolution, self.feature_channels, self.img_resolution = raw_resolution, feature_channels, img_resolution
        self.sr_noise_mode, self.preset, self.backbone = sr_noise_mode, preset, backbone
        synthesis_class, synthesis_defaults = BACKBONES[backbone]
        self.synthesis_network = synthesis_class(w_dim=w_dim, img_resolution=raw_resolution,
                                                 img_channels=feature_channels,
                                                 **{**synthesis_defaults, **(synthesis_kwargs or {})})
        self.num_ws = self.synthesis_network.num_ws
        mapping_kwargs = {"num_layers": 2, **(mapping_kwargs or {})}
        # num_ws=None and no w_avg: it maps each teacher w on its own, and truncation is the teacher's.
        self.mapping_network = MappingNetwork(z_dim=w_dim, c_dim=c_dim, w_dim=w_dim, num_ws=None, w_avg_beta=None,
                                              **mapping_kwargs)
        sr_class = superresolution_class(superresolution_module)
        self.superresolution = sr_class(channels=feature_channels, img_resolution=img_resolution,
                                        sr_num_fp16_res=sr_num_fp16_res, sr_antialias=sr_antialias,
                                        **(sr_kwargs or {}))
        # Student layer j reads teacher entry layer_map[j] (nearest index, in order).
        layer_map = [round(j * (teacher_num_ws - 1) / max(self.num_ws - 1, 1)) for j in range(self.num_ws)]
        self.register_buffer("layer_map", torch.tensor(layer_map, dtype=torch.int64), persistent=False)

    def mapping(self, ws: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The teacher's ws [N, teacher_num_ws, w_dim] and the render camera c [N, 25] -> ws' [N, num_ws, w_dim]."""
        _check_ws(ws, self.teacher_num_ws, self.w_dim)
        _check_camera(c, ws.shape[0])
        picked = ws.to(torch.float32).index_select(1, self.layer_map)  # [N, S, w_dim]
        n, s, _ = picked.shape
        cams = c.to(torch.float32).unsqueeze(1).expand(n, s, c.shape[1])
        out = self.mapping_network(picked.reshape(n * s, self.w_dim), cams.reshape(n * s, c.shape[1]))
        return out.reshape(n, s, self.w_dim)

    def synthesis(self, ws_prime: torch.Tensor, **block_kwargs) -> dict:
        """ws' [N, num_ws, w_dim] -> {'image', 'image_raw', 'feature_image'}, as the teacher's synthesis."""
        feature_image = self.synthesis_network(ws_prime, **block_kwargs)
        raw = feature_image[:, :3]
        image, raw = self.superresolution(raw, feature_image, ws_prime, return_raw=True,
                                          noise_mode=self.sr_noise_mode, **block_kwargs)
        return {"image": image, "image_raw": raw, "feature_image": feature_image}

    def forward(self, ws: torch.Tensor, c: torch.Tensor, **block_kwargs) -> dict:
        return self.synthesis(self.mapping(ws, c), **block_kwargs)

    def running_statistics(self) -> list:
        """The buffers a forward pass with update_emas=True changes (StyleGAN3's magnitude EMAs;
        none for StyleGAN2): what data-parallel training averages over processes."""
        return [b for name, b in self.named_buffers() if name.endswith("magnitude_ema")]

    def extra_repr(self) -> str:
        return (f"preset={self.preset}, backbone={self.backbone}, raw_resolution={self.raw_resolution}, feature_channels={self.feature_channels}, "
                f"img_resolution={self.img_resolution}, num_ws={self.num_ws}, teacher_num_ws={self.teacher_num_ws}")


def _check_ws(ws, count: int, w_dim: int) -> None:
    if not isinstance(ws, torch.Tensor) or ws.ndim != 3 or tuple(ws.shape[1:]) != (count, w_dim):
        shape = list(ws.shape) if isinstance(ws, torch.Tensor) else type(ws).__name__
        raise ValueError(f"student.mapping: ws must be the teacher's [N, {count}, {w_dim}] (G.mapping's output), "
                         f"got {shape}")
    if not ws.is_floating_point():
        raise TypeError(f"student.mapping: ws must be a float tensor, got {ws.dtype}")


def _check_camera(c, n: int) -> None:
    if not isinstance(c, torch.Tensor) or c.ndim != 2 or tuple(c.shape) != (n, CAMERA_LABEL_SIZE):
        shape = list(c.shape) if isinstance(c, torch.Tensor) else type(c).__name__
        raise ValueError(f"student.mapping: c must be [{n}, {CAMERA_LABEL_SIZE}] (cam2world 4x4 and intrinsics 3x3, "
                         f"row-major, one per ws), got {shape}")
    if not c.is_floating_point():
        raise TypeError(f"student.mapping: c must be a float tensor, got {c.dtype}")
    if not bool(torch.isfinite(c).all()):
        raise ValueError("student.mapping: c has non-finite values")
