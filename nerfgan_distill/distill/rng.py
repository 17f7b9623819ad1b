"""Per-sample random streams: everything random about training sample s comes from (seed, s).

A sample's generator is a CPU torch.Generator seeded with the first 8 bytes (little endian,
top bit cleared) of sha256(f"{seed}/{number}/{purpose}"). Each purpose ('z', 'render-pose',
'cond-pose', 'cache-perm', ...) gets its own stream, so adding or changing one kind of draw
never moves another. Draws happen on the CPU and are moved to the device afterwards: the
same numbers on every machine, whatever the number of processes or the batch split.
"""
from __future__ import annotations

import hashlib

import torch

__all__ = ["derive_seed", "sample_generator", "epoch_permutation"]


def _check_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def derive_seed(seed: int, number: int, purpose: str) -> int:
    """A 63-bit seed that depends only on (seed, number, purpose)."""
    _check_int("seed", seed)
    _check_int("number", number)
    if not isinstance(purpose, str) or not purpose:
        raise ValueError(f"purpose must be a non-empty string, got {purpose!r}")
    digest = hashlib.sha256(f"{seed}/{number}/{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2 ** 63 - 1)


def sample_generator(seed: int, number: int, purpose: str) -> torch.Generator:
    """A fresh CPU generator for (seed, number, purpose)."""
    return torch.Generator().manual_seed(derive_seed(seed, number, purpose))


def epoch_permutation(seed: int, epoch: int, count: int, purpose: str) -> torch.Tensor:
    """A permutation of range(count) (int64, CPU) that depends only on (seed, epoch, count, purpose)."""
    _check_int("count", count)
    return torch.randperm(count, generator=sample_generator(seed, epoch, f"{purpose}/{count}"))


def as_sample_numbers(sample_numbers) -> list[int]:
    """Sample numbers (an int sequence, range or 1-d integer tensor) as a list of ints >= 0."""
    if isinstance(sample_numbers, torch.Tensor):
        if sample_numbers.ndim != 1 or sample_numbers.is_floating_point() or sample_numbers.dtype == torch.bool:
            raise TypeError(f"sample_numbers must be a 1-d integer tensor, got {sample_numbers.dtype} "
                            f"{list(sample_numbers.shape)}")
        sample_numbers = sample_numbers.tolist()
    try:
        numbers = list(sample_numbers)
    except TypeError:
        raise TypeError(f"sample_numbers must be a sequence of ints, got {type(sample_numbers).__name__}") from None
    for n in numbers:
        _check_int("a sample number", n)
    return numbers
