"""sample_triplanes: bilinear features of 3D points from three axis-aligned feature
planes, EG3D's sample_from_planes (coordinates scaled by 2/box_warp, zero padding,
align_corners=False).

The kernels run as custom ops: ``sample_triplanes`` for the forward and
``sample_triplanes_backward`` for the gradients to the planes and the coordinates.
Second-order gradients are not supported (the renderer's planes are never
differentiated twice); backend='torch' runs the grid_sample reference with autograd.
Coordinates and weights are fp32 even for fp16/bf16 planes (grid_sample in half
precision is visibly wrong), and the planes gradient is accumulated in fp32.
"""
from __future__ import annotations

from typing import List

import torch

from .. import _native
from ..dispatch import resolve
from ._common import (check_finite_number, check_float_tensor, compute_dtype, device_context, empty_output,
                      refuse_gradient, run_native)
from .sample_triplanes_ref import PLANE_AXES, sample_triplanes_ref

__all__ = ["sample_triplanes", "PLANE_AXES"]


def sample_triplanes(planes: torch.Tensor, coords: torch.Tensor, box_warp: float = 1.0,
                     plane_axes: str = "eg3d", backend: str = "auto") -> torch.Tensor:
    """Sample tri-plane features at 3D points.

    Args:
        planes: [N, 3, C, H, W], H and W >= 1 (any strides; channels-last planes, C with stride 1,
            gather fastest).
        coords: [N, M, 3] points; the box [-box_warp/2, box_warp/2]^3 maps onto the planes.
            Same dtype as planes, or float32 with fp16/bf16 planes.
        box_warp: the side of the box, > 0.
        plane_axes: 'eg3d' (XY, XZ, ZX: EG3D's checkpoints) or 'xyz' (XY, XZ, YZ).
        backend: 'auto', 'cuda', 'triton', 'cpu' or 'torch'.

    Returns:
        [N, 3, M, C] features in planes' dtype; 0 outside the box (infinite points too), NaN
        on the planes that read a NaN coordinate.
    """
    op = "sample_triplanes"
    check_planes(op, planes)
    check_float_tensor(op, "coords", coords)
    if coords.ndim != 3 or coords.shape[2] != 3:
        raise ValueError(f"{op}: coords must be [N, M, 3], got shape {list(coords.shape)}")
    if coords.shape[0] != planes.shape[0]:
        raise ValueError(f"{op}: coords has batch {coords.shape[0]} but planes has {planes.shape[0]}")
    if coords.device != planes.device:
        raise ValueError(f"{op}: coords is on {coords.device} but planes is on {planes.device}; "
                         "move them to the same device")
    if coords.dtype not in (planes.dtype, compute_dtype(planes.dtype)):
        raise TypeError(f"{op}: coords must be {planes.dtype} (or float32 with half-precision planes), "
                        f"got {coords.dtype}")
    box_warp = check_finite_number(op, "box_warp", box_warp)
    if box_warp <= 0:
        raise ValueError(f"{op}: box_warp must be > 0, got {box_warp}")
    check_plane_axes(op, plane_axes)
    name = resolve(backend, planes.device)
    if name == "torch":
        return sample_triplanes_ref(planes, coords, box_warp, plane_axes)
    axes = [a for pair in PLANE_AXES[plane_axes] for a in pair]
    return torch.ops.nerfgan_distill.sample_triplanes(planes, coords, box_warp, axes, name)


def check_planes(op: str, planes) -> None:
    """planes: a float [N, 3, C, H, W] tensor with at least one texel per plane (bilinear sampling
    of an empty plane is undefined: grid_sample and the native kernels refuse it)."""
    check_float_tensor(op, "planes", planes)
    if planes.ndim != 5 or planes.shape[1] != 3:
        raise ValueError(f"{op}: planes must be [N, 3, C, H, W], got shape {list(planes.shape)}")
    if planes.shape[3] < 1 or planes.shape[4] < 1:
        raise ValueError(f"{op}: planes must have H >= 1 and W >= 1, got shape {list(planes.shape)}")


def check_plane_axes(op: str, plane_axes) -> None:
    # The str check comes first: `in PLANE_AXES` hashes its operand (a list raises TypeError).
    if not isinstance(plane_axes, str):
        raise TypeError(f"{op}: plane_axes must be a str, one of {sorted(PLANE_AXES)}, got {plane_axes!r}")
    if plane_axes not in PLANE_AXES:
        raise ValueError(f"{op}: plane_axes must be one of {sorted(PLANE_AXES)}, got {plane_axes!r}")


# --- kernels ---------------------------------------------------------------------------------

def _output_shape(planes, coords) -> list[int]:
    n, p, c = planes.shape[:3]
    return [n, p, coords.shape[1], c]


def _kernel_coords(coords: torch.Tensor, planes: torch.Tensor) -> torch.Tensor:
    return coords.to(compute_dtype(planes.dtype)).contiguous()


def plane_fields(planes: torch.Tensor, points: int, box_warp: float, axes) -> dict:
    """The native kernels' plane geometry (SampleTriplanesParams' fields) for `points` points
    per batch item; axes: grid x, grid y of each plane, flat."""
    n, _, c, h, w = planes.shape
    sp_n, sp_p, sp_c, sp_h, sp_w = planes.stride()
    return dict(planes=planes, n=n, m=points, c=c, h=h, w=w, sp_n=sp_n, sp_p=sp_p, sp_c=sp_c, sp_h=sp_h, sp_w=sp_w,
                axis_x=list(axes[0::2]), axis_y=list(axes[1::2]), scale=2.0 / box_warp,
                dtype=_native.DTYPE_CODES[planes.dtype])


