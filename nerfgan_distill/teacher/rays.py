"""EG3D's ray sampler: one ray per pixel centre of an R x R image, for OpenCV cameras with
intrinsics normalized by the image size (docs/eg3d.md section 2.1)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def pixel_centers(resolution: int, device=None) -> torch.Tensor:
    """Normalized pixel centres uv [R*R, 2] = ((j + 0.5)/R, (i + 0.5)/R), row-major (m = i*R + j)."""
    # Computed as idx * (1/R) + 0.5/R in float32, EG3D's rounding (not (idx + 0.5)/R).
    step = torch.arange(resolution, dtype=torch.float32, device=device) * (1.0 / resolution) + (0.5 / resolution)
    v, u = torch.meshgrid(step, step, indexing="ij")  # v follows the row i, u the column j
    return torch.stack((u.reshape(-1), v.reshape(-1)), dim=-1)


def sample_rays(cam2world: torch.Tensor, intrinsics: torch.Tensor, resolution: int):
    """Ray origins and unit directions [N, R*R, 3] (float32) for cameras cam2world [N,4,4], intrinsics [N,3,3].

    For pixel (i, j): u = (j+0.5)/R, v = (i+0.5)/R; the camera-space point at depth 1 is
    x = (u - cx + cy*sk/fy - sk*v/fy)/fx, y = (v - cy)/fy, z = 1 (sk = K[0,1], the skew); it is mapped to the
    world by cam2world and the direction is F.normalize(point - origin) (eps 1e-12). Inputs are cast to float32.
    """
    fn = "sample_rays"
    for name, t, tail in (("cam2world", cam2world, (4, 4)), ("intrinsics", intrinsics, (3, 3))):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{fn}: {name} must be a floating-point tensor, got {t.dtype}")
        if t.ndim != 3 or tuple(t.shape[1:]) != tail:
            raise ValueError(f"{fn}: {name} must have shape [N, {tail[0]}, {tail[1]}], got {list(t.shape)}")
    if intrinsics.shape[0] != cam2world.shape[0]:
        raise ValueError(f"{fn}: intrinsics has {intrinsics.shape[0]} cameras but cam2world has {cam2world.shape[0]}")
    if intrinsics.device != cam2world.device:
        raise ValueError(f"{fn}: intrinsics is on {intrinsics.device} but cam2world is on {cam2world.device}")
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"{fn}: resolution must be a positive int, got {resolution!r}")

    cam2world, intrinsics = cam2world.float(), intrinsics.float()
    n, m = cam2world.shape[0], resolution * resolution
    fx, fy = intrinsics[:, 0, 0, None], intrinsics[:, 1, 1, None]
    cx, cy, sk = intrinsics[:, 0, 2, None], intrinsics[:, 1, 2, None], intrinsics[:, 0, 1, None]
    uv = pixel_centers(resolution, cam2world.device)
    u, v = uv[None, :, 0], uv[None, :, 1]
    # Same operation order as the official code, so float32 rounding agrees with it.
    x = (u - cx + cy * sk / fy - sk * v / fy) / fx
    y = (v - cy) / fy
    one = torch.ones((n, m), device=cam2world.device)
    points = torch.stack((x.expand(n, m), y.expand(n, m), one, one), dim=-1)  # homogeneous, [N, M, 4]
    world = torch.bmm(cam2world, points.transpose(1, 2)).transpose(1, 2)[:, :, :3]
    origin = cam2world[:, :3, 3]
    directions = F.normalize(world - origin[:, None, :], dim=2)
    return origin[:, None, :].expand(n, m, 3).contiguous(), directions
