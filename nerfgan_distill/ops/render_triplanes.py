"""render_triplanes: EG3D's ImportanceRenderer (coarse stratified pass, importance
sampling, fine pass, compositing) over tri-plane features and the OSG decoder.

On the cpu, cuda and triton backends, for inference (no input requires grad, or grad
mode is off) within the fused kernels' bounds (fused_max_samples() samples per ray; on
CUDA and Triton also at most 128 plane channels and decoder outputs), it runs the fused
kernel: one pass per ray with no per-sample tensors. Otherwise it runs the composable path
(render_triplanes_ref: sample_triplanes -> decoder -> composite_rays ->
importance_depths -> ...), which is also the reference of the fused kernels.

The two draw their random numbers differently: the composable path draws the jitter
and the importance uniforms with torch in EG3D's order; the fused kernel draws one
seed from the generator and derives each ray's numbers from (seed, ray, sample) with
Philox4x32-10. Deterministic mode (EG3D's det=True) is the same on both.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import List, Optional, Union

import torch

from ..dispatch import resolve
from ..kernel_codes import RENDER_CUDA_MAX_CHANNELS, RENDER_CUDA_MAX_OUTPUTS, RENDER_MAX_SAMPLES
from ._common import (check_finite_number, check_float_tensor, check_same_device_dtype, compute_dtype, device_context,
                      empty_output, run_native)
from .importance_depths import importance_uniforms
from .render_triplanes_ref import TriplaneDecoder, ray_box_limits, render_triplanes_composable
from .sample_triplanes import check_plane_axes, check_planes, gather_friendly, plane_fields
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
        if self.depth_resolution_importance > 0 and self.depth_resolution < 4:
            raise ValueError(f"{op}: depth_resolution must be >= 4 with depth_resolution_importance > 0 (EG3D's "
                             f"sample_pdf draws from the D - 3 inner coarse weights), got {self.depth_resolution}")
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
        check_plane_axes(op, self.plane_axes)

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
    check_planes(op, planes)
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
    for name, rays in (("ray_origins", origins), ("ray_directions", directions)):
        _check_finite_tensor(op, name, rays)
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


def _check_finite_tensor(op, name, t):
    """A NaN or inf ray would poison EG3D's batch-wide depth clamp (every depth NaN), so refuse it."""
    # torch._check_value rather than `if`: torch.compile keeps it as a runtime check, no graph break.
    torch._check_value(bool(torch.isfinite(t).all()), lambda: f"{op}: {name} must be finite (it has NaN or inf)")


def render_triplanes(planes: torch.Tensor, decoder: TriplaneDecoder, ray_origins: torch.Tensor,
                     ray_directions: torch.Tensor, options: RenderOptions, deterministic: bool = False,
                     generator: Optional[torch.Generator] = None, backend: str = "auto"):
    """Render rays through tri-planes as EG3D's ImportanceRenderer does.

    Args:
        planes: [N, 3, C, H, W] plane features (plane-major, as EG3D views its 96 channels).
        decoder: the OSG decoder's weights, gains applied (TriplaneDecoder.from_eg3d).
        ray_origins, ray_directions: [N, R, 3], finite (float32; float64 with float64 planes).
        options: RenderOptions.
        deterministic: coarse samples at the start of each stratified bin and importance
            uniforms linspace(0, 1, Di) (EG3D's det=True); else random from `generator`
            (the composable path draws every number from it; the fused kernel draws one seed).
        generator: torch.Generator on the planes' device, or None for torch's default one.
        backend: 'auto', 'cuda', 'triton', 'cpu' or 'torch'. On 'cpu', 'cuda' and 'triton',
            inference calls with at most fused_max_samples() samples per ray run the fused kernel.

    Returns:
        (features [N, R, C_out] in EG3D's [-1, 1] convention, depth [N, R, 1], weight total [N, R, 1]),
        in the rays' dtype (fp16/bf16 planes are read as float32 by the fused kernel).
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
    if _fused_applies(name, planes, decoder, ray_origins, ray_directions, options):
        seed = None if deterministic else _draw_seed(generator, planes.device)
        return torch.ops.nerfgan_distill.render_triplanes(
            planes, *decoder.tensors, ray_origins, ray_directions, seed, options.depth_resolution,
            options.depth_resolution_importance, *_depth_range(options), options.box_warp, options.white_back,
            options.disparity_space_sampling, _axes(options), name)
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


# --- fused kernel ----------------------------------------------------------------------------

@torch.compiler.assume_constant_result
def fused_max_samples() -> int:
    """The most samples per ray (coarse + fine) the fused kernels render; more go the composable way."""
    return RENDER_MAX_SAMPLES


@torch.compiler.assume_constant_result
def _cuda_max_widths() -> tuple[int, int]:
    """The CUDA kernel's per-thread bounds: plane channels, decoder outputs (1 + C_out)."""
    return RENDER_CUDA_MAX_CHANNELS, RENDER_CUDA_MAX_OUTPUTS


