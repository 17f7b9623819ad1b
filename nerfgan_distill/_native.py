"""Lazy access to the compiled, torch-free core ``nerfgan_distill._C``.

The module is imported on first use and a failure is remembered, so importing
the package never fails on a machine where the build is missing or broken; the
backends that need it report the reason instead.
"""
from __future__ import annotations

import importlib
from types import ModuleType

import torch

from .kernel_codes import DTYPE

DTYPE_CODES = {dtype: DTYPE[str(dtype).removeprefix("torch.")]
               for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16)}

_module: ModuleType | None = None
_error: str | None = None


def load() -> ModuleType:
    """Return the native module, or raise ImportError saying why it is unavailable."""
    global _module, _error
    if _module is not None:
        return _module
    if _error is None:
        try:
            _module = importlib.import_module("nerfgan_distill._C")
            return _module
        except ImportError as exc:  # not built, or built for another Python
            _error = f"the native module nerfgan_distill._C could not be imported ({exc})"
    raise ImportError(_error)


def load_error() -> str | None:
    """Why load() fails, or None when the native module is usable."""
    try:
        load()
    except ImportError as exc:
        return str(exc)
    return None


def build_info() -> dict:
    """What the native module was built with ({} when it is unavailable)."""
    try:
        return dict(load().build_info())
    except ImportError:
        return {}
