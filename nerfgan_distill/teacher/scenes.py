"""The bundled teacher's world: a family of procedural 3D scenes indexed by a latent z, and
their analytic renders (the ground truth it is trained on and measured against).

A scene is one object in front of a tiled back wall: a rounded box (from cube to sphere), a
torus, a rounded cylinder or a two-sphere figure, turned and tilted, coloured with stripes or
dots, sometimes with a small moon beside it, lit from the upper right. Each of the SCENE_DIMS
latent dimensions sets one property through the normal CDF (z ~ N(0, 1) gives uniform
properties), so nearby latents give similar scenes and every dimension matters.

Geometry is a signed distance field clipped to the tri-plane box (what a tri-plane can hold);
`density` turns it into a radiance field's density, `render` ray-casts it exactly (sphere
tracing) with EG3D's rays, so renders are in the teacher's conventions: [-1, 1], black where
a ray hits nothing. World y is up and the frontal camera looks down -z (cameras.look_at_poses).
"""
from __future__ import annotations

import math

import torch

__all__ = ["SCENE_DIMS", "KINDS", "scene_params", "sdf", "density", "albedo", "colour", "render"]

SCENE_DIMS = 16
KINDS = ("rounded box", "torus", "cylinder", "figure")
BOX_HALF = 0.5          # the tri-plane box (box_warp 1) is [-0.5, 0.5]^3
WALL_Z = -0.2           # the back wall's front face; it fills the box behind it
LIGHT = (0.45, 0.65, 0.6)
AMBIENT = 0.35
DENSITY_SCALE = 60.0     # density deep inside a surface, per unit length
DENSITY_SOFTNESS = 0.012  # width of the surface's density ramp (about one tri-plane texel at 64^2)


def _hsv(h: torch.Tensor, s: float | torch.Tensor, v: float | torch.Tensor) -> torch.Tensor:
    """Hue h in [0, 1) (any shape) -> RGB [..., 3] in [0, 1]."""
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], -1)
    s, v = torch.as_tensor(s).unsqueeze(-1), torch.as_tensor(v).unsqueeze(-1)
    return v - v * s * torch.clamp(torch.minimum(k, 4 - k), 0, 1)


def scene_params(z: torch.Tensor) -> dict:
    """Latents z [N, >= SCENE_DIMS] -> scene properties, each a tensor [N] (or [N, 3])."""
    if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[1] < SCENE_DIMS:
        raise ValueError(f"scene_params: z must be [N, >= {SCENE_DIMS}], got "
                         f"{list(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__}")
    # The mapping network sees z over its root mean square (StyleGAN's normalize_2nd_moment), so
    # the scene is a function of that: what the generator can recover from its input.
    z = z[:, :SCENE_DIMS].double()
    z = z * (z.square().mean(1, keepdim=True) + 1e-8).rsqrt()
    u = torch.special.ndtr(z).float().clamp(1e-4, 1 - 1e-4)
    size = 0.13 + 0.06 * u[:, 1]
    return dict(
        kind=(u[:, 0] * len(KINDS)).long().clamp(max=len(KINDS) - 1),
        size=size,
        aspect=0.65 + 0.7 * u[:, 2],
        roundness=u[:, 3],
        yaw=(u[:, 4] - 0.5) * math.pi,
        tilt=(u[:, 5] - 0.5) * 0.9,
        colour=_hsv(u[:, 6], 0.7, 0.92),
        second_colour=_hsv((u[:, 6] + 0.25 + 0.5 * u[:, 7]) % 1, 0.55, 0.55 + 0.4 * u[:, 7]),
        frequency=14 + 26 * u[:, 8],
        pattern=u[:, 9],                     # < 0.5 stripes, else dots; contrast grows away from 0.5
        moon_radius=0.07 * ((u[:, 10] - 0.45) / 0.15).clamp(0, 1),
        moon_angle=u[:, 11] * 2 * math.pi,
        moon_height=(u[:, 12] - 0.5) * 0.3,
        moon_colour=_hsv((u[:, 6] + 0.5) % 1, 0.6, 0.95),
        wall_colour=_hsv(u[:, 13], 0.35, 0.35 + 0.3 * u[:, 14]),
        wall_tile=0.08 + 0.08 * u[:, 15],
    )


def _rotate(points: torch.Tensor, p: dict) -> torch.Tensor:
    """World points [N, P, 3] -> the main object's frame (turned by yaw about y, tilted about x)."""
    cy, sy = torch.cos(p["yaw"])[:, None], torch.sin(p["yaw"])[:, None]
    ct, st = torch.cos(p["tilt"])[:, None], torch.sin(p["tilt"])[:, None]
    x, y, z = points.unbind(-1)
    x, z = cy * x - sy * z, sy * x + cy * z
    y, z = ct * y - st * z, st * y + ct * z
    return torch.stack([x, y, z], -1)


