"""Depth-based view warping: the geometry behind the multi-view consistency metric.

A pixel of a source view with ray depth d (the teacher's 'image_depth': distance along the unit
ray, docs/eg3d.md section 1) is the world point X = o + d * dir. Projecting X into a target
camera (the inverse of cam2world, then OpenCV intrinsics normalized by the image size) gives
where the same surface point should appear there; sampling the target image at that place and
comparing with the source pixel measures how consistent the two views are. Points behind the
target camera, outside its image or hidden there by something nearer (the target view's own
depth disagrees with the distance to X) are masked out.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..cameras import split_camera_label
from ..teacher.rays import sample_rays

__all__ = ["unproject", "project", "warp_from_target"]


def unproject(c: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
    """World points [N, R*R, 3] of every pixel of cameras c [N, 25] with ray depths [N, 1, R, R]."""
    cam2world, intrinsics = split_camera_label(c.float())
    resolution = depth.shape[-1]
    origins, directions = sample_rays(cam2world, intrinsics, resolution)
    return origins + directions * depth.reshape(depth.shape[0], -1, 1).float()


def project(c: torch.Tensor, points: torch.Tensor):
    """Points [N, P, 3] seen by cameras c [N, 25] -> (uv [N, P, 2] normalized image coordinates,
    pixel (i, j) centred at ((j+0.5)/R, (i+0.5)/R); camera-space z [N, P]; distance to the camera
    centre [N, P], which is the ray depth the target view would report for that point)."""
    cam2world, intrinsics = split_camera_label(c.float())
    world2cam = torch.linalg.inv(cam2world)
    homogeneous = torch.cat([points, torch.ones_like(points[..., :1])], dim=-1)
    cam = torch.bmm(homogeneous, world2cam.transpose(1, 2))[..., :3]
    z = cam[..., 2]
    safe_z = torch.where(z.abs() > 1e-8, z, torch.full_like(z, 1e-8))
    x, y = cam[..., 0] / safe_z, cam[..., 1] / safe_z
    fx, fy = intrinsics[:, 0, 0, None], intrinsics[:, 1, 1, None]
    cx, cy, sk = intrinsics[:, 0, 2, None], intrinsics[:, 1, 2, None], intrinsics[:, 0, 1, None]
    # The inverse of sample_rays' lifting: u = fx x + sk y + cx, v = fy y + cy.
    uv = torch.stack((fx * x + sk * y + cx, fy * y + cy), dim=-1)
    distance = (points - cam2world[:, None, :3, 3]).norm(dim=-1)
    return uv, z, distance


def _sample(image: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear samples [N, C, P] of image [N, C, H, W] at normalized uv [N, P, 2]."""
    grid = (uv * 2 - 1).unsqueeze(1)  # align_corners=False: -1 and 1 are the outer pixel edges
    return F.grid_sample(image.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)[:, :, 0]


def warp_from_target(target_image: torch.Tensor, c_source: torch.Tensor, source_depth: torch.Tensor,
                     c_target: torch.Tensor, target_depth: torch.Tensor, tolerance: float = 0.02):
    """The target view resampled into the source view's pixels -> (warped [N, C, H, W], mask [N, 1, H, W]).

    source_depth / target_depth: the teacher's ray depths [N, 1, H, W] of both views (the image
    and the depths share a resolution: upsample depths first for the final image).
    tolerance: relative depth difference beyond which a point counts as occluded in the target.
    mask: the point is in front of the target camera, projects between the target's outer pixel
    centres (no extrapolation), and the target's depth there matches its distance.
    """
    n, channels, h, w = target_image.shape
    for name, depth in (("source_depth", source_depth), ("target_depth", target_depth)):
        if depth.shape != (n, 1, h, w):
            raise ValueError(f"warp_from_target: {name} must be [{n}, 1, {h}, {w}] like the image, "
                             f"got {list(depth.shape)}")
    if h != w:
        raise ValueError(f"warp_from_target: square images only (EG3D's rays), got {h}x{w}")
    points = unproject(c_source, source_depth)
    uv, z, distance = project(c_target, points)
    warped = _sample(target_image, uv).reshape(n, channels, h, w)
    seen_depth = _sample(target_depth, uv)[:, 0]
    lo, hi = 0.5 / w - 1e-4, 1 - 0.5 / w + 1e-4  # float slack so a view warped into itself keeps every pixel
    inside = ((uv >= lo) & (uv <= hi)).all(dim=-1) & (z > 1e-6)
    visible = (seen_depth - distance).abs() <= tolerance * distance
    mask = (inside & visible).reshape(n, 1, h, w)
    return warped, mask
