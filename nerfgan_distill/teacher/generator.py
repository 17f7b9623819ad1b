"""EG3D's TriPlaneGenerator (../shared/docs/eg3d.md, section 1) on nerfgan_distill.ops.

The StyleGAN2 backbone makes 3 x 32-channel 256x256 feature planes; the importance
renderer (ops.render_triplanes: the fused kernels at inference, the composable ops when
gradients are needed or with backend 'torch') renders a low-resolution feature image;
the super-resolution module makes the final image. Constructor arguments, attribute and
parameter names and the call interface follow EG3D, so official weights and scripts port.
"""
from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import nn

from .. import ops
from .. import cameras
from .decoder import OSGDecoder
from ..networks.stylegan2 import Generator
from .rays import sample_rays
from ..networks.superresolution import superresolution_class

__all__ = ["TriPlaneGenerator", "PLANE_CHANNELS", "PLANE_RESOLUTION", "CAMERA_LABEL_SIZE"]

PLANE_CHANNELS = 32  # EG3D's features per plane (the backbone outputs 3 x 32 channels) ...
PLANE_RESOLUTION = 256  # ... at 256 x 256; both are constructor options for small teachers
CAMERA_LABEL_SIZE = 25  # cam2world [4x4] and normalized intrinsics [3x3], row-major

# rendering_kwargs keys a TriPlaneGenerator needs (the rest have EG3D's defaults).
REQUIRED_RENDERING_KEYS = ("depth_resolution", "depth_resolution_importance", "ray_start", "ray_end", "box_warp",
                           "superresolution_module", "sr_antialias", "superresolution_noise_mode")


