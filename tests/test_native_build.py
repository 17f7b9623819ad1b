"""The installed native module: present, torch-free, loadable without a GPU
driver, and holding SASS for the default architectures when CUDA was built."""
import glob
import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import nerfgan_distill
from helpers import assert_cpu_isa_builds_agree
from nerfgan_distill import _native


def native_path():
    return _native.load().__file__


def test_native_module_is_installed():
    assert _native.load_error() is None
    info = _native.build_info()
    assert info["version"] == importlib.metadata.version("nerfgan-distill")


def test_native_module_links_neither_torch_nor_the_cuda_driver():
    if shutil.which("ldd") is None:
        pytest.skip("ldd not available")
    linked = subprocess.run(["ldd", native_path()], capture_output=True, text=True, check=True).stdout
    for library in ("libtorch", "libc10", "libcuda.so", "libcudart.so"):
        assert library not in linked, f"_C must not link {library}:\n{linked}"


def test_import_and_cpu_op_work_without_a_visible_gpu():
    code = ("import torch, nerfgan_distill as n; "
            "y = n.ops.bias_act(torch.ones(2, 3), torch.ones(3), act='relu', backend='cpu'); "
            "assert abs(float(y.sum()) - 6 * 2 * 2 ** 0.5) < 1e-5; print(n.backends()['cuda'])")
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def find_cuobjdump():
    found = shutil.which("cuobjdump")
    if found:
        return found
    # the nvidia-cuda-cuobjdump wheel installs its binary inside site-packages
    for base in sys.path:
        matches = glob.glob(os.path.join(base, "nvidia", "**", "bin", "cuobjdump"), recursive=True)
        if matches:
            return matches[0]
    return None


def test_cuda_module_holds_code_for_default_archs():
    info = _native.build_info()
    if not info.get("cuda"):
        pytest.skip(f"CUDA backend not built: {info.get('cuda_skip_reason')}")
    cuobjdump = find_cuobjdump()
    if cuobjdump is None:
        pytest.skip("cuobjdump not found (pip install nvidia-cuda-cuobjdump)")
    elves = subprocess.run([cuobjdump, "--list-elf", native_path()], capture_output=True, text=True,
                           check=True).stdout
    ptx = subprocess.run([cuobjdump, "--list-ptx", native_path()], capture_output=True, text=True,
                         check=True).stdout
    archs = info["cuda_archs"].split(",")
    for arch in archs:
        number, _, kind = arch.partition("-")
        listing = ptx if kind == "virtual" else elves
        assert f"sm_{number}" in listing, f"no {kind or 'real'} code for sm_{number}:\n{elves}\n{ptx}"


def installed_files() -> list[str]:
    """The files of the distribution the imported package came from: a source tree's
    egg-info (an earlier build) can be on sys.path too, and its SOURCES.txt is no install."""
    here = Path(nerfgan_distill.__file__).resolve()
    for dist in importlib.metadata.distributions(name="nerfgan-distill"):
        if Path(dist.locate_file("nerfgan_distill/__init__.py")).resolve() == here and dist.read_text("RECORD"):
            return [str(f) for f in dist.files]
    pytest.skip(f"nerfgan_distill at {here.parent} is not a wheel install (editable or source tree)")


def test_triton_kernels_install_inside_the_package():
    files = installed_files()
    assert any(f.startswith("nerfgan_distill/triton_kernels/") for f in files)
    assert not any(f.startswith("triton_kernels/") for f in files), "a top-level triton_kernels would clash"


def test_every_subpackage_is_installed():
    # Tests import the source tree; the installed copy (what the console script runs) only
    # has the packages setup.py lists.
    files = set(installed_files())
    package = Path(nerfgan_distill.__file__).parent
    for init in package.glob("*/__init__.py"):
        if init.parent.name != "__pycache__":
            assert f"nerfgan_distill/{init.parent.name}/__init__.py" in files, f"setup.py misses {init.parent.name}"


ISA_PROBE = r"""
import importlib, sys, torch
import nerfgan_distill as nd
from nerfgan_distill import _native
from nerfgan_distill.ops.bias_act_ref import ACTIVATIONS
gen = torch.Generator().manual_seed(0)
x = (torch.randn(3, 16, 37, dtype=torch.float64, generator=gen) * 4).float().requires_grad_(True)
b = torch.randn(16, generator=gen).requires_grad_(True)
outs = []
for act in ACTIVATIONS:
    y = nd.ops.bias_act(x, b, act=act, clamp=3.0, backend="cpu")
    gx, gb = torch.autograd.grad(y, (x, b), torch.ones_like(y), create_graph=True)
    outs += [y, gx, gb] + list(torch.autograd.grad((gx * gx).sum(), (x, b), allow_unused=True))
modconv = importlib.import_module("nerfgan_distill.ops.modulated_conv2d")  # the CPU twin of the CUDA kernel
xs, ws = torch.randn(2, 37, 9, 11, generator=gen), torch.randn(70, 37, 3, 3, generator=gen)
ss = torch.randn(2, 37, generator=gen)
for dtype in (torch.float32, torch.float64, torch.bfloat16):
    xd, wd, sd = xs.to(dtype).requires_grad_(True), ws.clone().requires_grad_(True), (ss + 1).requires_grad_(True)
    y = modconv._cpu_twin(xd, wd, sd, padding=1, act="swish", clamp=2.0)
    outs += [y, *torch.autograd.grad(y, (xd, wd, sd), torch.ones_like(y))]  # the twin's backward kernels
from nerfgan_distill.networks.filters import lowpass_filter
xf = torch.randn(2, 5, 13, 11, generator=gen).requires_grad_(True)
bf, kaiser = torch.randn(5, generator=gen), lowpass_filter(12, 2, 12, 32)
for fu, fd in ((kaiser, kaiser), (torch.rand(4, 5, generator=gen), torch.rand(3, 3, generator=gen))):
    y = nd.ops.filtered_lrelu(xf, fu, fd, bf, up=2, down=2, padding=[9, 8, 9, 8], clamp=1.0, backend="cpu")
    outs += [y, *torch.autograd.grad(y, (xf,), torch.ones_like(y))]  # both passes, separable and dense
torch.save([o for o in outs if o is not None], sys.argv[1])
print(_native.build_info()["cpu_isa"])
"""


def test_cpu_isa_variants_agree_bitwise(tmp_path):
    assert_cpu_isa_builds_agree(ISA_PROBE, tmp_path)
