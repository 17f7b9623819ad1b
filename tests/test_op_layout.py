"""Every kernel op follows the one pattern of nerfgan_distill/ops/__init__.py: its files
under one name (op, reference, header, cpu, cuda, bindings, triton, test, benchmark), a
bind_<op> that the module calls, launchers named <op>_<pass>_{cpu,cuda} in C++ and
<pass> in Triton, and the build lists its sources. Nothing in csrc/ is left unclaimed."""
import importlib
import re
from pathlib import Path

import pytest

from nerfgan_distill import _native
from nerfgan_distill.bench import SUITES
from nerfgan_distill.ops import KERNEL_OPS

ROOT = Path(__file__).resolve().parent.parent
PASSES = ("forward", "backward", "weight_grad")
# Ops whose native and Triton kernels are still compositions of other ops' kernels
# (strict: once the files exist this xfail fails, and the entry must go). None today.
NO_KERNELS_YET: dict[str, str] = {}

pytestmark = pytest.mark.skipif(not (ROOT / "csrc").is_dir(), reason="not a source checkout")


def op_params(check_native: bool = True):
    return [pytest.param(op, marks=pytest.mark.xfail(strict=True, reason=NO_KERNELS_YET[op]))
            if check_native and op in NO_KERNELS_YET else op for op in KERNEL_OPS]


def files_of(op: str) -> dict[str, Path]:
    return {"op": ROOT / "nerfgan_distill/ops" / f"{op}.py",
            "reference": ROOT / "nerfgan_distill/ops" / f"{op}_ref.py",
            "test": ROOT / "tests" / f"test_{op}.py",
            "benchmark": ROOT / "nerfgan_distill/bench" / f"{op}.py",
            "header": ROOT / "csrc/include/nerfgan_distill" / f"{op}.h",
            "cpu": ROOT / "csrc/cpu" / f"{op}.cpp",
            "cuda": ROOT / "csrc/cuda" / f"{op}.cu",
            "bindings": ROOT / "csrc/bindings" / f"{op}.cpp",
            "triton": ROOT / "triton_kernels" / f"{op}.py"}


@pytest.mark.parametrize("op", op_params(check_native=False))
def test_every_op_has_its_python_files(op):
    files = files_of(op)
    missing = [kind for kind in ("op", "reference", "test", "benchmark") if not files[kind].is_file()]
    assert not missing, f"{op}: missing {missing}"
    assert op in SUITES, f"{op}: bench/{op}.py is not registered in bench.SUITES"


@pytest.mark.parametrize("op", op_params())
def test_every_op_has_its_kernel_files(op):
    files = files_of(op)
    missing = [kind for kind in ("header", "cpu", "cuda", "bindings", "triton") if not files[kind].is_file()]
    assert not missing, f"{op}: missing {[str(files[k].relative_to(ROOT)) for k in missing]}"


def _passes_declared(header: str, op: str) -> list[str]:
    """The passes whose <pass>_cpu launcher the op's header declares in namespace <op>."""
    assert re.search(rf"namespace {op}\b", header), f"{op}.h: no namespace {op}"
    return [p for p in PASSES if re.search(rf"\bvoid {p}_cpu\(const \w+& p\);", header)]


@pytest.mark.parametrize("op", op_params())
def test_launchers_follow_one_naming_scheme(op):
    files = files_of(op)
    header = files["header"].read_text()
    passes = _passes_declared(header, op)
    assert passes, f"{op}.h declares no <pass>_cpu launcher"
    for p in passes:
        assert re.search(rf"\bvoid {p}_cuda\(const \w+& p, int device, std::uintptr_t stream\);", header), \
            f"{op}.h: {p}_cpu without {p}_cuda"
    bindings = files["bindings"].read_text()
    assert re.search(rf"\bvoid bind_{op}\(py::module_& m\)", bindings), f"bindings/{op}.cpp has no bind_{op}"
    assert f"bind_{op}(m);" in (ROOT / "csrc/bindings/module.cpp").read_text(), f"module.cpp never calls bind_{op}"
    for p in passes:
        assert f'"{op}_{p}"' in bindings, f"bindings/{op}.cpp does not bind {op}_{p}"
    triton = importlib.import_module(f"nerfgan_distill.triton_kernels.{op}") if _triton() else None
    if triton is not None:
        for p in passes:
            assert callable(getattr(triton, p, None)), f"triton_kernels/{op}.py has no launcher {p}()"
    if not _native.load_error():
        native = _native.load()
        for p in passes:
            assert hasattr(native, f"{op}_{p}_cpu"), f"_C has no {op}_{p}_cpu"
            if native.build_info()["cuda"]:
                assert hasattr(native, f"{op}_{p}_cuda"), f"_C has no {op}_{p}_cuda"


def _triton() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("op", op_params())
def test_the_build_lists_the_op_sources(op):
    cmake = (ROOT / "CMakeLists.txt").read_text()
    for kind in ("cpu", "cuda", "bindings"):
        path = files_of(op)[kind].relative_to(ROOT).as_posix()
        assert path in cmake, f"CMakeLists.txt does not build {path}"


def test_nothing_in_csrc_is_unclaimed():
    """Each source file belongs to an op (its name, or <op>_<part>) or is one of the shared ones."""
    shared = {"csrc/cpu/cpu_dispatch.cpp", "csrc/bindings/module.cpp", "csrc/bindings/binding.h",
              "csrc/include/nerfgan_distill/common.h", "csrc/include/nerfgan_distill/cpu_vec.h",
              "csrc/include/nerfgan_distill/cuda_utils.cuh", "csrc/include/nerfgan_distill/host_half.h",
              "csrc/include/nerfgan_distill/kernel_codes.h", "csrc/include/nerfgan_distill/philox.h",
              "csrc/include/nerfgan_distill/vec_math.h"}
    stray = []
    for path in sorted((ROOT / "csrc").rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(ROOT).as_posix()
        stem = path.name.split(".")[0]
        if rel not in shared and not any(stem == op or stem.startswith(op + "_") for op in KERNEL_OPS):
            stray.append(rel)
    assert not stray, f"files that belong to no op: {stray} (name them after their op, or list them as shared)"