class TriPlaneGenerator(nn.Module):
    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 sr_num_fp16_res: int = 0, mapping_kwargs: Optional[dict] = None,
                 rendering_kwargs: Optional[dict] = None, sr_kwargs: Optional[dict] = None,
                 plane_resolution: int = PLANE_RESOLUTION, plane_channels: int = PLANE_CHANNELS, **synthesis_kwargs):
        super().__init__()
        rendering_kwargs = dict(rendering_kwargs or {})
        missing = [k for k in REQUIRED_RENDERING_KEYS if k not in rendering_kwargs]
        if missing:
            raise ValueError(f"TriPlaneGenerator: rendering_kwargs lacks {', '.join(missing)}")
        if img_channels != 3:
            raise ValueError(f"TriPlaneGenerator: img_channels must be 3 (EG3D's SR makes RGB), got {img_channels}")
        # Kept to save the model in our format (the config travels with the weights).
        self.init_kwargs = copy.deepcopy(dict(
            z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
            sr_num_fp16_res=sr_num_fp16_res, mapping_kwargs=dict(mapping_kwargs or {}),
            rendering_kwargs=rendering_kwargs, sr_kwargs=dict(sr_kwargs or {}), **synthesis_kwargs))
        # Written only when not EG3D's, so files of official models stay as they were.
        if plane_resolution != PLANE_RESOLUTION:
            self.init_kwargs["plane_resolution"] = plane_resolution
        if plane_channels != PLANE_CHANNELS:
            self.init_kwargs["plane_channels"] = plane_channels
        self.plane_resolution, self.plane_channels = plane_resolution, plane_channels
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.backbone = Generator(z_dim, c_dim, w_dim, img_resolution=plane_resolution,
                                  img_channels=3 * plane_channels, mapping_kwargs=mapping_kwargs, **synthesis_kwargs)
        sr_class = superresolution_class(rendering_kwargs["superresolution_module"])
        self.superresolution = sr_class(channels=plane_channels, img_resolution=img_resolution,
                                        sr_num_fp16_res=sr_num_fp16_res, sr_antialias=rendering_kwargs["sr_antialias"],
                                        **(sr_kwargs or {}))
        self.decoder = OSGDecoder(plane_channels, {"decoder_lr_mul": rendering_kwargs.get("decoder_lr_mul", 1),
                                                   "decoder_output_dim": plane_channels})
        self.neural_rendering_resolution = 64
        self.rendering_kwargs = rendering_kwargs
        # The label std the training loop stores with G; unused at inference, kept so the
        # official state dict maps one to one.
        self.register_buffer("dataset_label_std", torch.ones([c_dim]))
        self._last_planes = None
        self.backend = "auto"  # the renderer's backend; layers.set_ops_backend sets it with the rest

    # --- the official interface ------------------------------------------------------------

    def mapping(self, z: torch.Tensor, c: torch.Tensor, truncation_psi: float = 1, truncation_cutoff=None,
                update_emas: bool = False) -> torch.Tensor:
        if self.rendering_kwargs.get("c_gen_conditioning_zero", False):
            c = torch.zeros_like(c)
        return self.backbone.mapping(z, c * self.rendering_kwargs.get("c_scale", 0), truncation_psi=truncation_psi,
                                     truncation_cutoff=truncation_cutoff, update_emas=update_emas)

    def synthesis(self, ws: torch.Tensor, c: torch.Tensor, neural_rendering_resolution: Optional[int] = None,
                  update_emas: bool = False, cache_backbone: bool = False, use_cached_backbone: bool = False,
                  deterministic: bool = False, generator: Optional[torch.Generator] = None,
                  **synthesis_kwargs) -> dict:
        """ws [N, num_ws, w_dim] and the render camera c [N, 25] -> {'image', 'image_raw',
        'image_depth', 'feature_image'}. As in EG3D, a given neural_rendering_resolution
        replaces the stored one. deterministic/generator: see ops.render_triplanes."""
        cam2world, intrinsics = self._split_camera(c)
        if neural_rendering_resolution is None:
            resolution = _check_resolution(self.neural_rendering_resolution)
        else:
            resolution = self.neural_rendering_resolution = _check_resolution(neural_rendering_resolution)
        origins, directions = sample_rays(cam2world, intrinsics, resolution)
        n = origins.shape[0]
        if use_cached_backbone and self._last_planes is not None:
            planes = self._last_planes
        else:
            planes = self.synthesize_planes(ws, update_emas=update_emas, **synthesis_kwargs)
        if cache_backbone:
            self._last_planes = planes
        if planes.shape[0] != n:
            raise ValueError(f"synthesis: ws has {planes.shape[0]} samples but c has {n}")
        features, depths, _ = ops.render_triplanes(planes, self.decoder.render_weights(), origins, directions,
                                                   self.render_options, deterministic=deterministic,
                                                   generator=generator, backend=self.backend)
        feature_image = features.permute(0, 2, 1).reshape(n, features.shape[-1], resolution, resolution).contiguous()
        depth_image = depths.permute(0, 2, 1).reshape(n, 1, resolution, resolution)
        rgb_image = feature_image[:, :3]
        # The SR noise mode always comes from rendering_kwargs, whatever the caller passed.
        sr_kwargs = {k: v for k, v in synthesis_kwargs.items() if k != "noise_mode"}
        image, rgb_image = self.superresolution(rgb_image, feature_image, ws, return_raw=True,
                                                noise_mode=self.rendering_kwargs["superresolution_noise_mode"],
                                                **sr_kwargs)
        return {"image": image, "image_raw": rgb_image, "image_depth": depth_image, "feature_image": feature_image}

    def forward(self, z: torch.Tensor, c: torch.Tensor, truncation_psi: float = 1, truncation_cutoff=None,
                neural_rendering_resolution: Optional[int] = None, update_emas: bool = False,
                cache_backbone: bool = False, use_cached_backbone: bool = False, **synthesis_kwargs) -> dict:
        """Mapping then synthesis, with the same c for conditioning and rendering."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.synthesis(ws, c, update_emas=update_emas, neural_rendering_resolution=neural_rendering_resolution,
                              cache_backbone=cache_backbone, use_cached_backbone=use_cached_backbone,
                              **synthesis_kwargs)

    def sample(self, coordinates: torch.Tensor, directions: torch.Tensor, z: torch.Tensor, c: torch.Tensor,
               truncation_psi: float = 1, truncation_cutoff=None, update_emas: bool = False,
               **synthesis_kwargs) -> dict:
        """Decoder outputs at world points: {'rgb' [N, P, 32], 'sigma' [N, P, 1] (raw)}."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.sample_mixed(coordinates, directions, ws, update_emas=update_emas, **synthesis_kwargs)

    def sample_mixed(self, coordinates: torch.Tensor, directions: torch.Tensor, ws: torch.Tensor,
                     truncation_psi: float = 1, truncation_cutoff=None, update_emas: bool = False,
                     planes: Optional[torch.Tensor] = None, **synthesis_kwargs) -> dict:
        """As sample, from ws (the truncation arguments are ignored, as in EG3D); pass
        `planes` (synthesize_planes) to skip the backbone."""
        del truncation_psi, truncation_cutoff
        if planes is None:
            planes = self.synthesize_planes(ws, update_emas=update_emas, **synthesis_kwargs)
        if (not isinstance(coordinates, torch.Tensor) or coordinates.ndim != 3 or coordinates.shape[-1] != 3
                or coordinates.shape[0] != planes.shape[0]):
            raise ValueError(f"sample: coordinates must be [N, P, 3] with N = {planes.shape[0]}, got "
                             f"{list(coordinates.shape) if isinstance(coordinates, torch.Tensor) else coordinates}")
        features = ops.sample_triplanes(planes, coordinates.to(planes.dtype), box_warp=self.rendering_kwargs["box_warp"],
                                        backend=self.backend)
        return self.decoder(features, directions)

    # --- helpers ------------------------------------------------------------------------------

    def synthesize_planes(self, ws: torch.Tensor, **synthesis_kwargs) -> torch.Tensor:
        """ws -> the tri-planes [N, 3, plane_channels, plane_resolution, plane_resolution] (plane-major)."""
        planes = self.backbone.synthesis(ws, **synthesis_kwargs)
        return planes.view(planes.shape[0], 3, self.plane_channels, planes.shape[-2], planes.shape[-1])

    def sample_density(self, coordinates: torch.Tensor, ws: torch.Tensor, planes: Optional[torch.Tensor] = None,
                       **synthesis_kwargs) -> torch.Tensor:
        """Raw density (before softplus(x - 1)) at world points [N, P, 3] -> [N, P, 1], as
        EG3D's shape extraction reads it; pass `planes` to reuse a synthesize_planes result."""
        return self.sample_mixed(coordinates, None, ws, planes=planes, **synthesis_kwargs)["sigma"]

    def camera_defaults(self) -> cameras.DatasetCamera:
        """The scripts' orbit camera for this model: rendering_kwargs' avg_camera_radius and
        avg_camera_pivot, gen_videos' focal length (1.7074 for 128-pixel ShapeNet models, else 4.2647)."""
        rk = self.rendering_kwargs
        focal = 1.7074 if self.img_resolution == 128 else 4.2647
        return cameras.DatasetCamera("model", float(rk.get("avg_camera_radius", 2.7)),
                                     tuple(float(v) for v in rk.get("avg_camera_pivot", (0, 0, 0))), focal,
                                     float(rk["box_warp"]))

    @property
    def render_options(self) -> ops.RenderOptions:
        return ops.RenderOptions.from_eg3d(self.rendering_kwargs)

    def _split_camera(self, c: torch.Tensor):
        if not isinstance(c, torch.Tensor) or c.ndim != 2 or c.shape[1] != CAMERA_LABEL_SIZE:
            shape = list(c.shape) if isinstance(c, torch.Tensor) else type(c).__name__
            raise ValueError(f"synthesis: c must be [N, {CAMERA_LABEL_SIZE}] (cam2world 4x4 and intrinsics 3x3, "
                             f"row-major), got {shape}")
        if not c.is_floating_point():
            raise TypeError(f"synthesis: c must be a float tensor, got {c.dtype}")
        if not torch.isfinite(c).all():
            raise ValueError("synthesis: c has non-finite values")
        c = c.to(torch.float32)
        return c[:, :16].reshape(-1, 4, 4), c[:, 16:25].reshape(-1, 3, 3)


def _check_resolution(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"synthesis: neural_rendering_resolution must be an int >= 1, got {value!r}")
    return value
