"""nerfgan_distill.load / save: any of our models, whichever file it is in.

A teacher (an EG3D pickle or our teacher .safetensors) or a student (.safetensors) is
recognised from the file itself; a training checkpoint or a data shard is refused with a
message saying what it is.
"""
from __future__ import annotations

import os
from typing import Union

from .formats import ModelFileError, describe_format, peek_format, source_name

__all__ = ["load", "save"]


def load(path: Union[str, os.PathLike], device="cpu"):
    """The teacher or student stored at `path` (frozen, eval mode)."""
    from . import student, teacher

    with open(path, "rb") as f:
        head = f.read(16)
    # safetensors: an 8-byte header length, then the JSON header. Checked first, since the
    # length's first byte may be 0x80, as a pickle's is.
    is_safetensors = len(head) >= 9 and head[8:9] == b"{"
    if not is_safetensors and len(head) >= 2 and head[0] == 0x80:  # only EG3D network pickles are ours
        return teacher.load(path, device=device)
    fmt = peek_format(path)
    if fmt == teacher.loader.FORMAT:
        return teacher.load(path, device=device)
    if fmt == student.files.FORMAT:
        return student.load(path, device=device)
    raise ModelFileError(f"{source_name(path)} is {describe_format(fmt)}, not a teacher or student model")


def save(model, path: Union[str, os.PathLike]) -> None:
    """Write a TriPlaneGenerator or a StudentGenerator in our .safetensors format."""
    from . import student, teacher

    if isinstance(model, teacher.TriPlaneGenerator):
        return teacher.save(model, path)
    if isinstance(model, student.StudentGenerator):
        return student.save(model, path)
    raise TypeError(f"save: model must be a TriPlaneGenerator or a StudentGenerator, got {type(model).__name__}")
