"""Build script: setuptools drives CMake for the native module nerfgan_distill._C.

Environment variables (read at install time):
  NERFGAN_DISTILL_BUILD_CUDA   auto (default): build the CUDA backend iff nvcc is found;
                               0: skip it; 1: require it.
  NERFGAN_DISTILL_CUDA_ARCHS   CMake CUDA architectures, default
                               "80-real;86-real;89-real;90-real;90-virtual".
  CUDACXX / CUDA_HOME          where to look for nvcc (then PATH, then /usr/local/cuda).
  MAX_JOBS                     parallel compile jobs (default: all cores).
  CMAKE_ARGS                   extra arguments passed to CMake.
"""
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
DEFAULT_CUDA_ARCHS = "80-real;86-real;89-real;90-real;90-virtual"


def read_version() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    return re.search(r'^version = "([^"]+)"', text, re.M).group(1)


def find_nvcc():
    candidates = [os.environ.get("CUDACXX")]
    if os.environ.get("CUDA_HOME"):
        candidates.append(os.path.join(os.environ["CUDA_HOME"], "bin", "nvcc"))
    candidates += [shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"]
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return os.path.realpath(path)
    return None


def cuda_cmake_args():
    """CMake arguments for the CUDA backend, and the reason when it is skipped."""
    mode = os.environ.get("NERFGAN_DISTILL_BUILD_CUDA", "auto").strip().lower()
    if mode not in ("auto", "0", "1"):
        sys.exit(f"NERFGAN_DISTILL_BUILD_CUDA must be auto, 0 or 1, got {mode!r}")
    if mode == "0":
        return ["-DNGD_WITH_CUDA=OFF",
                "-DNGD_CUDA_SKIP_REASON=disabled by NERFGAN_DISTILL_BUILD_CUDA=0 at install time"]
    nvcc = find_nvcc()
    if nvcc is None:
        if mode == "1":
            sys.exit("NERFGAN_DISTILL_BUILD_CUDA=1 but nvcc was not found (set CUDACXX or CUDA_HOME)")
        return ["-DNGD_WITH_CUDA=OFF", "-DNGD_CUDA_SKIP_REASON=nvcc was not found at install time"]
    archs = os.environ.get("NERFGAN_DISTILL_CUDA_ARCHS", DEFAULT_CUDA_ARCHS).replace(",", ";").strip()
    if not archs or archs.lower() == "native":
        sys.exit("NERFGAN_DISTILL_CUDA_ARCHS must list explicit architectures, e.g. '90-real;90-virtual'")
    print(f"nerfgan_distill: building the CUDA backend with {nvcc} for {archs}", flush=True)
    return ["-DNGD_WITH_CUDA=ON", f"-DCMAKE_CUDA_COMPILER={nvcc}", f"-DNGD_CUDA_ARCHS={archs}"]


def find_ninja():
    """The ninja binary of the build env (the ninja wheel), or any on PATH; None: use Make."""
    try:
        import ninja

        candidate = os.path.join(getattr(ninja, "BIN_DIR", "") or "", "ninja")
        if os.path.isfile(candidate):
            return candidate
    except ImportError:
        pass
    return shutil.which("ninja")


class CMakeExtension(Extension):
    def __init__(self, name: str):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext: Extension) -> None:
        import pybind11  # a build requirement, available in the isolated build env

        built = Path(self.get_ext_fullpath(ext.name)).resolve()
        build_dir = Path(self.build_temp).resolve() / ext.name
        build_dir.mkdir(parents=True, exist_ok=True)
        args = [
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={built.parent}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DCMAKE_BUILD_TYPE={'Debug' if self.debug else 'Release'}",
            f"-DNGD_VERSION={read_version()}",
            *cuda_cmake_args(),
            *shlex.split(os.environ.get("CMAKE_ARGS", "")),
        ]
        ninja = find_ninja()
        if ninja:
            args += ["-GNinja", f"-DCMAKE_MAKE_PROGRAM={ninja}"]
        # Each isolated build env lives in a new temporary folder; a CMake cache that
        # points at an older one cannot be reused, so reconfigure from scratch then.
        stamp = build_dir / "nerfgan_distill_configure_args.txt"
        if stamp.exists() and stamp.read_text() != "\n".join(args):
            shutil.rmtree(build_dir)
            build_dir.mkdir(parents=True)
        jobs = os.environ.get("MAX_JOBS") or str(os.cpu_count() or 1)
        subprocess.run(["cmake", str(ROOT), *args], cwd=build_dir, check=True)
        stamp.write_text("\n".join(args))
        subprocess.run(["cmake", "--build", ".", "--parallel", jobs], cwd=build_dir, check=True)
        self.copy_into_source_tree(built)

    @staticmethod
    def copy_into_source_tree(built: Path) -> None:
        """Also put _C beside the sources (git ignores it), as an in-place build would, so
        `python -c "import nerfgan_distill"` run from the checkout finds the same module."""
        target = ROOT / "nerfgan_distill" / built.name
        if built.exists() and built != target and os.access(target.parent, os.W_OK):
            shutil.copy2(built, target)


setup(
    packages=[
        "nerfgan_distill",
        "nerfgan_distill.ops",
        "nerfgan_distill.bench",
        "nerfgan_distill.teacher",
        "nerfgan_distill.networks",
        "nerfgan_distill.student",
        "nerfgan_distill.distill",
        "nerfgan_distill.viewer",
        "nerfgan_distill.triton_kernels",
    ],
    # Triton kernels live in the top-level triton_kernels/ folder of the source tree
    # but install inside our package: a top-level "triton_kernels" would clash with
    # the PyPI package of that name.
    package_dir={"nerfgan_distill.triton_kernels": "triton_kernels"},
    # The bundled teacher's weights and training record (tools/train_bundled_teacher.py); the viewer's page.
    package_data={"nerfgan_distill.teacher": ["bundled.safetensors", "bundled.json"],
                  "nerfgan_distill.viewer": ["static/*"]},
    ext_modules=[CMakeExtension("nerfgan_distill._C")],
    cmdclass={"build_ext": CMakeBuild},
    zip_safe=False,
)
