"""EG3D's OSGDecoder (../shared/docs/eg3d.md, section 1.6): the tri-plane feature MLP."""
from __future__ import annotations

import torch
from torch import nn

from .. import ops
from ..networks.stylegan2 import FullyConnectedLayer

__all__ = ["OSGDecoder"]

SIGMOID_PAD = 0.001  # MipNeRF's widened sigmoid: features in (-0.001, 1.001)


class OSGDecoder(nn.Module):
    """Mean of the 3 plane features -> FC -> softplus -> FC -> (raw sigma, widened sigmoid
    features). Ray directions are accepted and ignored, as in EG3D (no view dependence)."""

    hidden_dim = 64

    def __init__(self, n_features: int, options: dict):
        super().__init__()
        lr_multiplier = options["decoder_lr_mul"]
        self.net = nn.Sequential(
            FullyConnectedLayer(n_features, self.hidden_dim, lr_multiplier=lr_multiplier),
            nn.Softplus(),
            FullyConnectedLayer(self.hidden_dim, 1 + options["decoder_output_dim"], lr_multiplier=lr_multiplier))

    def forward(self, sampled_features: torch.Tensor, ray_directions=None) -> dict:
        del ray_directions
        x = sampled_features.mean(1)
        n, m, c = x.shape
        x = self.net(x.reshape(n * m, c)).reshape(n, m, -1)
        rgb = torch.sigmoid(x[..., 1:]) * (1 + 2 * SIGMOID_PAD) - SIGMOID_PAD
        return {"rgb": rgb, "sigma": x[..., 0:1]}

    def render_weights(self) -> ops.TriplaneDecoder:
        """The weights as the fused renderer takes them, run-time gains applied."""
        fc1, fc2 = self.net[0], self.net[2]
        return ops.TriplaneDecoder(fc1.weight * fc1.weight_gain, fc1.bias * fc1.bias_gain,
                                   fc2.weight * fc2.weight_gain, fc2.bias * fc2.bias_gain)
