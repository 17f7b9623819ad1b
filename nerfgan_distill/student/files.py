"""student.save / student.load: .safetensors with the constructor config as JSON metadata."""
from __future__ import annotations

import os
from typing import BinaryIO, Union

import torch

from ..formats import ModelFileError, load_state, read_model_file, source_name, write_model_file
from .generator import StudentGenerator

__all__ = ["save", "load", "StudentFormatError", "FORMAT", "FORMAT_VERSION", "from_config"]

FORMAT = "nerfgan_distill.student"
FORMAT_VERSION = "1"
# Errors a constructor raises for impossible sizes (negative, zero, wrong types).
BUILD_ERRORS = (TypeError, ValueError, RuntimeError, ArithmeticError)


class StudentFormatError(ModelFileError):
    """The file is readable but is not a student we can rebuild (the message says why)."""


def save(model: StudentGenerator, path: Union[str, os.PathLike]) -> None:
    """Write `model`'s weights and constructor arguments (atomically)."""
    if not isinstance(model, StudentGenerator):
        raise TypeError(f"student.save: model must be a StudentGenerator, got {type(model).__name__}")
    write_model_file(path, FORMAT, FORMAT_VERSION, {"init_kwargs": model.init_kwargs}, dict(model.state_dict()))


def load(source: Union[str, os.PathLike, BinaryIO], device: Union[str, torch.device] = "cpu") -> StudentGenerator:
    """A StudentGenerator in eval mode without gradients (call .train().requires_grad_(True)
    to fine-tune it) from a file written by student.save."""
    where = source_name(source)
    try:
        file = read_model_file(source, expect=FORMAT, versions=(FORMAT_VERSION,))
    except ModelFileError as e:
        raise StudentFormatError(str(e)) from e
    model = from_config(file.config, where)
    load_state(model, file.tensors, where, StudentFormatError)
    return model.to(device).eval().requires_grad_(False)


def from_config(config: dict, where: str) -> StudentGenerator:
    try:
        return StudentGenerator(**config["init_kwargs"])
    except (KeyError, *BUILD_ERRORS) as e:
        raise StudentFormatError(f"{where}: cannot rebuild the student from its config ({type(e).__name__}: {e})") \
            from e
