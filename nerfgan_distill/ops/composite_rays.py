"""composite_rays: EG3D's MipRayMarcher2 (midpoint colors and densities,
softplus(density - 1), transmittance as the exclusive product of 1 - alpha + 1e-10,
depth NaN -> +inf then clamped to the global depth range, optional white background,
features mapped to [-1, 1]).

The kernels walk each ray once forward; the backward walks it forward (to recover
the transmittance) and then once in reverse, in fp32 (fp64 for fp64). Gradients go
to the colors and the densities; the sample depths get none (EG3D never
differentiates them), so depths that require grad are refused.
"""
from __future__ import annotations

import torch

from .. import _native
from ..dispatch import resolve
from ._common import (check_float_tensor, check_same_device_dtype, compute_dtype, device_context, empty_output,
                      refuse_gradient, run_native)
from .composite_rays_ref import composite_rays_ref

__all__ = ["composite_rays"]


def composite_rays(colors: torch.Tensor, densities: torch.Tensor, depths: torch.Tensor, white_back: bool = False,
                   clamp_mode: str = "softplus", backend: str = "auto"):
    """Composite samples along rays.

    Args:
        colors: [N, R, S, C] features per sample (EG3D: the decoder's 32 "rgb" features); C may be 0.
        densities: [N, R, S, 1] raw densities (before softplus(x - 1)).
        depths: [N, R, S, 1] sample depths, sorted along S; S >= 2. No gradient flows to them.
        white_back: add 1 - (total weight) to every feature (ShapeNet).
        clamp_mode: 'softplus' (the only density activation EG3D's ray marcher has).
        backend: 'auto', 'cuda', 'triton', 'cpu' or 'torch'.

    Returns:
        (features [N, R, C] in [-1, 1], depth [N, R, 1], weights [N, R, S-1, 1]).
    """
    op = "composite_rays"
    for name, t in (("colors", colors), ("densities", densities), ("depths", depths)):
        check_float_tensor(op, name, t)
        if t.ndim != 4:
            raise ValueError(f"{op}: {name} must have 4 dims ([N, R, S, C] or [N, R, S, 1]), got {list(t.shape)}")
    n, r, s = colors.shape[:3]
    for name, t in (("densities", densities), ("depths", depths)):
        if list(t.shape) != [n, r, s, 1]:
            raise ValueError(f"{op}: {name} must be [N, R, S, 1] = {[n, r, s, 1]} for colors {list(colors.shape)}, "
                             f"got {list(t.shape)}")
        check_same_device_dtype(op, name, t, "colors", colors)
    if s < 2:
        raise ValueError(f"{op}: need at least 2 samples per ray (S >= 2), got S = {s}")
    if not isinstance(white_back, bool):
        raise TypeError(f"{op}: white_back must be a bool, got {white_back!r}")
    if clamp_mode != "softplus":
        raise ValueError(f"{op}: clamp_mode must be 'softplus' (the only mode EG3D's ray marcher has), "
                         f"got {clamp_mode!r}")
    if depths.requires_grad and torch.is_grad_enabled():
        raise ValueError(f"{op}: depths must not require grad (sample depths are not differentiated); "
                         "pass depths.detach()")
    name = resolve(backend, colors.device)
    if name == "torch":
        return composite_rays_ref(colors, densities, depths, white_back)
    return torch.ops.nerfgan_distill.composite_rays(colors, densities, depths, white_back, name)


# --- kernels ---------------------------------------------------------------------------------

def _flat(colors, densities, depths):
    """Contiguous [rays, S, C], [rays, S], [rays, S] views (copies only when needed), and
    the global (min, max) of the depths in compute precision for the depth clamp."""
    n, r, s, c = colors.shape
    depth_range = torch.stack(torch.aminmax(depths)).to(compute_dtype(colors.dtype))
    return (colors.reshape(n * r, s, c).contiguous(), densities.reshape(n * r, s).contiguous(),
            depths.reshape(n * r, s).contiguous(), depth_range)


def _outputs(colors):
    n, r, s, c = colors.shape
    return (empty_output(colors, [n, r, c]), empty_output(colors, [n, r, 1]), empty_output(colors, [n, r, s - 1, 1]))


def _one_zero_channel(colors):
    """[N, R, S, 1] zeros for colors with no channels: the native kernels need a colors pointer;
    depth and weights do not depend on the colors, and a zero channel adds no gradient."""
    return colors.new_zeros(list(colors.shape[:3]) + [1])


