"""render_triplanes: EG3D's ImportanceRenderer (coarse stratified pass, importance
sampling, fine pass, compositing) over tri-plane features and the OSG decoder.

With gradients needed, or with backend='torch', it runs the composable path
(render_triplanes_ref: sample_triplanes -> decoder -> composite_rays ->
importance_depths -> ...), which is also the reference of the fused kernels.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Union

import torch

from ..dispatch import resolve
from ._common import check_finite_number, check_float_tensor, check_same_device_dtype, compute_dtype
from .importance_depths import importance_uniforms
from .render_triplanes_ref import TriplaneDecoder, render_triplanes_composable
from .sample_triplanes_ref import PLANE_AXES

__all__ = ["render_triplanes", "RenderOptions", "TriplaneDecoder"]


@dataclass(frozen=True)
class RenderOptions:
    """What EG3D's rendering_kwargs say about rendering (see RenderOptions.from_eg3d)."""

    depth_resolution: int
    depth_resolution_importance: int
    ray_start: Union[float, str]  # a depth, or 'auto' (with ray_end 'auto') for the ray-box intersection
    ray_end: Union[float, str]
    box_warp: float = 1.0
    white_back: bool = False
    disparity_space_sampling: bool = False
    clamp_mode: str = "softplus"
    plane_axes: str = "eg3d"

    def __post_init__(self):
        op = "RenderOptions"
        for name in ("depth_resolution", "depth_resolution_importance"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{op}: {name} must be an int >= 0, got {value!r}")
        if self.depth_resolution < 2:
            raise ValueError(f"{op}: depth_resolution must be >= 2, got {self.depth_resolution}")
        auto = (self.ray_start == "auto", self.ray_end == "auto")
        if auto == (True, True):
            if self.disparity_space_sampling:
                raise ValueError(f"{op}: disparity_space_sampling needs numeric ray_start and ray_end, not 'auto'")
        elif any(auto):
            raise ValueError(f"{op}: ray_start and ray_end must both be 'auto' or both numbers, "
                             f"got {self.ray_start!r} and {self.ray_end!r}")
        else:
            object.__setattr__(self, "ray_start", check_finite_number(op, "ray_start", self.ray_start))
            object.__setattr__(self, "ray_end", check_finite_number(op, "ray_end", self.ray_end))
            if not self.ray_end > self.ray_start:
                raise ValueError(f"{op}: ray_end must be > ray_start, got {self.ray_start} and {self.ray_end}")
            if self.disparity_space_sampling and self.ray_start <= 0:
                raise ValueError(f"{op}: disparity_space_sampling needs ray_start > 0, got {self.ray_start}")
        box_warp = check_finite_number(op, "box_warp", self.box_warp)
        if box_warp <= 0:
            raise ValueError(f"{op}: box_warp must be > 0, got {box_warp}")
        object.__setattr__(self, "box_warp", box_warp)
        for name in ("white_back", "disparity_space_sampling"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{op}: {name} must be a bool, got {getattr(self, name)!r}")
        if self.clamp_mode != "softplus":
            raise ValueError(f"{op}: clamp_mode must be 'softplus' (the only mode EG3D's ray marcher has), "
                             f"got {self.clamp_mode!r}")
        if self.plane_axes not in PLANE_AXES:
            raise ValueError(f"{op}: plane_axes must be one of {sorted(PLANE_AXES)}, got {self.plane_axes!r}")

    @classmethod
    def from_eg3d(cls, rendering_kwargs: dict) -> "RenderOptions":
        """From an EG3D generator's rendering_kwargs (keys it does not render with, such as
        the super-resolution settings, are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        if rendering_kwargs.get("density_noise", 0) not in (0, 0.0, None):
            raise ValueError("RenderOptions.from_eg3d: density_noise > 0 (a training-time option) is not supported")
        return cls(**{k: v for k, v in rendering_kwargs.items() if k in names})

    @property
    def samples_per_ray(self) -> int:
        return self.depth_resolution + self.depth_resolution_importance


def _check_inputs(op, planes, decoder, origins, directions, options):
    check_float_tensor(op, "planes", planes)
    if planes.ndim != 5 or planes.shape[1] != 3:
        raise ValueError(f"{op}: planes must be [N, 3, C, H, W], got shape {list(planes.shape)}")
    if not isinstance(decoder, TriplaneDecoder):
        raise TypeError(f"{op}: decoder must be a TriplaneDecoder, got {type(decoder).__name__}")
    if not isinstance(options, RenderOptions):
        raise TypeError(f"{op}: options must be a RenderOptions (RenderOptions.from_eg3d(kwargs) "
                        f"converts EG3D's rendering_kwargs), got {type(options).__name__}")
    n, _, c = planes.shape[:3]
    for name, rays in (("ray_origins", origins), ("ray_directions", directions)):
        check_float_tensor(op, name, rays)
        if rays.ndim != 3 or rays.shape[0] != n or rays.shape[2] != 3:
            raise ValueError(f"{op}: {name} must be [N, R, 3] with N = {n} (planes), got {list(rays.shape)}")
    if directions.shape != origins.shape:
        raise ValueError(f"{op}: ray_directions {list(directions.shape)} and ray_origins {list(origins.shape)} differ")
    check_same_device_dtype(op, "ray_directions", directions, "ray_origins", origins)
    if origins.device != planes.device:
        raise ValueError(f"{op}: ray_origins is on {origins.device} but planes is on {planes.device}")
    if origins.dtype != compute_dtype(planes.dtype):
        raise TypeError(f"{op}: rays must be float32 (float64 with float64 planes), got {origins.dtype}")
    shapes = {"fc1_weight": 2, "fc1_bias": 1, "fc2_weight": 2, "fc2_bias": 1}
    for name, ndim in shapes.items():
        t = getattr(decoder, name)
        check_float_tensor(op, f"decoder.{name}", t)
        if t.ndim != ndim:
            raise ValueError(f"{op}: decoder.{name} must have {ndim} dims, got {list(t.shape)}")
        check_same_device_dtype(op, f"decoder.{name}", t, "ray_origins", origins)
    hidden = decoder.fc1_weight.shape[0]
    if (decoder.fc1_weight.shape[1] != c or decoder.fc1_bias.shape[0] != hidden
            or decoder.fc2_weight.shape[1] != hidden or decoder.fc2_weight.shape[0] < 2
            or decoder.fc2_bias.shape[0] != decoder.fc2_weight.shape[0]):
        raise ValueError(f"{op}: decoder shapes do not chain for {c} plane channels: fc1 "
                         f"{list(decoder.fc1_weight.shape)} + {list(decoder.fc1_bias.shape)}, fc2 "
                         f"{list(decoder.fc2_weight.shape)} + {list(decoder.fc2_bias.shape)}")


def render_triplanes(planes: torch.Tensor, decoder: TriplaneDecoder, ray_origins: torch.Tensor,
                     ray_directions: torch.Tensor, options: RenderOptions, deterministic: bool = False,
                     generator: Optional[torch.Generator] = None, backend: str = "auto"):
    """Render rays through tri-planes as EG3D's ImportanceRenderer does.

    Args:
        planes: [N, 3, C, H, W] plane features (plane-major, as EG3D views its 96 channels).
        decoder: the OSG decoder's weights, gains applied (TriplaneDecoder.from_eg3d).
        ray_origins, ray_directions: [N, R, 3] (float32; float64 with float64 planes).
        options: RenderOptions.
        deterministic: coarse samples at the start of each stratified bin and importance
            uniforms linspace(0, 1, Di) (EG3D's det=True); else random from `generator`.
        backend: 'auto', 'cuda', 'triton', 'cpu' or 'torch'.

    Returns:
        (features [N, R, C_out] in EG3D's [-1, 1] convention, depth [N, R, 1], weight total [N, R, 1]).
    """
    op = "render_triplanes"
    _check_inputs(op, planes, decoder, ray_origins, ray_directions, options)
    if not isinstance(deterministic, bool):
        raise TypeError(f"{op}: deterministic must be a bool, got {deterministic!r}")
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"{op}: generator must be a torch.Generator or None, got {type(generator).__name__}")
        if generator.device.type != planes.device.type:
            raise ValueError(f"{op}: generator is on {generator.device} but planes is on {planes.device}")
    name = resolve(backend, planes.device)
    n, r, _ = ray_origins.shape
    d, di = options.depth_resolution, options.depth_resolution_importance
    # The random numbers are drawn in EG3D's order: the coarse jitter, then sample_pdf's uniforms.
    if deterministic:
        jitter = ray_origins.new_zeros(n, r, d, 1)
    else:
        jitter = torch.rand(n, r, d, 1, generator=generator, dtype=ray_origins.dtype, device=ray_origins.device)
    uniforms = importance_uniforms(n * r, di, deterministic, generator, ray_origins) if di > 0 else None
    return render_triplanes_composable(planes, decoder, ray_origins, ray_directions, options, jitter, uniforms,
                                       backend=name)
