"""The torch reference of importance_depths: EG3D's sample_importance and sample_pdf
(../shared/docs/eg3d.md, sections 2.6 and 2.7) with the uniforms given, in the input's
dtype. The kernels (render_triplanes.h's importance_cdf and importance_depth) match it
to rounding."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

__all__ = ["importance_from_uniforms", "importance_uniforms", "sample_pdf", "smooth_weights", "PDF_EPS"]

PDF_EPS = 1e-5  # added to the weights, and the smallest cdf step sample_pdf divides by


def smooth_weights(weights: torch.Tensor) -> torch.Tensor:
    """[B, K] -> [B, K]: a 2-tap max filter (edges keep their value), then a 2-tap mean, plus 0.01."""
    padded = F.pad(weights, (1, 1), value=float("-inf"))
    peaks = torch.maximum(padded[:, :-1], padded[:, 1:])
    return (peaks[:, :-1] + peaks[:, 1:]) / 2 + 0.01


def sample_pdf(bins: torch.Tensor, weights: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF samples at u [B, n] of the piecewise-constant pdf `weights` [B, K]
    over `bins` [B, >= K+1], with EG3D's quirks: cdf indices also index the bins (so
    bins past K are never used), and a cdf step under 1e-5 counts as 1."""
    weights = weights + PDF_EPS
    pdf = weights / weights.sum(-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), torch.cumsum(pdf, -1)], -1)
    inds = torch.searchsorted(cdf, u.contiguous(), right=True)
    below = (inds - 1).clamp_min(0)
    above = inds.clamp_max(weights.shape[-1])
    cdf_below, cdf_above = cdf.gather(1, below), cdf.gather(1, above)
    bins_below, bins_above = bins.gather(1, below), bins.gather(1, above)
    denom = cdf_above - cdf_below
    denom = torch.where(denom < PDF_EPS, torch.ones_like(denom), denom)
    return bins_below + (u - cdf_below) / denom * (bins_above - bins_below)


def importance_uniforms(rays: int, n_importance: int, deterministic: bool, generator: Optional[torch.Generator],
                        like: torch.Tensor) -> torch.Tensor:
    """The u in [0, 1) of sample_pdf: linspace(0, 1, n) per ray when deterministic, else uniform draws."""
    if deterministic:
        return torch.linspace(0, 1, n_importance, dtype=like.dtype, device=like.device).expand(rays, n_importance)
    return torch.rand(rays, n_importance, generator=generator, dtype=like.dtype, device=like.device)


@torch.no_grad()
def importance_from_uniforms(depths_coarse: torch.Tensor, weights: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """importance_depths with the uniforms given: [N, R, D, 1], [N, R, D-1, 1], [N*R, n] -> [N, R, n, 1]."""
    n, r, d, _ = depths_coarse.shape
    z = depths_coarse.reshape(n * r, d)
    smoothed = smooth_weights(weights.reshape(n * r, d - 1))
    mids = (z[:, :-1] + z[:, 1:]) / 2
    # EG3D passes the D-1 midpoints as bins but only the inner D-3 smoothed weights.
    return sample_pdf(mids, smoothed[:, 1:-1], u).reshape(n, r, u.shape[1], 1)
