"""The constructor arguments of EG3D's official generators (../shared/docs/eg3d.md, 1.1,
1.7 and 1.8), to build a TriPlaneGenerator of an official shape without a pickle."""
from __future__ import annotations

import copy

__all__ = ["OFFICIAL_CONFIGS", "official_config", "tiny_config"]

_COMMON_RENDERING = dict(
    disparity_space_sampling=False, clamp_mode="softplus", c_gen_conditioning_zero=False, c_scale=1.0,
    superresolution_noise_mode="none", density_reg=0.25, density_reg_p_dist=0.004, reg_type="l1",
    decoder_lr_mul=1.0, sr_antialias=True)
_FACES = dict(image_resolution=512, superresolution_module="training.superresolution.SuperresolutionHybrid8XDC",
              depth_resolution=48, depth_resolution_importance=48, ray_start=2.25, ray_end=3.3, box_warp=1,
              avg_camera_radius=2.7)
_SHAPENET = dict(image_resolution=128, superresolution_module="training.superresolution.SuperresolutionHybrid2X",
                 depth_resolution=64, depth_resolution_importance=64, ray_start=0.1, ray_end=2.6, box_warp=1.6,
                 white_back=True, avg_camera_radius=1.7, avg_camera_pivot=[0, 0, 0], c_gen_conditioning_zero=True)


def _generator_kwargs(img_resolution: int, rendering: dict) -> dict:
    blocks = dict(channel_base=32768, channel_max=512, fused_modconv_default="inference_only")
    return dict(z_dim=512, c_dim=25, w_dim=512, img_resolution=img_resolution, img_channels=3, sr_num_fp16_res=4,
                mapping_kwargs={"num_layers": 2}, rendering_kwargs={**_COMMON_RENDERING, **rendering},
                sr_kwargs=dict(blocks), num_fp16_res=0, conv_clamp=None, **blocks)


# name -> (TriPlaneGenerator kwargs, neural rendering resolution), one per official pickle.
OFFICIAL_CONFIGS = {
    "ffhq512-64": (_generator_kwargs(512, {**_FACES, "avg_camera_pivot": [0, 0, 0.2], "gpc_reg_prob": 0.5}), 64),
    "ffhq512-128": (_generator_kwargs(512, {**_FACES, "avg_camera_pivot": [0, 0, 0.2], "gpc_reg_prob": 0.5}), 128),
    "ffhqrebalanced512-64": (_generator_kwargs(512, {**_FACES, "avg_camera_pivot": [0, 0, 0.2],
                                                     "gpc_reg_prob": 0.8}), 64),
    "ffhqrebalanced512-128": (_generator_kwargs(512, {**_FACES, "avg_camera_pivot": [0, 0, 0.2],
                                                      "gpc_reg_prob": 0.8}), 128),
    "afhqcats512-128": (_generator_kwargs(512, {**_FACES, "avg_camera_pivot": [0, 0, -0.06],
                                                "gpc_reg_prob": 0.8}), 128),
    "shapenetcars128-64": (_generator_kwargs(128, _SHAPENET), 64),
}


def official_config(name: str) -> tuple[dict, int]:
    """(TriPlaneGenerator kwargs, neural_rendering_resolution) of an official pickle's model."""
    if name not in OFFICIAL_CONFIGS:
        raise ValueError(f"unknown official config {name!r}; known: {', '.join(OFFICIAL_CONFIGS)}")
    kwargs, resolution = OFFICIAL_CONFIGS[name]
    return copy.deepcopy(kwargs), resolution


def tiny_config(img_resolution: int = 32, neural_rendering_resolution: int = 16, plane_resolution: int = 32,
                plane_channels: int = 8, w_dim: int = 64) -> tuple[dict, int]:
    """(TriPlaneGenerator kwargs, neural rendering resolution) of a small teacher with EG3D's
    architecture: the same generator, renderer and SR design at test and demo scale (a slim
    SuperresolutionStack instead of EG3D's fixed-width SR)."""
    rendering = {**_COMMON_RENDERING, **_FACES, "avg_camera_pivot": [0, 0, 0.2],
                 "superresolution_module": "nerfgan_distill.networks.superresolution.SuperresolutionStack",
                 "depth_resolution": 12, "depth_resolution_importance": 12, "image_resolution": img_resolution}
    blocks = dict(channel_base=64 * plane_resolution, channel_max=64, fused_modconv_default="inference_only")
    sr = dict(blocks, block_channels=[32, 16], w_dim=w_dim,
              input_resolution=img_resolution // 2 if img_resolution // 2 >= neural_rendering_resolution
              else neural_rendering_resolution)
    kwargs = dict(z_dim=w_dim, c_dim=25, w_dim=w_dim, img_resolution=img_resolution, img_channels=3,
                  sr_num_fp16_res=0, mapping_kwargs={"num_layers": 2}, rendering_kwargs=rendering, sr_kwargs=sr,
                  plane_resolution=plane_resolution, plane_channels=plane_channels, num_fp16_res=0, conv_clamp=None,
                  **blocks)
    return kwargs, neural_rendering_resolution