def _forward(colors, densities, depths, white_back, backend):
    rgb, depth, weights = _outputs(colors)
    if depth.numel() == 0:
        return rgb, depth, weights
    if colors.shape[3] == 0:
        _, depth, weights = _forward(_one_zero_channel(colors), densities, depths, white_back, backend)
        return rgb, depth, weights
    colors_f, densities_f, depths_f, depth_range = _flat(colors, densities, depths)
    rays, s, c = colors_f.shape
    if backend == "triton":
        from ..triton_kernels import composite_rays as kernels

        with device_context(colors.device):
            kernels.forward(colors_f, densities_f, depths_f, depth_range, rgb, depth, weights, white_back)
    else:
        run_native("composite_rays_forward", backend, colors.device, "CompositeRaysParams", colors=colors_f,
                   densities=densities_f, depths=depths_f, depth_range=depth_range, rgb=rgb, depth=depth,
                   weights=weights, rays=rays, s=s, c=c, white_back=white_back,
                   dtype=_native.DTYPE_CODES[colors.dtype])
    return rgb, depth, weights


def _backward(grad_rgb, grad_depth, grad_weights, colors, densities, depths, weights, white_back, backend):
    # The kernels write dense gradients, whatever the inputs' layout.
    grad_colors = empty_output(colors, list(colors.shape[:2]) + [colors.shape[2] * colors.shape[3]]).view(colors.shape)
    grad_densities = empty_output(densities, list(densities.shape[:3])).view(densities.shape)
    if grad_densities.numel() == 0:
        return grad_colors, grad_densities
    if colors.shape[3] == 0:
        zero = _one_zero_channel(colors)
        no_grad_rgb = grad_rgb.new_zeros(list(grad_rgb.shape[:2]) + [1])
        _, grad_densities = _backward(no_grad_rgb, grad_depth, grad_weights, zero, densities, depths, weights,
                                      white_back, backend)
        return grad_colors, grad_densities
    colors_f, densities_f, depths_f, depth_range = _flat(colors, densities, depths)
    rays, s, c = colors_f.shape
    grad_rgb, grad_depth, grad_weights, weights = (t.to(colors.dtype).contiguous()
                                                   for t in (grad_rgb, grad_depth, grad_weights, weights))
    # The forward walk's transmittance per interval, read back by the reverse walk.
    transmittance = torch.empty(rays, s - 1, dtype=compute_dtype(colors.dtype), device=colors.device)
    if backend == "triton":
        from ..triton_kernels import composite_rays as kernels

        with device_context(colors.device):
            kernels.backward(colors_f, densities_f, depths_f, depth_range, weights, grad_rgb, grad_depth,
                             grad_weights, transmittance, grad_colors, grad_densities, white_back)
    else:
        run_native("composite_rays_backward", backend, colors.device, "CompositeRaysParams", colors=colors_f,
                   densities=densities_f, depths=depths_f, depth_range=depth_range, weights_in=weights,
                   grad_rgb=grad_rgb, grad_depth=grad_depth, grad_weights=grad_weights, transmittance=transmittance,
                   grad_colors=grad_colors, grad_densities=grad_densities, rays=rays, s=s, c=c,
                   white_back=white_back, dtype=_native.DTYPE_CODES[colors.dtype])
    return grad_colors, grad_densities


@torch.library.custom_op("nerfgan_distill::composite_rays", mutates_args=())
def _composite_rays_op(colors: torch.Tensor, densities: torch.Tensor, depths: torch.Tensor, white_back: bool,
                       backend: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _forward(colors, densities, depths, white_back, backend)


@_composite_rays_op.register_fake
def _(colors, densities, depths, white_back, backend):
    return _outputs(colors)


@torch.library.custom_op("nerfgan_distill::composite_rays_backward", mutates_args=())
def _composite_rays_backward_op(grad_rgb: torch.Tensor, grad_depth: torch.Tensor, grad_weights: torch.Tensor,
                                colors: torch.Tensor, densities: torch.Tensor, depths: torch.Tensor,
                                weights: torch.Tensor, white_back: bool,
                                backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    return _backward(grad_rgb, grad_depth, grad_weights, colors, densities, depths, weights, white_back, backend)


@_composite_rays_backward_op.register_fake
def _(grad_rgb, grad_depth, grad_weights, colors, densities, depths, weights, white_back, backend):
    return torch.empty_like(colors, memory_format=torch.contiguous_format), torch.empty_like(
        densities, memory_format=torch.contiguous_format)


def _save(ctx, inputs, output):
    colors, densities, depths, white_back, backend = inputs
    ctx.save_for_backward(colors, densities, depths, output[2])
    ctx.args = (white_back, backend)


def _grad(ctx, grad_rgb, grad_depth, grad_weights):
    colors, densities, depths, weights = ctx.saved_tensors
    grad_colors, grad_densities = torch.ops.nerfgan_distill.composite_rays_backward(
        grad_rgb, grad_depth, grad_weights, colors, densities, depths, weights, *ctx.args)
    return (grad_colors if ctx.needs_input_grad[0] else None,
            grad_densities if ctx.needs_input_grad[1] else None, None, None, None)


torch.library.register_autograd("nerfgan_distill::composite_rays", _grad, setup_context=_save)
refuse_gradient("nerfgan_distill::composite_rays_backward", "composite_rays", "second")
