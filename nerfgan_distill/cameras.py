"""EG3D cameras: look-at poses, normalized intrinsics and the 25-dim camera label.

Conventions (EG3D's, see docs/eg3d.md section 5):
- poses are OpenCV cam2world matrices (+x right, +y down, +z forward in camera space); with the
  default up vector the world's +y is "up" in the image;
- intrinsics are normalized by the image size (cx = cy = 0.5 for a centred principal point);
- the label c is concat(cam2world.flatten() [16], K.flatten() [9]), both row-major.

Everything is float32, as in the official code, and the operation order follows it so that
results agree to float32 rounding (the tests compare against the official code).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Optional, Union

import torch

Number = Union[int, float]
AngleLike = Union[Number, torch.Tensor]

# The scripts (gen_videos.py everywhere, gen_samples.py for one dead call) write 3.14/2 for the
# frontal angle, not pi/2. It puts the camera ~1e-3 off the z axis; use it to reproduce their c.
SCRIPT_HALF_PI = 3.14 / 2
HALF_PI = math.pi / 2


# ----------------------------------------------------------------------------- argument checks

def _check_number(fn: str, name: str, value, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{fn}: {name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{fn}: {name} must be finite, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{fn}: {name} must be > 0, got {value}")
    return value


def _check_float_tensor(fn: str, name: str, t) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{fn}: {name} must be a floating-point tensor, got {t.dtype}")
    return t


def _check_shape(fn: str, name: str, t: torch.Tensor, expected: str, ok: bool) -> None:
    if not ok:
        raise ValueError(f"{fn}: {name} must have shape {expected}, got {list(t.shape)}")


def _check_finite(fn: str, name: str, t: torch.Tensor) -> None:
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{fn}: {name} contains NaN or infinite values")


def _normalize(v: torch.Tensor) -> torch.Tensor:
    # No eps, as EG3D's math_utils.normalize_vecs: a zero vector gives NaN (caught by callers).
    return v / torch.linalg.vector_norm(v, dim=-1, keepdim=True)


# ----------------------------------------------------------------------------- intrinsics

def fov_to_intrinsics(fov_degrees: Number, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Normalized intrinsics [3,3] for a *diagonal* field of view of a unit-square image.

    Uses EG3D's constants exactly: 3.14159 for pi and 1.414 for sqrt(2), so 18.837 deg gives
    f = 4.26339 (the datasets use 4.2647) and 18 deg (gen_samples' click-truncated default) 4.46517.
    """
    fov = _check_number("fov_to_intrinsics", "fov_degrees", fov_degrees, positive=True)
    if fov >= 360:
        raise ValueError(f"fov_to_intrinsics: fov_degrees must be < 360, got {fov}")
    f = float(1 / (math.tan(fov * 3.14159 / 360) * 1.414))
    return torch.tensor([[f, 0.0, 0.5], [0.0, f, 0.5], [0.0, 0.0, 1.0]], device=device, dtype=dtype)


