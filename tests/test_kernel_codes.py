"""The shared codes (dtype, activation, mode, the renderer's limits) agree everywhere: the
generated C++ header is what nerfgan_distill/kernel_codes.py generates, the compiled module
holds the same values, and the Triton kernels and the ops read them from that one file."""
from pathlib import Path

import pytest
import torch

from nerfgan_distill import _native, kernel_codes
from nerfgan_distill.ops.bias_act_ref import ACTIVATIONS

ROOT = Path(__file__).resolve().parent.parent


def test_generated_header_is_up_to_date():
    header = ROOT / kernel_codes.HEADER
    if not header.is_file():
        pytest.skip("not a source checkout")
    assert header.read_text() == kernel_codes.header_text(), (
        "csrc/include/nerfgan_distill/kernel_codes.h is stale: run python -m nerfgan_distill.kernel_codes --write")


def test_compiled_module_has_the_same_codes():
    if _native.load_error():
        pytest.skip(_native.load_error())
    compiled = _native.load().compiled_codes()
    assert compiled == {"DType": kernel_codes.DTYPE, "Act": kernel_codes.ACT, "Mode": kernel_codes.BIAS_ACT_MODE,
                        "Pass": kernel_codes.FILTERED_LRELU_PASS, "Sign": kernel_codes.FILTERED_LRELU_SIGN,
                        "limits": {name: value for name, (_, value) in kernel_codes.LIMITS.items()}}


def test_python_and_triton_read_the_codes_from_kernel_codes():
    assert {name: a.code for name, a in ACTIVATIONS.items()} == kernel_codes.ACT
    assert {str(d).removeprefix("torch."): code for d, code in _native.DTYPE_CODES.items()} == kernel_codes.DTYPE
    assert set(_native.DTYPE_CODES) == {torch.float32, torch.float64, torch.float16, torch.bfloat16}
    pytest.importorskip("triton")
    from nerfgan_distill.triton_kernels import (
        bias_act,
        filtered_lrelu,
        importance_depths,
        render_triplanes,
    )

    for name in ("relu", "lrelu", "tanh", "sigmoid", "elu", "selu", "softplus", "swish"):
        assert getattr(bias_act, f"_{name.upper()}").value == kernel_codes.ACT[name]
    assert bias_act._FORWARD.value == kernel_codes.BIAS_ACT_MODE["forward"]
    assert bias_act._GRAD.value == kernel_codes.BIAS_ACT_MODE["grad"]
    assert (filtered_lrelu._ACTIVATE.value, filtered_lrelu._MASKED.value) == (
        kernel_codes.FILTERED_LRELU_PASS["activate"], kernel_codes.FILTERED_LRELU_PASS["masked"])
    assert (filtered_lrelu._NEGATIVE.value, filtered_lrelu._CLAMPED.value) == (
        kernel_codes.FILTERED_LRELU_SIGN["negative"], kernel_codes.FILTERED_LRELU_SIGN["clamped"])
    assert render_triplanes.MAX_SAMPLES == importance_depths.MAX_COARSE == kernel_codes.RENDER_MAX_SAMPLES
    assert (render_triplanes.MAX_CHANNELS, render_triplanes.MAX_OUTPUTS) == (
        kernel_codes.RENDER_CUDA_MAX_CHANNELS, kernel_codes.RENDER_CUDA_MAX_OUTPUTS)


def test_header_generation_follows_the_definitions(monkeypatch):
    """A new member or limit shows up in the header (so the up-to-date test can fail)."""
    monkeypatch.setitem(kernel_codes.ENUMS, "Mode", ("ngd::bias_act", ("Forward", "Grad", "Grad2", "Grad3")))
    monkeypatch.setitem(kernel_codes.LIMITS, "MaxSamples", ("ngd::render_triplanes", 1024))
    text = kernel_codes.header_text()
    assert "enum Mode : int { kForward = 0, kGrad = 1, kGrad2 = 2, kGrad3 = 3 };" in text
    assert "constexpr int kNumModes = 4;" in text
    assert "constexpr int64_t kMaxSamples = 1024;" in text
    if (ROOT / kernel_codes.HEADER).is_file():
        assert text != (ROOT / kernel_codes.HEADER).read_text()
