"""Pure-torch reference for sample_triplanes: EG3D's sample_from_planes, written from
its spec (../shared/docs/eg3d.md, section 2.2)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

# Per plane, the coordinate axes read as (grid x = width, grid y = height).
# 'eg3d' is what EG3D's generate_planes() projects onto: XY, XZ and ZX (not YZ; the
# released checkpoints were trained that way). 'xyz' is the orthogonal XY, XZ, YZ set.
PLANE_AXES = {
    "eg3d": ((0, 1), (0, 2), (2, 0)),
    "xyz": ((0, 1), (0, 2), (1, 2)),
}


# Grid coordinates beyond this are far outside every plane (all taps read zero). Clamping
# there keeps infinite points at zero (grid_sample would give NaN) and changes nothing else.
GRID_LIMIT = 3.0


def plane_grid(coords: torch.Tensor, box_warp: float, plane_axes: str) -> torch.Tensor:
    """[N, M, 3] points -> [N, 3, M, 2] grid_sample coordinates, the box mapped to [-1, 1]."""
    scaled = ((2 / box_warp) * coords).clamp(-GRID_LIMIT, GRID_LIMIT)
    return torch.stack([scaled[..., list(axes)] for axes in PLANE_AXES[plane_axes]], dim=1)


def sample_triplanes_ref(planes: torch.Tensor, coords: torch.Tensor, box_warp: float = 1.0,
                         plane_axes: str = "eg3d") -> torch.Tensor:
    """planes [N, 3, C, H, W], coords [N, M, 3] -> features [N, 3, M, C]: bilinear,
    zero padding, align_corners=False. fp16/bf16 planes are sampled in fp32."""
    n, p, c, h, w = planes.shape
    m = coords.shape[1]
    compute = torch.float64 if planes.dtype == torch.float64 else torch.float32
    grid = plane_grid(coords.to(compute), box_warp, plane_axes).reshape(n * p, 1, m, 2)
    out = F.grid_sample(planes.to(compute).reshape(n * p, c, h, w), grid, mode="bilinear",
                        padding_mode="zeros", align_corners=False)
    return out.permute(0, 3, 2, 1).reshape(n, p, m, c).to(planes.dtype)
