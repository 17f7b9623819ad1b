"""Backend discovery and selection: which kernel backends exist on this machine,
and which one an op call uses.

Backends: ``cuda`` (csrc/, compiled into nerfgan_distill._C), ``triton``
(nerfgan_distill.triton_kernels), ``cpu`` (C++/OpenMP in nerfgan_distill._C) and
``torch`` (the pure-PyTorch reference, always there). ``auto`` picks cuda for CUDA
tensors when it was built, else triton; cpu for CPU tensors. The environment
variable NERFGAN_DISTILL_BACKEND replaces ``auto`` with a fixed choice.
"""
from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass, field

import torch

from . import _native

NAMES = ("cuda", "triton", "cpu", "torch")
ENV_VAR = "NERFGAN_DISTILL_BACKEND"


class BackendUnavailableError(RuntimeError):
    """A backend was asked for that cannot run here; the message says why."""


@dataclass(frozen=True)
class BackendStatus:
    """What one backend can do on this machine."""

    name: str
    built: bool  # the code is installed (compiled, or importable)
    usable: bool  # it can run now (e.g. the cuda backend also needs a GPU)
    detail: str  # versions and archs, or why it is not built/usable
    info: dict = field(default_factory=dict, compare=False)

    def __repr__(self) -> str:
        state = "usable" if self.usable else ("built, not usable" if self.built else "not built")
        return f"<{self.name}: {state}; {self.detail}>"


def _triton_version() -> str | None:
    if importlib.util.find_spec("triton") is None:
        return None
    try:
        import triton
    except Exception:  # a broken triton install is the same as none here
        return None
    return getattr(triton, "__version__", "unknown")


def triton_interpreted() -> bool:
    """True when our Triton kernels run under the interpreter (TRITON_INTERPRET=1)."""
    from .triton_kernels import interpreted

    return interpreted()


def runs_on(archs: str, capability: tuple[int, int]) -> bool:
    """Whether a module built for `archs` (CMake list, e.g. "80-real,90-virtual") runs on a GPU
    of compute `capability`: SASS runs on its major version at an equal or higher minor, PTX on
    any equal or newer GPU."""
    device = capability[0] * 10 + capability[1]
    for arch in archs.replace(";", ",").split(","):
        number, _, kind = arch.strip().partition("-")
        if not number.isdigit():
            continue
        built = int(number)
        if kind in ("", "virtual") and built <= device:
            return True
        if kind in ("", "real") and built // 10 == capability[0] and built <= device:
            return True
    return False


@functools.lru_cache(maxsize=None)
def status(name: str) -> BackendStatus:
    """The status of one backend on this machine (fixed for the life of the process)."""
    if name == "torch":
        return BackendStatus("torch", True, True, f"torch {torch.__version__} (reference)")
    if name == "cpu":
        error = _native.load_error()
        if error:
            return BackendStatus("cpu", False, False, error)
        info = _native.build_info()
        openmp = "OpenMP" if info.get("openmp") else "no OpenMP"
        return BackendStatus("cpu", True, True, f"{info.get('compiler', '')}, {openmp}, "
                             f"{info.get('cpu_isa')} kernels", info)
    if name == "cuda":
        error = _native.load_error()
        if error:
            return BackendStatus("cuda", False, False, error)
        info = _native.build_info()
        if not info.get("cuda"):
            reason = info.get("cuda_skip_reason") or "built without CUDA"
            return BackendStatus("cuda", False, False, f"CUDA backend not built: {reason}", info)
        detail = f"CUDA {info['cuda_version']}, archs {info['cuda_archs']}"
        if not torch.cuda.is_available():
            return BackendStatus("cuda", True, False, f"{detail}; no CUDA device visible to torch", info)
        capability = torch.cuda.get_device_capability()
        if not runs_on(info["cuda_archs"], capability):
            return BackendStatus("cuda", True, False, f"{detail}; no code for this GPU (sm_{capability[0]}"
                                 f"{capability[1]}): reinstall with NERFGAN_DISTILL_CUDA_ARCHS", info)
        return BackendStatus("cuda", True, True, f"{detail}; {torch.cuda.get_device_name()}", info)
    if name == "triton":
        version = _triton_version()
        if version is None:
            return BackendStatus("triton", False, False,
                                 "triton is not installed (pip install 'nerfgan-distill[triton]')")
        if triton_interpreted():
            return BackendStatus("triton", True, True, f"triton {version} (interpreter, CPU tensors)")
        if not torch.cuda.is_available():
            return BackendStatus("triton", True, False, f"triton {version}; no CUDA device "
                                 "(set TRITON_INTERPRET=1 before import to run on CPU tensors)")
        return BackendStatus("triton", True, True, f"triton {version}")
    raise ValueError(f"unknown backend {name!r}; expected one of {', '.join(NAMES)}")


def backends() -> dict[str, BackendStatus]:
    """All backends with what was built and what can run here."""
    return {name: status(name) for name in NAMES}


def _check_device(name: str, device: torch.device) -> None:
    if name == "cuda" and device.type != "cuda":
        raise BackendUnavailableError(f"backend 'cuda' runs on CUDA tensors, but the inputs are on {device}")
    if name == "cpu" and device.type != "cpu":
        raise BackendUnavailableError(f"backend 'cpu' runs on CPU tensors, but the inputs are on {device}")
    if name == "triton" and device.type == "cpu" and not triton_interpreted():
        raise BackendUnavailableError(
            "backend 'triton' runs CPU tensors only under the Triton interpreter: "
            "set TRITON_INTERPRET=1 before nerfgan_distill is imported")
    if name == "triton" and device.type not in ("cpu", "cuda"):
        raise BackendUnavailableError(f"backend 'triton' does not support {device.type} tensors")


# The answer depends only on the arguments and on this process's fixed machine state,
# so torch.compile may treat it as a constant instead of tracing (and breaking) on it.
@torch.compiler.assume_constant_result
def resolve(backend: str, device: torch.device, cpu_kernel_slower: bool = False) -> str:
    """The concrete backend that runs an op whose inputs live on `device`. `cpu_kernel_slower`:
    the op measured its cpu kernel slower than torch for these arguments, so 'auto' (and only
    'auto', not an explicit backend or environment choice) runs torch for CPU tensors."""
    if backend not in NAMES + ("auto",):
        raise ValueError(f"backend must be one of 'auto', {', '.join(repr(n) for n in NAMES)}; got {backend!r}")
    source = f"backend={backend!r}"
    if backend == "auto":
        backend = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
        source = f"{ENV_VAR}={backend!r}"
        if backend not in NAMES + ("auto",):
            raise ValueError(f"{ENV_VAR} must be one of 'auto', {', '.join(NAMES)}; got {backend!r}")
    if backend == "auto":
        if device.type == "cuda":
            for name in ("cuda", "triton"):
                if status(name).usable:
                    return name
        elif device.type == "cpu" and status("cpu").usable and not cpu_kernel_slower:
            return "cpu"
        return "torch"
    if backend != "torch":
        st = status(backend)
        if not st.built:
            raise BackendUnavailableError(f"{source}: {st.detail}")
        try:
            _check_device(backend, device)
        except BackendUnavailableError as exc:
            raise BackendUnavailableError(f"{source}: {exc}") from None
        if device.type == "cuda" and not st.usable:  # e.g. no code for this GPU's architecture
            raise BackendUnavailableError(f"{source}: {st.detail}")
    return backend
