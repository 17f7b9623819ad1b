"""Backend discovery and selection."""
import importlib
import importlib.util
from pathlib import Path

import pytest
import torch

import nerfgan_distill
from nerfgan_distill import BackendUnavailableError, backends, ops
from nerfgan_distill import dispatch
from nerfgan_distill.dispatch import BackendStatus, resolve, runs_on, status

REPO = Path(__file__).resolve().parents[1]


def test_backends_lists_all_four():
    found = nerfgan_distill.backends()
    assert list(found) == ["cuda", "triton", "cpu", "torch"]
    assert all(isinstance(s, BackendStatus) for s in found.values())
    assert found["torch"].usable and found["cpu"].usable
    assert found["cpu"].info.get("openmp") is True


def test_triton_is_installed_by_the_test_extra():
    # pip install ".[test]" brings triton: its tests must run, not skip.
    assert status("triton").built, status("triton").detail
    assert status("triton").usable, status("triton").detail


def test_cuda_status_reports_archs_or_the_reason():
    st = status("cuda")
    if st.built:
        assert "90" in st.info["cuda_archs"] and st.info["cuda_version"]
    else:
        assert st.detail.startswith("CUDA backend not built: ")


def test_auto_picks_cpu_for_cpu_tensors():
    assert resolve("auto", torch.device("cpu")) == "cpu"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_auto_picks_cuda_for_cuda_tensors():
    expected = "cuda" if status("cuda").usable else "triton"
    assert resolve("auto", torch.device("cuda")) == expected


def test_environment_variable_replaces_auto(monkeypatch):
    monkeypatch.setenv("NERFGAN_DISTILL_BACKEND", "torch")
    assert resolve("auto", torch.device("cpu")) == "torch"
    assert resolve("cpu", torch.device("cpu")) == "cpu"  # an explicit choice still wins
    monkeypatch.setenv("NERFGAN_DISTILL_BACKEND", "fastest")
    with pytest.raises(ValueError, match="NERFGAN_DISTILL_BACKEND must be one of"):
        resolve("auto", torch.device("cpu"))


def test_environment_variable_routes_ops(monkeypatch):
    called = []
    module = importlib.import_module("nerfgan_distill.ops.bias_act")  # the attribute is the function
    monkeypatch.setattr(module, "bias_act_ref", lambda *args: called.append(args) or args[0])
    monkeypatch.setenv("NERFGAN_DISTILL_BACKEND", "torch")
    ops.bias_act(torch.zeros(2, 3))
    assert len(called) == 1


def test_unbuilt_backend_error_says_why(monkeypatch):
    fake = BackendStatus("cuda", False, False, "CUDA backend not built: nvcc was not found at install time")
    original = dispatch.status
    monkeypatch.setattr(dispatch, "status", lambda name: fake if name == "cuda" else original(name))
    with pytest.raises(BackendUnavailableError, match="nvcc was not found at install time"):
        resolve("cuda", torch.device("cpu"))
    # auto falls back silently instead
    assert resolve("auto", torch.device("cpu")) == "cpu"


def test_wrong_device_for_backend():
    with pytest.raises(BackendUnavailableError, match="backend 'cpu' runs on CPU tensors"):
        resolve("cpu", torch.device("meta"))


def test_unknown_backend_name():
    with pytest.raises(ValueError, match="backend must be one of"):
        resolve("opencl", torch.device("cpu"))
    with pytest.raises(ValueError, match="unknown backend"):
        status.__wrapped__("opencl")


def test_public_api():
    assert backends is nerfgan_distill.backends
    assert nerfgan_distill.__version__ != "0+unknown", "tests must run against the installed package"


@pytest.mark.parametrize("archs,capability,expected", [
    ("80-real,86-real,89-real,90-real,90-virtual", (9, 0), True),
    ("80-real,86-real,89-real,90-real,90-virtual", (8, 6), True),
    ("80-real", (8, 9), True),  # sm_80 SASS runs on later 8.x GPUs
    ("80-real,86-real,89-real,90-real,90-virtual", (12, 0), True),  # through the sm_90 PTX
    ("80-real,86-real,89-real,90-real", (12, 0), False),  # SASS does not cross major versions
    ("80-real,86-real,89-real,90-real,90-virtual", (7, 5), False),
    ("90", (9, 0), True),
])
def test_runs_on_matches_cuda_compatibility_rules(archs, capability, expected):
    assert runs_on(archs, capability) is expected


def test_cpu_kernel_honours_torch_threads():
    x = torch.randn(4, 64, 64, 64)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.bias_act(x, act="lrelu", backend="cpu")
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(one, ops.bias_act(x, act="lrelu", backend="cpu"), rtol=0, atol=0)


def test_explicit_cuda_on_a_gpu_without_code_says_why(monkeypatch):
    fake = BackendStatus("cuda", True, False, "CUDA 13.0, archs 80-real; no code for this GPU (sm_75)")
    original = dispatch.status
    monkeypatch.setattr(dispatch, "status", lambda name: fake if name == "cuda" else original(name))
    with pytest.raises(BackendUnavailableError, match=r"no code for this GPU \(sm_75\)"):
        resolve("cuda", torch.device("cuda"))


@pytest.mark.skipif(not (REPO / "tools" / "sanitize_kernels.py").exists(), reason="needs the source tree")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_sanitizer_driver_calls_run(dtype):
    # tools/sanitize_kernels.py is what compute-sanitizer runs on a GPU machine; its calls
    # must be valid, so run the same calls on the cpu backend here.
    spec = importlib.util.spec_from_file_location("sanitize_kernels", REPO / "tools" / "sanitize_kernels.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    names = []
    for name, thunk in module.calls(torch.device("cpu"), dtype, backend="cpu"):
        thunk()
        names.append(name.split()[0])
    assert set(names) == {"bias_act", "upfirdn2d", "sample_triplanes", "composite_rays", "importance_depths",
                          "render_triplanes", "modulated_conv2d"}
