"""nerfgan_distill: NeRF-GAN distillation (EG3D teacher -> convolutional student)
with fused CUDA, Triton and C++ kernels behind one Python API."""
import importlib.util as _importlib_util
import sys as _sys
from importlib.metadata import PackageNotFoundError, version as _dist_version
from pathlib import Path as _Path


def _alias_source_tree_triton_kernels() -> None:
    """In a source checkout triton_kernels/ sits beside this package instead of inside
    it (setup.py installs it as nerfgan_distill.triton_kernels); map it to that name."""
    here = _Path(__file__).resolve().parent
    source = here.parent / "triton_kernels"
    if (here / "triton_kernels").is_dir() or not (source / "__init__.py").is_file():
        return
    spec = _importlib_util.spec_from_file_location(
        __name__ + ".triton_kernels", source / "__init__.py", submodule_search_locations=[str(source)])
    module = _importlib_util.module_from_spec(spec)
    _sys.modules[spec.name] = module
    spec.loader.exec_module(module)


_alias_source_tree_triton_kernels()

from . import ops  # noqa: E402
from .dispatch import BackendStatus, BackendUnavailableError, backends  # noqa: E402
from .models import load, save  # noqa: E402

try:
    __version__ = _dist_version("nerfgan-distill")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = ["ops", "load", "save", "backends", "BackendStatus", "BackendUnavailableError", "__version__"]
