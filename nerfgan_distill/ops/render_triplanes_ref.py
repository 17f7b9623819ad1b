"""The composable tri-plane renderer: EG3D's ImportanceRenderer.forward written from
its spec (../shared/docs/eg3d.md, sections 1.6 and 2.3-2.9) on top of our ops.

It is the reference of the fused render_triplanes kernels and the training path
(gradients flow to the planes, the decoder and nothing else). Random numbers come in
as tensors (the coarse jitter and the importance uniforms), so callers decide where
they come from and tests can feed EG3D's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from .composite_rays import composite_rays
from .importance_depths_ref import importance_from_uniforms
from .sample_triplanes import sample_triplanes

# The widened sigmoid of EG3D's decoder (from MipNeRF): range (-0.001, 1.001).
SIGMOID_PAD = 0.001


@dataclass(frozen=True)
class TriplaneDecoder:
    """EG3D's OSGDecoder as plain tensors, gains applied: the mean of the 3 plane
    features [C] -> FC [H, C] -> softplus -> FC [1 + C_out, H] -> (sigma raw, widened
    sigmoid on the C_out features)."""

    fc1_weight: torch.Tensor  # [hidden, C]
    fc1_bias: torch.Tensor  # [hidden]
    fc2_weight: torch.Tensor  # [1 + C_out, hidden]
    fc2_bias: torch.Tensor  # [1 + C_out]

    @classmethod
    def from_eg3d(cls, state: dict, prefix: str = "", lr_multiplier: float = 1.0) -> "TriplaneDecoder":
        """From an OSGDecoder state dict (keys net.0.weight, net.0.bias, net.2.weight,
        net.2.bias after `prefix`): FullyConnectedLayer scales its weight by
        lr_multiplier / sqrt(in_features) and its bias by lr_multiplier at run time."""
        def fc(index):
            weight, bias = state[f"{prefix}net.{index}.weight"], state[f"{prefix}net.{index}.bias"]
            return weight * (lr_multiplier / weight.shape[1] ** 0.5), bias * lr_multiplier

        (w1, b1), (w2, b2) = fc(0), fc(2)
        return cls(w1, b1, w2, b2)

    @property
    def tensors(self) -> tuple[torch.Tensor, ...]:
        return self.fc1_weight, self.fc1_bias, self.fc2_weight, self.fc2_bias


def decode(features: torch.Tensor, decoder: TriplaneDecoder) -> tuple[torch.Tensor, torch.Tensor]:
    """features [N, 3, M, C] -> (colors [N, M, C_out], raw densities [N, M, 1]) in the decoder's
    dtype: fp16/bf16 features (from half planes) are widened first, so the mean and the MLP
    accumulate in fp32 as the fused kernels do."""
    n, _, m, c = features.shape
    x = features.to(decoder.fc1_weight.dtype).mean(1).reshape(n * m, c)
    x = F.softplus(torch.addmm(decoder.fc1_bias, x, decoder.fc1_weight.t()))
    # The output width is spelled out: -1 cannot be inferred when there are no samples.
    x = torch.addmm(decoder.fc2_bias, x, decoder.fc2_weight.t()).reshape(n, m, decoder.fc2_weight.shape[0])
    colors = torch.sigmoid(x[..., 1:]) * (1 + 2 * SIGMOID_PAD) - SIGMOID_PAD
    return colors, x[..., :1]


def ray_box_limits(origins: torch.Tensor, directions: torch.Tensor, box_side: float):
    """Slab test against the cube [-box_side/2, box_side/2]^3: (t_min, t_max), each
    [..., 1]; rays that miss get -1 and -2 (EG3D's get_ray_limits_box)."""
    half = box_side / 2
    inv = 1 / directions
    lower = (-half - origins) * inv
    upper = (half - origins) * inv
    # Select by the sign of 1/d as EG3D does (not min/max: they differ on NaN, from a
    # zero direction component with the origin on that slab's face).
    negative = inv < 0
    near = torch.where(negative, upper, lower)
    far = torch.where(negative, lower, upper)
    t_min, t_max = near[..., 0], far[..., 0]
    valid = torch.ones_like(t_min, dtype=torch.bool)
    for axis in (1, 2):
        valid &= ~((t_min > far[..., axis]) | (near[..., axis] > t_max))
        t_min = torch.maximum(t_min, near[..., axis])
        t_max = torch.minimum(t_max, far[..., axis])
    t_min = torch.where(valid, t_min, torch.full_like(t_min, -1))
    t_max = torch.where(valid, t_max, torch.full_like(t_max, -2))
    return t_min[..., None], t_max[..., None]


def coarse_depths(origins: torch.Tensor, directions: torch.Tensor, options, jitter: torch.Tensor) -> torch.Tensor:
    """Stratified depths [N, R, D, 1]: D evenly spaced depths from ray_start to ray_end,
    each moved by jitter (in [0, 1)) times the spacing, so the last may pass ray_end.
    ray_start = ray_end = 'auto' intersects each ray with the box instead."""
    n, r, _ = origins.shape
    d = options.depth_resolution
    if options.ray_start == "auto":
        start, end = ray_box_limits(origins.detach(), directions.detach(), options.box_warp)
        valid = end > start
        if bool(valid.any()):
            # EG3D gives a ray that misses the range of the valid rays' *starts* (sic).
            start = torch.where(valid, start, start[valid].min())
            end = torch.where(valid, end, start[valid].max())
        steps = torch.arange(d, dtype=origins.dtype, device=origins.device) / (d - 1)
        depths = start[:, :, None, :] + steps[:, None] * (end - start)[:, :, None, :]
        return depths + jitter * ((end - start) / (d - 1))[:, :, None, :]
    if options.disparity_space_sampling:
        s = torch.linspace(0, 1, d, dtype=origins.dtype, device=origins.device).reshape(1, 1, d, 1) + jitter * (1 / (d - 1))
        return 1 / (1 / options.ray_start * (1 - s) + 1 / options.ray_end * s)
    depths = torch.linspace(options.ray_start, options.ray_end, d, dtype=origins.dtype, device=origins.device)
    return depths.reshape(1, 1, d, 1) + jitter * ((options.ray_end - options.ray_start) / (d - 1))


def _shade(planes, decoder, origins, directions, depths, options, backend):
    """Decoder outputs at o + t d: colors [N, R, S, C_out] and raw densities [N, R, S, 1]."""
    n, r, s, _ = depths.shape
    points = (origins.unsqueeze(-2) + depths * directions.unsqueeze(-2)).reshape(n, r * s, 3)
    features = sample_triplanes(planes, points, options.box_warp, options.plane_axes, backend=backend)
    colors, densities = decode(features, decoder)
    return colors.reshape(n, r, s, colors.shape[-1]), densities.reshape(n, r, s, 1)  # not -1: R may be 0


def render_triplanes_composable(planes, decoder: TriplaneDecoder, origins, directions, options,
                                jitter: torch.Tensor, uniforms: Optional[torch.Tensor], backend: str = "torch"):
    """ImportanceRenderer.forward with the random numbers given: jitter [N, R, D, 1] in
    [0, 1) for the coarse depths, uniforms [N*R, Di] for sample_pdf (None when Di = 0).
    Returns (features [N, R, C_out] in [-1, 1], depth [N, R, 1], weight total [N, R, 1])."""
    depths = coarse_depths(origins, directions, options, jitter)
    colors, densities = _shade(planes, decoder, origins, directions, depths, options, backend)
    if options.depth_resolution_importance > 0:
        _, _, weights = composite_rays(colors.detach(), densities.detach(), depths, options.white_back,
                                       options.clamp_mode, backend=backend)
        fine = importance_from_uniforms(depths, weights, uniforms)
        fine_colors, fine_densities = _shade(planes, decoder, origins, directions, fine, options, backend)
        depths, order = torch.sort(torch.cat([depths, fine], dim=-2), dim=-2)
        colors = torch.cat([colors, fine_colors], dim=-2).gather(-2, order.expand(-1, -1, -1, colors.shape[-1]))
        densities = torch.cat([densities, fine_densities], dim=-2).gather(-2, order)
    rgb, depth, weights = composite_rays(colors, densities, depths, options.white_back, options.clamp_mode,
                                         backend=backend)
    return rgb, depth, weights.sum(2)