def _triton_bounds() -> tuple[int, int, int]:
    """The Triton kernel's bounds: samples per ray, plane channels, decoder outputs (1 + C_out)."""
    from ..triton_kernels import render_triplanes as kernels

    return kernels.MAX_SAMPLES, kernels.MAX_CHANNELS, kernels.MAX_OUTPUTS


def _fused_applies(backend, planes, decoder, origins, directions, options) -> bool:
    """Whether the fused kernel renders this call: a fused backend, no gradient to carry,
    and sizes within the kernel's bounds."""
    if backend not in ("cpu", "cuda", "triton"):
        return False
    tensors = (planes, origins, directions, *decoder.tensors)
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return False
    if backend == "triton":
        max_samples, max_channels, max_outputs = _triton_bounds()
        return (options.samples_per_ray <= max_samples and planes.shape[2] <= max_channels
                and decoder.fc2_weight.shape[0] <= max_outputs)
    if backend == "cuda":
        max_channels, max_outputs = _cuda_max_widths()
        if planes.shape[2] > max_channels or decoder.fc2_weight.shape[0] > max_outputs:
            return False
    return options.samples_per_ray <= fused_max_samples()


def _draw_seed(generator, device) -> torch.Tensor:
    """The stochastic mode's one draw from the generator: a 62-bit Philox seed."""
    device = generator.device if generator is not None else device
    return torch.randint(0, 2 ** 62, (1,), generator=generator, device=device, dtype=torch.int64)


def _depth_range(options) -> tuple[float, float, bool]:
    """(ray_start, ray_end, auto_limits) as the kernels take them."""
    if options.ray_start == "auto":
        return 0.0, 0.0, True
    return float(options.ray_start), float(options.ray_end), False


def _axes(options) -> List[int]:
    return [a for pair in PLANE_AXES[options.plane_axes] for a in pair]


def _fused_outputs(fc2_weight, origins):
    """(rgb [N, R, C_out], depth [N, R, 1], weight total [N, R, 1]) in the rays' dtype."""
    n, r, _ = origins.shape
    return (empty_output(origins, [n, r, fc2_weight.shape[0] - 1]), empty_output(origins, [n, r, 1]),
            empty_output(origins, [n, r, 1]))


def _fused_forward(planes, fc1_weight, fc1_bias, fc2_weight, fc2_bias, origins, directions, seed, depth_resolution,
                   depth_resolution_importance, ray_start, ray_end, auto_limits, box_warp, white_back, disparity, axes,
                   backend, pointwise=False):
    """The fused kernel's launch; pointwise=True runs the CPU kernel the CUDA kernel's way (tests)."""
    rgb, depth, weight_total = _fused_outputs(fc2_weight, origins)
    if depth.numel() == 0:
        return rgb, depth, weight_total
    n, r, _ = origins.shape
    planes = gather_friendly(planes, n * r * (depth_resolution + depth_resolution_importance))
    if backend == "triton":
        _triton_forward(planes, fc1_weight, fc1_bias, fc2_weight, fc2_bias, origins, directions, seed,
                        depth_resolution, depth_resolution_importance, ray_start, ray_end, auto_limits, box_warp,
                        white_back, disparity, axes, rgb, depth, weight_total)
        return rgb, depth, weight_total
    # The kernels read each layer's weight transposed ([in, out]): a sample's outputs are contiguous.
    fc1_wt, fc2_wt = fc1_weight.t().contiguous(), fc2_weight.t().contiguous()
    inputs = [t.contiguous() for t in (origins, directions, fc1_bias, fc2_bias)]
    # CUDA: each ray's depth range and the 'auto' fallback, for the batch-wide steps.
    scratch = torch.empty(n * r * 2 + 3, dtype=origins.dtype, device=origins.device) if backend == "cuda" else None
    run_native("render_triplanes_forward", backend, planes.device, "RenderTriplanesParams",
               planes=plane_fields(planes, 0, box_warp, axes), origins=inputs[0], directions=inputs[1],
               fc1_wt=fc1_wt, fc1_bias=inputs[2], fc2_wt=fc2_wt, fc2_bias=inputs[3], rgb=rgb, depth=depth,
               weight_total=weight_total, scratch=scratch, rays=r, hidden=fc1_weight.shape[0],
               outputs=fc2_weight.shape[0], coarse=depth_resolution, fine=depth_resolution_importance,
               auto_limits=auto_limits, disparity=disparity, white_back=white_back, ray_start=ray_start,
               ray_end=ray_end, box_side=box_warp, stochastic=seed is not None,
               seed=0 if seed is None else int(seed.item()), pointwise=pointwise)
    return rgb, depth, weight_total


