"""Low-pass filter design for StyleGAN3's layers, without scipy: a Kaiser-windowed sinc
(scipy.signal.firwin with `width`, as StyleGAN3 calls it) and the radially symmetric
jinc filter of config R. Computed in float64 on the CPU (also under a meta device context), returned as float32
taps that sum to 1.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

__all__ = ["kaiser_attenuation", "kaiser_beta", "kaiser_window", "lowpass_filter"]


def kaiser_attenuation(numtaps: int, width: float) -> float:
    """The stopband attenuation (dB) of a Kaiser FIR of `numtaps` taps and transition `width`
    (as a fraction of the Nyquist rate): Kaiser's empirical formula."""
    return 2.285 * (numtaps - 1) * math.pi * width + 7.95


def kaiser_beta(attenuation: float) -> float:
    """The Kaiser window's beta for a stopband `attenuation` in dB."""
    if attenuation > 50:
        return 0.1102 * (attenuation - 8.7)
    if attenuation > 21:
        return 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21)
    return 0.0


def kaiser_window(numtaps: int, beta: float) -> torch.Tensor:
    """numpy.kaiser(numtaps, beta) in float64."""
    if numtaps == 1:
        return torch.ones(1, dtype=torch.float64, device="cpu")
    n = torch.arange(numtaps, dtype=torch.float64, device="cpu")
    ratio = 2 * n / (numtaps - 1) - 1
    beta_t = torch.tensor(beta, dtype=torch.float64, device="cpu")
    return torch.special.i0(beta_t * (1 - ratio.square()).clamp_min(0).sqrt()) / torch.special.i0(beta_t)


def lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float, radial: bool = False) -> Optional[torch.Tensor]:
    """StyleGAN3's design_lowpass_filter: None for one tap (the identity); else the separable
    [numtaps] Kaiser low-pass (cutoff and transition width in the units of the sampling
    rate fs), or with `radial` the [numtaps, numtaps] jinc filter under a separable window."""
    if isinstance(numtaps, bool) or not isinstance(numtaps, int) or numtaps < 1:
        raise ValueError(f"lowpass_filter: numtaps must be an int >= 1, got {numtaps!r}")
    if numtaps == 1:
        return None
    if not 0 < cutoff < fs / 2 or width <= 0:
        raise ValueError(f"lowpass_filter: need 0 < cutoff < fs/2 and width > 0, got cutoff={cutoff}, "
                         f"width={width}, fs={fs}")
    nyquist = fs / 2
    beta = kaiser_beta(kaiser_attenuation(numtaps, width / nyquist))
    window = kaiser_window(numtaps, beta)
    if not radial:
        c = cutoff / nyquist
        m = torch.arange(numtaps, dtype=torch.float64, device="cpu") - (numtaps - 1) / 2
        taps = c * torch.sinc(c * m) * window
    else:
        x = (torch.arange(numtaps, dtype=torch.float64, device="cpu") - (numtaps - 1) / 2) / fs
        r = torch.hypot(x[None, :], x[:, None])  # never 0 for even numtaps, always the case here
        if bool((r == 0).any()):
            raise ValueError(f"lowpass_filter: a radial filter needs an even numtaps, got {numtaps}")
        taps = torch.special.bessel_j1(2 * math.pi * cutoff * r) / (math.pi * r) * torch.outer(window, window)
    return (taps / taps.sum()).to(torch.float32)