def focal_to_intrinsics(focal: Number, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Normalized intrinsics [3,3] with fx = fy = focal and cx = cy = 0.5 (how gen_videos builds them)."""
    f = _check_number("focal_to_intrinsics", "focal", focal, positive=True)
    return torch.tensor([[f, 0.0, 0.5], [0.0, f, 0.5], [0.0, 0.0, 1.0]], device=device, dtype=dtype)


# ----------------------------------------------------------------------------- poses

def create_cam2world_matrix(forward: torch.Tensor, origin: torch.Tensor) -> torch.Tensor:
    """OpenCV cam2world [B,4,4] for cameras at `origin` [B,3] looking along `forward` [B,3].

    Up is world (0,1,0) and there is no roll: right = -normalize(up x f), up' = normalize(f x right),
    rotation columns (right, up', f), translation `origin`. A forward parallel to the up axis has
    no defined roll and raises ValueError.
    """
    fn = "create_cam2world_matrix"
    _check_float_tensor(fn, "forward", forward)
    _check_float_tensor(fn, "origin", origin)
    _check_shape(fn, "forward", forward, "[B, 3]", forward.ndim == 2 and forward.shape[1] == 3)
    _check_shape(fn, "origin", origin, f"[{forward.shape[0]}, 3] (like forward)", origin.shape == forward.shape)
    if origin.device != forward.device:
        raise ValueError(f"{fn}: origin is on {origin.device} but forward is on {forward.device}")
    forward, origin = forward.float(), origin.float()
    f = _normalize(forward)
    up = torch.tensor([0.0, 1.0, 0.0], device=f.device).expand_as(f)
    right = -_normalize(torch.linalg.cross(up, f, dim=-1))
    up = _normalize(torch.linalg.cross(f, right, dim=-1))
    cam2world = torch.eye(4, device=f.device).repeat(f.shape[0], 1, 1)
    cam2world[:, :3, :3] = torch.stack((right, up, f), dim=-1)
    cam2world[:, :3, 3] = origin  # EG3D's translation @ rotation equals this exactly
    if not bool(torch.isfinite(cam2world).all()):
        raise ValueError(f"{fn}: a forward vector is zero, non-finite or parallel to the up axis (0,1,0)")
    return cam2world


def _as_column(fn: str, name: str, value: AngleLike, device) -> torch.Tensor:
    """A float or a [B] (or 0-d) tensor as a float32 column [B,1]."""
    if isinstance(value, torch.Tensor):
        _check_float_tensor(fn, name, value)
        _check_shape(fn, name, value, "[B] or a scalar", value.ndim <= 1)
        return value.to(device=device, dtype=torch.float32).reshape(-1, 1)
    return torch.tensor([[_check_number(fn, name, value)]], device=device)


def _as_lookat(fn: str, lookat, device) -> torch.Tensor:
    if isinstance(lookat, torch.Tensor):
        if lookat.dtype == torch.bool or lookat.is_complex():
            raise TypeError(f"{fn}: lookat must be a real tensor, got {lookat.dtype}")
        t = lookat.to(device=device, dtype=torch.float32)
    else:
        try:
            t = torch.tensor([float(x) for x in lookat], device=device)
        except (TypeError, ValueError):
            raise TypeError(f"{fn}: lookat must be 3 numbers or a tensor [3] or [B,3], got {lookat!r}") from None
    _check_shape(fn, "lookat", t, "[3] or [B, 3]", t.ndim in (1, 2) and t.shape[-1] == 3)
    _check_finite(fn, "lookat", t)
    return t


def _orbit(h: torch.Tensor, v: torch.Tensor, lookat: torch.Tensor, radius) -> torch.Tensor:
    """EG3D's look-at construction from yaw h and polar angle v, both [B,1] float32."""
    # The pitch map phi = arccos(1 - 2v/pi) is nonlinear (uniform on the sphere); identity at v = pi/2.
    v = torch.clamp(v, 1e-5, math.pi - 1e-5)
    phi = torch.arccos(1 - 2 * (v / math.pi))
    theta = h
    origin = torch.cat([radius * torch.sin(phi) * torch.cos(math.pi - theta),
                        radius * torch.cos(phi),
                        radius * torch.sin(phi) * torch.sin(math.pi - theta)], dim=1)
    # The camera orbits the world origin but looks at `lookat` (the pivot), as in the official code.
    forward = _normalize(lookat - origin)
    return create_cam2world_matrix(forward, origin)


def _as_radius(fn: str, radius, device):
    if isinstance(radius, torch.Tensor):
        _check_float_tensor(fn, "radius", radius)
        _check_shape(fn, "radius", radius, "[B] or a scalar", radius.ndim <= 1)
        _check_finite(fn, "radius", radius)
        if not bool((radius > 0).all()):
            raise ValueError(f"{fn}: radius must be > 0")
        return radius.to(device=device, dtype=torch.float32).reshape(-1, 1)
    return _check_number(fn, "radius", radius, positive=True)


def look_at_poses(horizontal: AngleLike, vertical: AngleLike, lookat, radius=1.0, device=None) -> torch.Tensor:
    """Deterministic EG3D look-at poses: cam2world [B,4,4] (float32).

    horizontal: yaw theta in radians (pi/2 faces the camera down -z from +z);
    vertical: polar angle from +y in radians (pi/2 is level; larger puts the camera lower);
    both floats or tensors [B] (broadcast against each other). lookat: 3 numbers, [3] or [B,3].
    The camera sits at radius * (sin(phi) cos(pi - theta), cos(phi), sin(phi) sin(pi - theta)) with
    phi = arccos(1 - 2 v / pi), v clamped to [1e-5, pi - 1e-5].
    For h = v = pi/2, radius 2.7: origin (0,0,2.7) and rotation diag(1,-1,-1).
    """
    fn = "look_at_poses"
    if device is None:
        device = next((t.device for t in (horizontal, vertical, lookat) if isinstance(t, torch.Tensor)), None)
    h = _as_column(fn, "horizontal", horizontal, device)
    v = _as_column(fn, "vertical", vertical, device)
    _check_finite(fn, "horizontal", h)
    _check_finite(fn, "vertical", v)
    look = _as_lookat(fn, lookat, device)
    r = _as_radius(fn, radius, device)
    # Every batched argument has B rows (or one, broadcast).
    sizes = {"horizontal": h.shape[0], "vertical": v.shape[0], "lookat": look.shape[0] if look.ndim == 2 else 1,
             "radius": r.shape[0] if isinstance(r, torch.Tensor) else 1}
    batch = max(sizes.values())
    for name, size in sizes.items():
        if size not in (1, batch):
            raise ValueError(f"{fn}: {name} has {size} rows but another argument has {batch} "
                             f"({', '.join(f'{k}={n}' for k, n in sizes.items())})")
    return _orbit(h.expand(batch, 1), v.expand(batch, 1), look, r)


def sample_look_at_poses(horizontal_mean: Number, vertical_mean: Number, lookat, horizontal_stddev: Number = 0,
                         vertical_stddev: Number = 0, radius: Number = 1, batch_size: int = 1,
                         generator: Optional[torch.Generator] = None, device=None) -> torch.Tensor:
    """EG3D's LookAtPoseSampler.sample: h ~ N(h_mean, h_std), v ~ N(v_mean, v_std), then look_at_poses.

    RNG use matches the official sampler: always two randn((batch_size, 1)) calls, h first, even
    with zero stddev. With generator=None they come from torch's default generator of `device`
    (exactly what the official code consumes); a torch.Generator seeded with s gives the same draws
    as torch.manual_seed(s) on CPU.
    """
    fn = "sample_look_at_poses"
    h_mean = _check_number(fn, "horizontal_mean", horizontal_mean)
    v_mean = _check_number(fn, "vertical_mean", vertical_mean)
    h_std = _check_number(fn, "horizontal_stddev", horizontal_stddev)
    v_std = _check_number(fn, "vertical_stddev", vertical_stddev)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"{fn}: batch_size must be a positive int, got {batch_size!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"{fn}: generator must be a torch.Generator or None, got {type(generator).__name__}")
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    h = torch.randn((batch_size, 1), generator=generator, device=device) * h_std + h_mean
    v = torch.randn((batch_size, 1), generator=generator, device=device) * v_std + v_mean
    r = _check_number(fn, "radius", radius, positive=True)
    return _orbit(h, v, _as_lookat(fn, lookat, device), r)


# ----------------------------------------------------------------------------- the 25-dim label

def camera_label(cam2world: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """c [B,25] = concat(cam2world [B,4,4] flattened, intrinsics [3,3] or [B,3,3] flattened), in cam2world's dtype."""
    fn = "camera_label"
    _check_float_tensor(fn, "cam2world", cam2world)
    _check_float_tensor(fn, "intrinsics", intrinsics)
    _check_shape(fn, "cam2world", cam2world, "[B, 4, 4]", cam2world.ndim == 3 and cam2world.shape[1:] == (4, 4))
    batch = cam2world.shape[0]
    _check_shape(fn, "intrinsics", intrinsics, f"[3, 3] or [{batch}, 3, 3]",
                 intrinsics.shape == (3, 3) or (intrinsics.ndim == 3 and intrinsics.shape == (batch, 3, 3)))
    if intrinsics.device != cam2world.device:
        raise ValueError(f"{fn}: intrinsics is on {intrinsics.device} but cam2world is on {cam2world.device}")
    _check_finite(fn, "cam2world", cam2world)
    _check_finite(fn, "intrinsics", intrinsics)
    k = intrinsics.to(cam2world.dtype).reshape(-1, 9).expand(batch, 9)
    return torch.cat([cam2world.reshape(batch, 16), k], dim=1)


def split_camera_label(c: torch.Tensor):
    """(cam2world [B,4,4], intrinsics [B,3,3]) from a label c [B,25]; the inverse of camera_label."""
    fn = "split_camera_label"
    _check_float_tensor(fn, "c", c)
    _check_shape(fn, "c", c, "[B, 25]", c.ndim == 2 and c.shape[1] == 25)
    _check_finite(fn, "c", c)
    return c[:, :16].reshape(-1, 4, 4), c[:, 16:].reshape(-1, 3, 3)


# ----------------------------------------------------------------------------- per-dataset defaults

@dataclass(frozen=True)
class DatasetCamera:
    """Camera defaults of an EG3D config: the orbit radius and pivot the scripts use
    (rendering_kwargs avg_camera_radius / avg_camera_pivot), the normalized focal length of the
    dataset labels (gen_videos' constants) and the tri-plane box side (box_warp)."""
    name: str
    radius: float
    pivot: tuple
    focal: float
    box_warp: float


DATASET_CAMERAS = MappingProxyType({
    "ffhq": DatasetCamera("ffhq", 2.7, (0.0, 0.0, 0.2), 4.2647, 1.0),
    "afhq": DatasetCamera("afhq", 2.7, (0.0, 0.0, -0.06), 4.2647, 1.0),
    "shapenet": DatasetCamera("shapenet", 1.7, (0.0, 0.0, 0.0), 1.7074, 1.6),
})


def dataset_camera(dataset: Union[str, DatasetCamera]) -> DatasetCamera:
    """The DatasetCamera for a name ('ffhq', 'afhq', 'shapenet', any case), or `dataset` itself."""
    if isinstance(dataset, DatasetCamera):
        return dataset
    if not isinstance(dataset, str) or dataset.lower() not in DATASET_CAMERAS:
        raise ValueError(f"dataset must be one of {sorted(DATASET_CAMERAS)} or a DatasetCamera, got {dataset!r}")
    return DATASET_CAMERAS[dataset.lower()]


def frontal_camera(dataset: Union[str, DatasetCamera], batch_size: int = 1, yaw: AngleLike = 0.0,
                   pitch: AngleLike = 0.0, exact_scripts: bool = True, focal: Optional[Number] = None,
                   device=None) -> torch.Tensor:
    """The label c [B,25] of the scripts' orbit camera: look_at_poses(half + yaw, half + pitch, pivot, radius)
    with fx = fy = focal (the dataset's by default) and cx = cy = 0.5.

    exact_scripts=True uses half = 3.14/2, as gen_videos.py does for its conditioning camera and every
    frame (so yaw = pitch = 0 is its conditioning c); False uses pi/2, as gen_samples.py does
    (its render views are yaw in {0.4, 0, -0.4} with pitch -0.2, and its focal is
    fov_to_intrinsics(18)[0, 0] because of the int-typed --fov-deg option).
    Positive pitch moves the camera down (towards -y). yaw/pitch may be floats or tensors [B];
    with tensors, batch_size must be 1 or B.
    """
    fn = "frontal_camera"
    cam = dataset_camera(dataset)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"{fn}: batch_size must be a positive int, got {batch_size!r}")
    half = SCRIPT_HALF_PI if exact_scripts else HALF_PI

    def angle(name, offset):
        # Python floats are added in double, as the scripts do, before the float32 cast.
        if isinstance(offset, torch.Tensor):
            return half + _as_column(fn, name, offset, device).reshape(-1)
        return half + _check_number(fn, name, offset)

    pose = look_at_poses(angle("yaw", yaw), angle("pitch", pitch), cam.pivot, cam.radius, device=device)
    if pose.shape[0] not in (1, batch_size) and batch_size != 1:
        raise ValueError(f"{fn}: yaw/pitch give {pose.shape[0]} views but batch_size is {batch_size}")
    pose = pose.expand(max(batch_size, pose.shape[0]), 4, 4)
    f = cam.focal if focal is None else _check_number(fn, "focal", focal, positive=True)
    return camera_label(pose, focal_to_intrinsics(f, device=pose.device))