def gather_friendly(planes: torch.Tensor, samples: int) -> torch.Tensor:
    """planes with channels-last strides when that pays for `samples` points (over the batch):
    a point reads 4 texels x C channels on each plane, contiguous when channels are, else C
    cache lines apart. Once the reads are at least twice the planes' values, one copy is
    cheaper than strided gathers (on 2 CPU cores, EG3D's 3x32x256x256 planes and 196k points:
    35 ms plus the copy against 84 ms in place)."""
    if planes.stride(2) == 1 or samples * 12 * planes.shape[2] < 2 * planes.numel():
        return planes
    return planes.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)


def _forward(planes, coords, box_warp, axes, backend) -> torch.Tensor:
    out = empty_output(planes, _output_shape(planes, coords))
    if out.numel() == 0:
        return out
    planes = gather_friendly(planes, coords.shape[0] * coords.shape[1])
    coords = _kernel_coords(coords, planes)
    if backend == "triton":
        from ..triton_kernels import sample_triplanes as kernels

        with device_context(planes.device):
            kernels.forward(planes, coords, out, 2.0 / box_warp, axes)
        return out
    run_native("sample_triplanes_forward", backend, planes.device, "SampleTriplanesParams",
               **plane_fields(planes, coords.shape[1], box_warp, axes), coords=coords, out=out)
    return out


def _backward(grad_out, planes, coords, box_warp, axes, need_planes, need_coords, backend):
    kernel_coords = _kernel_coords(coords, planes)
    # The planes gradient is scattered (a texel gathers from every point near it), so it
    # is accumulated in a zeroed buffer in compute precision, laid out like the planes.
    grad_planes = torch.zeros_like(planes, dtype=kernel_coords.dtype) if need_planes else None
    grad_coords = empty_output(kernel_coords) if need_coords else None
    if grad_out.numel() == 0:
        if grad_coords is not None:
            grad_coords.zero_()
    elif need_planes or need_coords:
        grad_out = grad_out.to(planes.dtype).contiguous()
        if backend == "triton":
            from ..triton_kernels import sample_triplanes as kernels

            with device_context(planes.device):
                kernels.backward(grad_out, planes, kernel_coords, 2.0 / box_warp, axes, grad_planes, grad_coords)
        else:
            sg_n, sg_p, sg_c, sg_h, sg_w = grad_planes.stride() if need_planes else (0,) * 5
            run_native("sample_triplanes_backward", backend, planes.device, "SampleTriplanesParams",
                       **plane_fields(planes, coords.shape[1], box_warp, axes), coords=kernel_coords,
                       grad_out=grad_out, grad_planes=grad_planes, grad_coords=grad_coords,
                       sg_n=sg_n, sg_p=sg_p, sg_c=sg_c, sg_h=sg_h, sg_w=sg_w)
    # A custom op cannot return None: a gradient not asked for comes back empty.
    none = planes.new_empty(0)
    return (none if grad_planes is None else grad_planes.to(planes.dtype),
            none if grad_coords is None else grad_coords.to(coords.dtype))


@torch.library.custom_op("nerfgan_distill::sample_triplanes", mutates_args=())
def _sample_triplanes_op(planes: torch.Tensor, coords: torch.Tensor, box_warp: float, axes: List[int],
                         backend: str) -> torch.Tensor:
    return _forward(planes, coords, box_warp, axes, backend)


@_sample_triplanes_op.register_fake
def _(planes, coords, box_warp, axes, backend):
    return empty_output(planes, _output_shape(planes, coords))


@torch.library.custom_op("nerfgan_distill::sample_triplanes_backward", mutates_args=())
def _sample_triplanes_backward_op(grad_out: torch.Tensor, planes: torch.Tensor, coords: torch.Tensor,
                                  box_warp: float, axes: List[int], need_planes: bool, need_coords: bool,
                                  backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    return _backward(grad_out, planes, coords, box_warp, axes, need_planes, need_coords, backend)


@_sample_triplanes_backward_op.register_fake
def _(grad_out, planes, coords, box_warp, axes, need_planes, need_coords, backend):
    none = planes.new_empty(0)
    return (torch.empty_like(planes) if need_planes else none,
            torch.empty_like(coords, memory_format=torch.contiguous_format) if need_coords else none)


def _save(ctx, inputs, output):
    planes, coords, box_warp, axes, backend = inputs
    ctx.save_for_backward(planes, coords)
    ctx.args = (box_warp, axes)
    ctx.backend = backend


def _grad(ctx, grad_out):
    planes, coords = ctx.saved_tensors
    need_planes, need_coords = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    grad_planes, grad_coords = torch.ops.nerfgan_distill.sample_triplanes_backward(
        grad_out, planes, coords, *ctx.args, need_planes, need_coords, ctx.backend)
    return (grad_planes if need_planes else None), (grad_coords if need_coords else None), None, None, None


torch.library.register_autograd("nerfgan_distill::sample_triplanes", _grad, setup_context=_save)
refuse_gradient("nerfgan_distill::sample_triplanes_backward", "sample_triplanes", "second")