def _auto_spans(origins, directions, box_warp):
    """[N * R, 2]: each ray's coarse depth range for 'auto', EG3D's get_ray_limits_box with the
    misses given the range of the hits' starts (render_triplanes.h's ray_span; the reference's code)."""
    start, end = ray_box_limits(origins, directions, box_warp)
    valid = end > start
    inf = torch.full_like(start, float("inf"))
    lo = torch.where(valid, start, inf).amin()
    hi = torch.where(valid, start, -inf).amax()
    any_hit = valid.any()
    start_all = torch.where(valid | ~any_hit, start, lo)
    end_all = torch.where(valid | ~any_hit, end, hi)
    return torch.cat([start_all, end_all], dim=-1).reshape(-1, 2).contiguous()


def _triton_forward(planes, fc1_weight, fc1_bias, fc2_weight, fc2_bias, origins, directions, seed,
                    depth_resolution, depth_resolution_importance, ray_start, ray_end, auto_limits, box_warp,
                    white_back, disparity, axes, rgb, depth, weight_total):
    """The Triton kernel with the batch-wide steps around it, in torch over per-ray values:
    the 'auto' spans before it, the clamp of the depths to the batch's depth range after it."""
    from ..triton_kernels import render_triplanes as kernels

    n, r, _ = origins.shape
    origins, directions = origins.contiguous(), directions.contiguous()
    spans = _auto_spans(origins, directions, box_warp) if auto_limits else origins
    ranges = torch.empty(n * r, 2, dtype=origins.dtype, device=origins.device)
    with device_context(planes.device):
        kernels.forward(planes, fc1_weight.contiguous(), fc1_bias.contiguous(), fc2_weight.t().contiguous(),
                        fc2_bias.contiguous(), origins, directions, spans, seed, rgb, depth, weight_total, ranges,
                        depth_resolution, depth_resolution_importance, ray_start, ray_end, box_warp, white_back,
                        disparity, auto_limits, axes)
    # EG3D's depth: 0/0 (a ray with no weight) becomes +inf; every depth is clamped to the range
    # of all depths in the batch (NaN wins, as in composite_rays.h's final_depth and the CUDA kernel).
    lo, hi = ranges[:, 0].amin(), ranges[:, 1].amax()
    raw = torch.where(torch.isnan(depth), torch.full_like(depth, float("inf")), depth)
    depth.copy_(torch.where(raw < lo, lo, torch.where(raw > hi, hi, raw)))


@torch.library.custom_op("nerfgan_distill::render_triplanes", mutates_args=())
def _render_triplanes_op(planes: torch.Tensor, fc1_weight: torch.Tensor, fc1_bias: torch.Tensor,
                         fc2_weight: torch.Tensor, fc2_bias: torch.Tensor, origins: torch.Tensor,
                         directions: torch.Tensor, seed: Optional[torch.Tensor], depth_resolution: int,
                         depth_resolution_importance: int, ray_start: float, ray_end: float, auto_limits: bool,
                         box_warp: float, white_back: bool, disparity: bool, axes: List[int],
                         backend: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _fused_forward(planes, fc1_weight, fc1_bias, fc2_weight, fc2_bias, origins, directions, seed,
                          depth_resolution, depth_resolution_importance, ray_start, ray_end, auto_limits, box_warp,
                          white_back, disparity, axes, backend)


@_render_triplanes_op.register_fake
def _(planes, fc1_weight, fc1_bias, fc2_weight, fc2_bias, origins, directions, seed, depth_resolution,
      depth_resolution_importance, ray_start, ray_end, auto_limits, box_warp, white_back, disparity, axes, backend):
    return _fused_outputs(fc2_weight, origins)