def _rounded_box(q: torch.Tensor, half: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    d = q.abs() - (half - radius[..., None])
    return d.clamp(min=0).norm(dim=-1) + d.max(-1).values.clamp(max=0) - radius


def _main_object(q: torch.Tensor, p: dict) -> torch.Tensor:
    """Signed distance [N, P] of every kind; each scene keeps its own kind's."""
    s, a = p["size"][:, None], p["aspect"][:, None]
    half = torch.stack([s * a, s, s / a.sqrt()], -1)
    box = _rounded_box(q, half, p["roundness"][:, None] * half.min(-1).values)
    ring = torch.stack([q[..., [0, 2]].norm(dim=-1) - 0.8 * s, q[..., 1]], -1)
    torus = ring.norm(dim=-1) - 0.32 * s * a.clamp(max=1.1)
    radial = torch.stack([q[..., [0, 2]].norm(dim=-1) - 0.7 * s / a.sqrt(), q[..., 1].abs() - s * a], -1)
    rounding = 0.25 * s
    shifted = radial + rounding[..., None]
    cylinder = shifted.clamp(min=0).norm(dim=-1) + shifted.max(-1).values.clamp(max=0) - rounding
    lower = (q - torch.stack([0 * s, -0.45 * s, 0 * s], -1)).norm(dim=-1) - 0.75 * s
    upper = (q - torch.stack([0 * s, 0.62 * s * a, 0 * s], -1)).norm(dim=-1) - 0.5 * s
    figure = torch.minimum(lower, upper)
    every = torch.stack([box, torus, cylinder, figure], -1)
    return every.gather(-1, p["kind"][:, None, None].expand(*q.shape[:2], 1))[..., 0]


def _moon_centre(p: dict) -> torch.Tensor:
    return torch.stack([0.21 * torch.cos(p["moon_angle"]), p["moon_height"], 0.08 * torch.sin(p["moon_angle"])], -1)


def _parts(points: torch.Tensor, p: dict) -> torch.Tensor:
    """Signed distances [N, P, 3] of the object, the moon and the wall (clipped to the box)."""
    obj = _main_object(_rotate(points, p), p)
    moon = (points - _moon_centre(p)[:, None]).norm(dim=-1) - p["moon_radius"][:, None]
    moon = torch.where(p["moon_radius"][:, None] > 0, moon, torch.full_like(moon, 1.0))
    wall = points[..., 2] - WALL_Z
    inside_box = (points.abs() - BOX_HALF).max(-1).values
    return torch.stack([obj, moon, wall], -1).maximum(inside_box[..., None])


def sdf(params: dict, points: torch.Tensor) -> torch.Tensor:
    """Signed distance [N, P] to the scene (negative inside) at world points [N, P, 3]."""
    return _parts(points, params).min(-1).values


def density(params: dict, points: torch.Tensor) -> torch.Tensor:
    """A radiance field's density [N, P] (per unit length): a thin ramp across each surface."""
    return DENSITY_SCALE * torch.sigmoid(-sdf(params, points) / DENSITY_SOFTNESS)


def albedo(params: dict, points: torch.Tensor) -> torch.Tensor:
    """Surface colour [N, P, 3] in [0, 1] of the nearest part at world points [N, P, 3]."""
    part = _parts(points, params).argmin(-1)
    q = _rotate(points, params)
    f = params["frequency"][:, None]
    stripes = 0.5 + 0.5 * torch.sin(f * (q[..., 1] + 0.3 * q[..., 0]))
    dots = (torch.sin(f * q[..., 0]) * torch.sin(f * q[..., 1]) * torch.sin(f * q[..., 2]) > 0.15).float()
    kind = params["pattern"][:, None]
    mix = torch.where(kind < 0.5, stripes, dots) * ((kind - 0.5).abs() * 2).clamp(0.25, 1)
    obj = torch.lerp(params["colour"][:, None], params["second_colour"][:, None], mix[..., None])
    moon = params["moon_colour"][:, None].expand_as(obj)
    tile = params["wall_tile"][:, None]
    checker = ((torch.floor(points[..., 0] / tile) + torch.floor(points[..., 1] / tile)) % 2)[..., None]
    height = (points[..., 1:2] + BOX_HALF).clamp(0, 1)
    wall = params["wall_colour"][:, None] * (0.75 + 0.35 * height) * (0.9 + 0.12 * checker)
    every = torch.stack([obj, moon, wall], -2)
    return every.gather(-2, part[..., None, None].expand(*part.shape, 1, 3))[..., 0, :].clamp(0, 1)


def _normals(params: dict, points: torch.Tensor, eps: float = 2e-3) -> torch.Tensor:
    offsets = torch.eye(3, dtype=points.dtype, device=points.device) * eps
    grads = [sdf(params, points + o) - sdf(params, points - o) for o in offsets]
    return torch.nn.functional.normalize(torch.stack(grads, -1), dim=-1)


def colour(params: dict, points: torch.Tensor) -> torch.Tensor:
    """Radiance [N, P, 3] in [0, 1]: albedo lit by a fixed light (diffuse plus ambient), the
    same from every view, as the teacher's decoder (no view dependence)."""
    light = torch.nn.functional.normalize(torch.tensor(LIGHT, dtype=points.dtype, device=points.device), dim=0)
    shade = AMBIENT + (1 - AMBIENT) * (_normals(params, points) @ light).clamp(min=0)
    return (albedo(params, points) * shade[..., None]).clamp(0, 1)


@torch.no_grad()
def render(params: dict, origins: torch.Tensor, directions: torch.Tensor, ray_start: float, ray_end: float,
           iterations: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Sphere-trace rays [N, M, 3] between ray_start and ray_end: (RGB [N, M, 3] in [-1, 1],
    black on a miss; hit depth [N, M], ray_end on a miss)."""
    t = torch.full(origins.shape[:2], float(ray_start), dtype=origins.dtype, device=origins.device)
    for _ in range(iterations):
        step = sdf(params, origins + t[..., None] * directions)
        t = torch.where((t < ray_end) & (step > 1e-4), t + 0.9 * step, t)  # converged rays stay put
    points = origins + t[..., None] * directions
    hit = (t < ray_end) & (sdf(params, points).abs() < 5e-3)
    rgb = torch.where(hit[..., None], colour(params, points), torch.zeros_like(points))
    return rgb * 2 - 1, torch.where(hit, t, torch.full_like(t, float(ray_end)))
