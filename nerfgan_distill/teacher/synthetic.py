"""Seeded random weights for a generator, from its parameter names and shapes alone.

The same (names, shapes, seed) give the same tensors for our TriPlaneGenerator and for
EG3D's (their state dicts share names), which is how the parity check and its test
fixtures compare the two without shipping 120 MB of weights. The values are scaled like a
trained model's, so every path (noise, biases, the mapping's lr multiplier) is exercised.
"""
from __future__ import annotations

import torch

__all__ = ["random_state"]

MAPPING_LR_MULTIPLIER = 0.01  # the mapping FC layers store weight / lr_multiplier


def _draw(name: str, shape: tuple, generator: torch.Generator) -> torch.Tensor | None:
    leaf = name.rsplit(".", 1)[-1]
    if leaf in ("resample_filter", "dataset_label_std"):
        # Fixed by the architecture (or unused, and absent from some models): keep the
        # module's value and draw nothing, so both models consume the same random stream.
        return None
    noise = torch.randn(shape, generator=generator)
    if leaf == "weight":
        mapping_fc = ".mapping.fc" in f".{name}"
        return noise / MAPPING_LR_MULTIPLIER if mapping_fc else noise
    if leaf == "bias":
        return 1 + 0.1 * noise if name.endswith("affine.bias") else 0.1 * noise
    if leaf in ("noise_strength", "w_avg"):
        return 0.1 * noise
    return noise  # const, noise_const


def random_state(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """A state dict for `module` (ours or EG3D's), drawn in sorted name order from `seed`;
    entries keep the module's own values where the architecture fixes them."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, tensor in sorted(module.state_dict().items()):
        drawn = _draw(name, tuple(tensor.shape), generator)
        state[name] = tensor.detach().clone() if drawn is None else drawn.to(tensor.dtype)
    return state
