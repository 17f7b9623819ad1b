"""Shared test helpers (conftest.py holds the fixtures)."""
import os
import subprocess
import sys

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


def in_layout(t, layout):
    """A 4-D t with the same values in another memory layout: 'contiguous' (as given),
    'channels_last', 'transposed' (H and W strides swapped) or 'sliced' (every other element
    of a larger tensor, along C and W)."""
    if layout == "channels_last":
        return t.contiguous(memory_format=torch.channels_last)
    if layout == "transposed":
        return t.transpose(2, 3).contiguous().transpose(2, 3)
    if layout == "sliced":
        big = t.new_zeros(t.shape[0], 2 * t.shape[1], t.shape[2], 2 * t.shape[3])
        big[:, ::2, :, ::2] = t
        return big[:, ::2, :, ::2]
    assert layout == "contiguous", layout
    return t


def assert_cpu_isa_builds_agree(probe: str, tmp_path, cwd=None):
    """Run `probe` (Python source that saves a list of tensors to sys.argv[1] and prints the CPU
    ISA it ran) with the baseline kernels forced, then with the best build, and require the
    AVX2 build's tensors to equal the baseline's bit for bit (skips on a baseline-only machine)."""
    results = {}
    for forced in ("baseline", None):
        env = {k: v for k, v in os.environ.items() if k != "NERFGAN_DISTILL_CPU_ISA"}
        if forced:
            env["NERFGAN_DISTILL_CPU_ISA"] = forced
        path = tmp_path / f"{forced or 'best'}.pt"
        run = subprocess.run([sys.executable, "-c", probe, str(path)], env=env, capture_output=True, text=True,
                             timeout=300, cwd=cwd)
        assert run.returncode == 0, run.stderr
        results[run.stdout.strip()] = torch.load(path)
    if "avx2" not in results:
        pytest.skip("this machine runs the baseline kernels only")
    for base, best in zip(results["baseline"], results["avx2"]):
        assert torch.equal(base, best), "the AVX2 kernels must give the baseline's results bit for bit"


def write_tiny_teacher(path, seed: int = 7):
    """A tiny teacher (teacher.tiny_config, seeded random weights) saved at `path`; returns path."""
    from nerfgan_distill import teacher

    kwargs, resolution = teacher.tiny_config()
    G = teacher.TriPlaneGenerator(**kwargs)
    G.load_state_dict(teacher.random_state(G, seed=seed))
    G.neural_rendering_resolution = resolution
    teacher.save(G, path)
    return path


def call_native(native, kernel: str, params: str, threads: int = 1, **fields):
    """_C.<kernel>_cpu on a _C.<params> struct filled by field name (tensors as addresses,
    None as a null pointer): the native entry point with nothing of ops/ in between."""
    struct = getattr(native, params)()
    for name, value in fields.items():
        setattr(struct, name, value.data_ptr() if isinstance(value, torch.Tensor) else (0 if value is None else value))
    getattr(native, f"{kernel}_cpu")(struct, threads)
