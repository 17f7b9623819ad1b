"""importance_depths: EG3D's sample_importance (../shared/docs/eg3d.md, sections 2.6
and 2.7): depths for the fine pass, drawn from the coarse pass's weights.

It runs without gradients (EG3D wraps it in no_grad). The uniforms u are always drawn
here in torch (linspace, or torch.rand from the generator), so every backend consumes
the same u. The torch path (importance_depths_ref.importance_from_uniforms) is the reference; the cpu, cuda
and triton kernels run the per-ray math of csrc/include/nerfgan_distill/render_triplanes.h
(importance_cdf, importance_depth: what the fused renderer runs) and match it to
rounding. They compute in fp32 (fp64 for fp64): fp16 and bf16 inputs are computed in
fp32 and the result cast back (the torch path computes in the input dtype). They hold
a ray's cdf in a fixed buffer, so they take at most MAX_COARSE (512) coarse depths per
ray: with backend='auto' larger D runs on torch; naming a kernel backend raises ValueError.
A ray with NaN in its weights gets NaN depths on every backend, as in the reference.
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import _native
from ..dispatch import resolve
from ..kernel_codes import RENDER_MAX_SAMPLES
from ._common import (check_float_tensor, check_same_device_dtype, compute_dtype, device_context, empty_output,
                      run_native)
from .importance_depths_ref import importance_from_uniforms, importance_uniforms, sample_pdf

__all__ = ["importance_depths", "sample_pdf"]

MAX_COARSE = RENDER_MAX_SAMPLES  # the kernels' bound on D: a ray's cdf lives in that many entries

def importance_depths(depths_coarse: torch.Tensor, weights: torch.Tensor, n_importance: int,
                      deterministic: bool = False, generator: Optional[torch.Generator] = None,
                      backend: str = "auto") -> torch.Tensor:
    """Depths of the fine samples, [N, R, n_importance, 1], from the coarse depths
    [N, R, D, 1] (sorted along D; D >= 4) and the coarse pass's weights [N, R, D-1, 1].

    deterministic=True uses u = linspace(0, 1, n_importance) (EG3D's det=True);
    otherwise u is uniform, drawn from `generator` (EG3D draws with torch.rand).
    backend: 'auto', 'cuda', 'triton', 'cpu' or 'torch'; the kernels take D <= MAX_COARSE
    ('auto' runs larger D on torch). No gradient flows through the result.
    """
    op = "importance_depths"
    check_float_tensor(op, "depths_coarse", depths_coarse)
    check_float_tensor(op, "weights", weights)
    if depths_coarse.ndim != 4 or depths_coarse.shape[-1] != 1 or depths_coarse.shape[2] < 4:
        raise ValueError(f"{op}: depths_coarse must be [N, R, D, 1] with D >= 4 (EG3D's sample_pdf draws from the "
                         f"D - 3 inner coarse weights), got {list(depths_coarse.shape)}")
    n, r, d, _ = depths_coarse.shape
    if list(weights.shape) != [n, r, d - 1, 1]:
        raise ValueError(f"{op}: weights must be [N, R, D-1, 1] = {[n, r, d - 1, 1]} for depths_coarse "
                         f"{list(depths_coarse.shape)}, got {list(weights.shape)}")
    check_same_device_dtype(op, "weights", weights, "depths_coarse", depths_coarse)
    if isinstance(n_importance, bool) or not isinstance(n_importance, int) or n_importance < 1:
        raise ValueError(f"{op}: n_importance must be an int >= 1, got {n_importance!r}")
    if not isinstance(deterministic, bool):
        raise TypeError(f"{op}: deterministic must be a bool, got {deterministic!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"{op}: generator must be a torch.Generator or None, got {type(generator).__name__}")
    name = resolve(backend, depths_coarse.device)
    if name != "torch" and d > MAX_COARSE:
        if backend != "auto":
            raise ValueError(f"{op}: the {name} kernels take at most {MAX_COARSE} coarse depths per ray, got "
                             f"D = {d}; use backend='torch' (or 'auto', which does)")
        name = "torch"
    u = importance_uniforms(n * r, n_importance, deterministic, generator, depths_coarse)
    if name == "torch":
        return importance_from_uniforms(depths_coarse, weights, u)
    with torch.no_grad():  # as the reference: the result never requires grad
        return torch.ops.nerfgan_distill.importance_depths(depths_coarse, weights, u, name)


# --- kernels ---------------------------------------------------------------------------------

def _forward(depths_coarse, weights, u, backend):
    n, r, d, _ = depths_coarse.shape
    di = u.shape[1]
    ct = compute_dtype(depths_coarse.dtype)
    out = empty_output(depths_coarse, [n * r, di], dtype=ct)
    if out.numel() > 0:
        z_f = depths_coarse.reshape(n * r, d).to(ct).contiguous()
        w_f = weights.reshape(n * r, d - 1).to(ct).contiguous()
        u_f = u.to(ct).contiguous()
        if backend == "triton":
            from ..triton_kernels import importance_depths as kernels

            with device_context(depths_coarse.device):
                kernels.forward(z_f, w_f, u_f, out)
        else:
            run_native("importance_depths_forward", backend, depths_coarse.device, "ImportanceDepthsParams",
                       depths=z_f, weights=w_f, u=u_f, out=out, rays=n * r, coarse=d, fine=di,
                       dtype=_native.DTYPE_CODES[ct])
    return out.to(depths_coarse.dtype).view(n, r, di, 1)


@torch.library.custom_op("nerfgan_distill::importance_depths", mutates_args=())
def _importance_depths_op(depths_coarse: torch.Tensor, weights: torch.Tensor, u: torch.Tensor,
                          backend: str) -> torch.Tensor:
    return _forward(depths_coarse, weights, u, backend)


@_importance_depths_op.register_fake
def _(depths_coarse, weights, u, backend):
    n, r = depths_coarse.shape[:2]
    return depths_coarse.new_empty([n, r, u.shape[1], 1])
