"""Shared test helpers (conftest.py holds the fixtures)."""
import pytest
import torch

from nerfgan_distill.dispatch import status


def backend_params():
    """(backend, device) pairs to test each kernel on: CPU ones always, GPU ones with a GPU."""
    # The [test] extra installs triton, so a missing triton fails (test_backends) rather than skips.
    triton_cpu = pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU, triton runs compiled")
    gpu = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
    cuda_built = pytest.mark.skipif(not status("cuda").built, reason="CUDA backend not built")
    return [
        pytest.param("cpu", "cpu", id="cpu"),
        pytest.param("triton", "cpu", id="triton-interpreter", marks=triton_cpu),
        pytest.param("cuda", "cuda", id="cuda", marks=gpu + [cuda_built]),
        pytest.param("triton", "cuda", id="triton-cuda", marks=gpu),
    ]

