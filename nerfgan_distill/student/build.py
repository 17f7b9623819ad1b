"""student.build: an untrained student sized from a teacher, initialised from a seed."""
from __future__ import annotations

import torch

from .generator import StudentGenerator
from .presets import student_config

__all__ = ["build"]

SR_INITS = ("random", "teacher")


def build(preset: str, teacher, seed: int = 0, sr_init: str = "random", **overrides) -> StudentGenerator:
    """A new StudentGenerator for `preset` (see PRESETS) sized from `teacher`.

    seed: the weights are drawn from it (the global RNG is left as it was).
    sr_init: 'random', or 'teacher' to start the super-resolution net from the teacher's
      weights (needs the 'teacher' SR of the eg3d-512 preset, or an override to it).
    overrides: StudentGenerator arguments replacing the preset's (dicts are merged).
    """
    if sr_init not in SR_INITS:
        raise ValueError(f"student.build: sr_init must be one of {SR_INITS}, got {sr_init!r}")
    config = student_config(preset, teacher)
    for key, value in overrides.items():
        if key not in config:
            raise ValueError(f"student.build: unknown option {key!r}; known: {', '.join(sorted(config))}")
        config[key] = {**config[key], **value} if isinstance(config[key], dict) and isinstance(value, dict) else value
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = StudentGenerator(**config)
    if sr_init == "teacher":
        _copy_superresolution(teacher, model)
    return model


def _copy_superresolution(teacher, model: StudentGenerator) -> None:
    ours, theirs = model.superresolution.state_dict(), teacher.superresolution.state_dict()
    if type(model.superresolution) is not type(teacher.superresolution) or any(
            k not in theirs or theirs[k].shape != v.shape for k, v in ours.items()):
        raise ValueError(f"student.build: sr_init='teacher' needs the teacher's SR architecture "
                         f"({type(teacher.superresolution).__name__}); this student has "
                         f"{type(model.superresolution).__name__} with other shapes")
    model.superresolution.load_state_dict({k: theirs[k].detach().clone() for k in ours})
