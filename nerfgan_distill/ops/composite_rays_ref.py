"""Pure-torch reference for composite_rays: EG3D's MipRayMarcher2, written from its
spec (../shared/docs/eg3d.md, section 2.5), quirks included."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def composite_rays_ref(colors: torch.Tensor, densities: torch.Tensor, depths: torch.Tensor,
                       white_back: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """colors [N, R, S, C], densities and depths [N, R, S, 1] (depths sorted along S)
    -> (rgb [N, R, C] in [-1, 1], depth [N, R, 1], weights [N, R, S-1, 1])."""
    deltas = depths[:, :, 1:] - depths[:, :, :-1]
    colors_mid = (colors[:, :, :-1] + colors[:, :, 1:]) / 2
    densities_mid = (densities[:, :, :-1] + densities[:, :, 1:]) / 2
    depths_mid = (depths[:, :, :-1] + depths[:, :, 1:]) / 2
    alpha = 1 - torch.exp(-F.softplus(densities_mid - 1) * deltas)
    # Exclusive product of (1 - alpha + 1e-10): the 1e-10 keeps the transmittance above zero.
    shifted = torch.cat([torch.ones_like(alpha[:, :, :1]), 1 - alpha + 1e-10], dim=-2)
    weights = alpha * torch.cumprod(shifted, dim=-2)[:, :, :-1]
    rgb = torch.sum(weights * colors_mid, dim=-2)
    weight_total = weights.sum(2)
    depth = torch.sum(weights * depths_mid, dim=-2) / weight_total
    # A ray with no weight (0/0) takes the largest depth; the clamp bounds are global.
    depth = torch.nan_to_num(depth, float("inf"))
    if depths.numel() > 0:  # no rays: nothing to clamp (and min/max of nothing is an error)
        depth = torch.clamp(depth, torch.min(depths), torch.max(depths))
    if white_back:
        rgb = rgb + 1 - weight_total
    return rgb * 2 - 1, depth, weights
