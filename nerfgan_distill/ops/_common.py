"""Helpers shared by the op modules: argument checks with named messages, and
the memory layout and device plumbing between torch tensors and the kernels."""
from __future__ import annotations

import contextlib
import math

import torch

from .. import _native

FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The precision kernels compute in: fp64 for fp64 tensors, fp32 for the rest."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def check_float_tensor(op: str, name: str, t) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{op}: {name} must be float32, float64, float16 or bfloat16, got {t.dtype}")


def check_same_device_dtype(op: str, name: str, t: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    if t.device != ref.device:
        raise ValueError(f"{op}: {name} is on {t.device} but {ref_name} is on {ref.device}; "
                         "move them to the same device")
    if t.dtype != ref.dtype:
        raise TypeError(f"{op}: {name} has dtype {t.dtype} but {ref_name} has {ref.dtype}; "
                        f"cast it with .to({ref_name}.dtype)")


def check_finite_number(op: str, name: str, value, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{op}: {name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{op}: {name} must be finite, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value}")
    return value


def normalize_dim(op: str, dim, ndim: int) -> int:
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"{op}: dim must be an int, got {type(dim).__name__}")
    if not -ndim <= dim < ndim:
        raise IndexError(f"{op}: dim={dim} is out of range for x with {ndim} dimension(s)")
    return dim % ndim


def empty_output(x: torch.Tensor, shape=None, dtype=None) -> torch.Tensor:
    """Output allocation for kernels: dense, in x's dimension order (x's shape by default;
    for another shape, channels-last when x is channels-last), in x's dtype by default.

    Every kernel output goes through here, so tests can poison it with NaN and
    catch a kernel that leaves part of its output unwritten.
    """
    if shape is None:
        return torch.empty_like(x, dtype=dtype, memory_format=torch.preserve_format)
    channels_last = (x.ndim == 4 and len(shape) == 4 and x.is_contiguous(memory_format=torch.channels_last)
                     and not x.is_contiguous())
    return torch.empty(shape, dtype=dtype or x.dtype, device=x.device,
                       memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def in_layout(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`t` with exactly the strides of `like` (a dense tensor), copying only when needed."""
    if t.stride() == like.stride() or t.numel() <= 1:
        return t
    return torch.empty_like(like).copy_(t)


def refuse_gradient(op_name: str, what: str, order: str) -> None:
    """Register an autograd formula for custom op `op_name` (its last supported derivative)
    that raises a clear error when differentiated once more."""
    def backward(ctx, *grads):
        raise NotImplementedError(f"{what}: gradients of {order} order are not supported "
                                  "(use backend='torch' if you need them)")

    torch.library.register_autograd(op_name, backward, setup_context=lambda ctx, inputs, output: None)


def device_context(device: torch.device):
    """Make the tensors' GPU current for a Triton launch (a no-op on CPU)."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def run_native(kernel: str, backend: str, device: torch.device, params: str, **fields) -> None:
    """Fill _C.<params> (the kernel's parameter struct) by field name and call
    _C.<kernel>_cpu with torch's thread count, or _C.<kernel>_cuda on the device's current
    stream (so CUDA graphs and user streams see the launch).

    A tensor field passes its address and None a null pointer; a dict fills a nested struct
    (render_triplanes' planes). A misspelt field is an AttributeError, never a default."""
    native = _native.load()
    struct = getattr(native, params)()
    _fill(struct, fields)
    if backend == "cpu":
        getattr(native, f"{kernel}_cpu")(struct, torch.get_num_threads())
    else:
        getattr(native, f"{kernel}_cuda")(struct, device.index, torch.cuda.current_stream(device).cuda_stream)


def _fill(struct, fields: dict) -> None:
    for name, value in fields.items():
        if isinstance(value, dict):
            _fill(getattr(struct, name), value)  # a nested struct, edited in place
            continue
        if isinstance(value, torch.Tensor):
            value = value.data_ptr()
        elif value is None:
            value = 0
        setattr(struct, name, value)
