"""Pure-PyTorch reference of bias_act, written from StyleGAN2-ADA's definition:

    y = clamp(act(x + b) * gain, -clamp, clamp)

with b broadcast along `dim`; the clamp applies only when clamp is given (>= 0).
The computation runs in the input dtype, and autograd provides every gradient
order. This is the `torch` backend and the ground truth for the others.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from ..kernel_codes import ACT


@dataclass(frozen=True)
class Activation:
    code: int  # the kernels' activation code (kernel_codes.ACT)
    func: Callable[[torch.Tensor, float], torch.Tensor]
    default_alpha: float
    default_gain: float
    has_2nd_grad: bool  # f'' is not zero almost everywhere


# alpha is used by lrelu only; the other activations ignore it, as in StyleGAN2-ADA.
ACTIVATIONS = {
    "linear": Activation(ACT["linear"], lambda x, a: x, 0.0, 1.0, False),
    "relu": Activation(ACT["relu"], lambda x, a: F.relu(x), 0.0, math.sqrt(2), False),
    "lrelu": Activation(ACT["lrelu"], lambda x, a: F.leaky_relu(x, a), 0.2, math.sqrt(2), False),
    "tanh": Activation(ACT["tanh"], lambda x, a: torch.tanh(x), 0.0, 1.0, True),
    "sigmoid": Activation(ACT["sigmoid"], lambda x, a: torch.sigmoid(x), 0.0, 1.0, True),
    "elu": Activation(ACT["elu"], lambda x, a: F.elu(x), 0.0, 1.0, True),
    "selu": Activation(ACT["selu"], lambda x, a: F.selu(x), 0.0, 1.0, True),
    "softplus": Activation(ACT["softplus"], lambda x, a: F.softplus(x), 0.0, 1.0, True),
    "swish": Activation(ACT["swish"], lambda x, a: torch.sigmoid(x) * x, 0.0, math.sqrt(2), True),
}


def bias_act_ref(x: torch.Tensor, b: torch.Tensor | None, dim: int, act: str,
                 alpha: float, gain: float, clamp: float | None) -> torch.Tensor:
    """Reference bias_act on already validated arguments (defaults resolved, dim >= 0)."""
    if b is not None:
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    x = ACTIVATIONS[act].func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x
