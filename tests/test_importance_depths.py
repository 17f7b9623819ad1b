"""importance_depths (EG3D's sample_importance) against fixtures made from EG3D's
ImportanceRenderer (tools/make_render_fixtures.py), with EG3D's own uniforms injected;
every kernel backend against the torch reference (importance_depths_ref); bad inputs."""
import importlib
from pathlib import Path

import pytest
import torch
from helpers import backend_params, call_native

from nerfgan_distill import _native, kernel_codes, ops
from nerfgan_distill.dispatch import BackendUnavailableError
from nerfgan_distill.ops.importance_depths_ref import importance_from_uniforms, importance_uniforms, sample_pdf

BACKENDS = backend_params()
FIXTURES = torch.load(Path(__file__).parent / "fixtures" / "render_ops.pt", weights_only=True)

@pytest.mark.parametrize("case", FIXTURES["sample_importance"], ids=lambda c: c["name"])
def test_importance_depths_match_official(case):
    got = importance_from_uniforms(case["z_vals"], case["weights"], case["u"])
    torch.testing.assert_close(got, case["out"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("case", FIXTURES["sample_pdf_det"], ids=lambda c: c["name"])
def test_deterministic_sample_pdf_matches_official(case):
    u = torch.linspace(0, 1, case["n_importance"]).expand(case["bins"].shape[0], -1)
    torch.testing.assert_close(sample_pdf(case["bins"], case["weights"], u), case["out"], rtol=0, atol=1e-6)


def test_importance_depths_public_api():
    case = FIXTURES["sample_importance"][0]
    z, w, n = case["z_vals"], case["weights"], case["n_importance"]
    det = ops.importance_depths(z, w, n, deterministic=True)
    u = torch.linspace(0, 1, n).expand(z.shape[0] * z.shape[1], n)
    torch.testing.assert_close(det, importance_from_uniforms(z, w, u))
    a = ops.importance_depths(z, w, n, generator=torch.Generator().manual_seed(1))
    b = ops.importance_depths(z, w, n, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, det)
    assert (a >= z[..., :1, :]).all() and (a <= z[..., -1:, :]).all()
    with pytest.raises(ValueError, match=r"weights must be \[N, R, D-1, 1\]"):
        ops.importance_depths(z, w[:, :, 1:], n)
    with pytest.raises(ValueError, match="n_importance must be an int >= 1"):
        ops.importance_depths(z, w, 0)


def test_importance_depths_needs_four_coarse_depths_and_a_bool_deterministic():
    z = torch.linspace(2.0, 3.0, 6).expand(2, 3, 6).unsqueeze(-1).contiguous()
    w = torch.rand(2, 3, 5, 1, generator=torch.Generator().manual_seed(0))
    for d in (2, 3):  # sample_pdf would index an empty set of inner weights
        with pytest.raises(ValueError, match=r"depths_coarse must be \[N, R, D, 1\] with D >= 4"):
            ops.importance_depths(z[:, :, :d].contiguous(), w[:, :, :d - 1].contiguous(), 4, deterministic=True)
    # D = 4, the smallest: one inner weight, so the fine depths spread over the middle bin.
    got = ops.importance_depths(z[:, :, :4].contiguous(), w[:, :, :3].contiguous(), 4, deterministic=True)
    want = importance_from_uniforms(z[:, :, :4], w[:, :, :3], torch.linspace(0, 1, 4).expand(6, 4))
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    for flag in ("no", 1, None):
        with pytest.raises(TypeError, match="importance_depths: deterministic must be a bool"):
            ops.importance_depths(z, w, 4, deterministic=flag)


# --- importance_depths on the kernel backends ------------------------------------------------
# Every backend consumes the u drawn in torch, so each must match importance_from_uniforms
# (the reference) to rounding; fp16/bf16 compute in fp32 and are compared with the reference
# on the same values in fp32.

IMPORTANCE_BACKENDS = BACKENDS + [pytest.param("torch", "cpu", id="torch")]


def importance_inputs(device, n=2, r=37, d=9, dtype=torch.float64, seed=0, peaked=False):
    g = torch.Generator().manual_seed(seed)
    z = torch.sort(torch.rand(n, r, d, 1, generator=g, dtype=torch.float64) * 1.5 + 2.0, dim=2).values
    w = torch.rand(n, r, d - 1, 1, generator=g, dtype=torch.float64)
    if peaked:  # one dominant interval per ray, the rest nearly empty
        w = w ** 32
    return z.to(device=device, dtype=dtype), w.to(device=device, dtype=dtype)


def importance_reference(z, w, u):
    """The reference in fp32 (fp64 for fp64) on the same values, in the inputs' dtype and device."""
    ct = torch.float64 if z.dtype == torch.float64 else torch.float32
    want = importance_from_uniforms(z.cpu().to(ct), w.cpu().to(ct), u.cpu().to(ct))
    return want.to(device=z.device, dtype=z.dtype)


def assert_importance_matches(z, w, n_importance, backend, deterministic, seed=3, exact=False):
    n, r = z.shape[:2]
    u = importance_uniforms(n * r, n_importance, deterministic, torch.Generator(z.device).manual_seed(seed), z)
    got = ops.importance_depths(z, w, n_importance, deterministic=deterministic,
                                generator=torch.Generator(z.device).manual_seed(seed), backend=backend)
    assert got.shape == (n, r, n_importance, 1) and got.dtype == z.dtype and got.device == z.device
    assert not got.requires_grad
    want = importance_reference(z, w, u)
    if exact or z.dtype == torch.float64:
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12, equal_nan=True)
    elif z.dtype == torch.float32:
        torch.testing.assert_close(got, want, rtol=1e-5, atol=2e-5, equal_nan=True)
    else:  # fp16/bf16: one rounding of the fp32 result
        eps = torch.finfo(z.dtype).eps
        torch.testing.assert_close(got.double(), want.double(), rtol=eps, atol=eps * 4, equal_nan=True)
    return got


@pytest.mark.parametrize("backend,device", IMPORTANCE_BACKENDS)
@pytest.mark.parametrize("case", FIXTURES["sample_importance"], ids=lambda c: c["name"])
def test_importance_kernels_match_official(case, backend, device):
    z, w, u = (case[k].to(device) for k in ("z_vals", "weights", "u"))
    if backend == "torch":
        got = importance_from_uniforms(z, w, u)
    else:
        got = torch.ops.nerfgan_distill.importance_depths(z, w, u.to(z.dtype), backend)
    torch.testing.assert_close(got.cpu(), case["out"], rtol=0, atol=1e-6)
    torch.testing.assert_close(got.cpu(), importance_from_uniforms(*(case[k] for k in ("z_vals", "weights", "u"))),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend,device", IMPORTANCE_BACKENDS)
@pytest.mark.parametrize("deterministic", [True, False], ids=["det", "random"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [dict(d=4, di=1), dict(d=5, di=7), dict(d=48, di=48), dict(n=1, r=1, d=13, di=2),
                                   dict(n=3, r=67, d=7, di=33)], ids=lambda s: "-".join(f"{k}{v}" for k, v in s.items()))
def test_importance_kernels_match_reference(backend, device, deterministic, dtype, shape):
    shape = dict(shape)
    di = shape.pop("di")
    z, w = importance_inputs(device, dtype=dtype, **shape)
    assert_importance_matches(z, w, di, backend, deterministic)


@pytest.mark.parametrize("backend,device", IMPORTANCE_BACKENDS)
@pytest.mark.parametrize("weights", ["zero", "peaked", "nan"])
def test_importance_kernels_special_weights(backend, device, weights):
    z, w = importance_inputs(device, r=19, d=11, dtype=torch.float32, peaked=weights == "peaked")
    if weights == "zero":  # a flat pdf: the fine depths spread evenly over the inner bins
        w = torch.zeros_like(w)
    if weights == "nan":  # the reference gives the whole ray NaN; so do the kernels
        w[0, 3, 4] = float("nan")
        w[1, 5, 0] = float("nan")
        w[1, 6, -1] = float("nan")
    for deterministic in (True, False):
        got = assert_importance_matches(z, w, 17, backend, deterministic)
        if weights == "nan":
            assert got[0, 3].isnan().all() and got[1, 5].isnan().all() and got[1, 6].isnan().all()
            assert got[0, :3].isfinite().all()
        else:
            assert got.isfinite().all()


@pytest.mark.parametrize("backend,device", IMPORTANCE_BACKENDS)
def test_importance_kernels_non_contiguous(backend, device):
    z, w = importance_inputs(device, n=5, r=7, d=9, dtype=torch.float32)
    z_t, w_t = z.transpose(0, 1), w.transpose(0, 1)  # [R, N, ...], strided
    assert not z_t.is_contiguous()
    assert_importance_matches(z_t, w_t, 6, backend, False)
    big_z = torch.cat([z, z], dim=2)  # every other depth of a sorted, doubled ray: sorted and strided
    z_s = torch.sort(big_z, dim=2).values[:, :, ::2]
    w_s = torch.cat([w, w, w], dim=2)[:, :, 1:17:2]
    assert not z_s.is_contiguous() and not w_s.is_contiguous()
    assert_importance_matches(z_s, w_s, 5, backend, True)


@pytest.mark.parametrize("backend", ["cpu", pytest.param("triton", marks=pytest.mark.skipif(
    torch.cuda.is_available(), reason="with a GPU, triton runs compiled"))])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_importance_kernels_half_precision_on_cpu(backend, dtype):
    z, w = importance_inputs("cpu", r=29, d=12, dtype=dtype)
    for deterministic in (True, False):
        assert_importance_matches(z, w, 9, backend, deterministic)
    # The torch path computes in the input dtype: close to the kernels, not equal.
    a = ops.importance_depths(z, w, 9, deterministic=True, backend=backend)
    b = ops.importance_depths(z, w, 9, deterministic=True, backend="torch")
    assert a.dtype == b.dtype == dtype
    torch.testing.assert_close(a.float(), b.float(), rtol=0, atol=0.05)


@pytest.mark.parametrize("n,r", [(0, 3), (2, 0)], ids=["no-batch", "no-rays"])
@pytest.mark.parametrize("backend,device", IMPORTANCE_BACKENDS)
def test_importance_kernels_empty(backend, device, n, r):
    z = torch.zeros(n, r, 6, 1, device=device)
    w = torch.zeros(n, r, 5, 1, device=device)
    for deterministic in (True, False):
        got = ops.importance_depths(z, w, 3, deterministic=deterministic, backend=backend)
        assert got.shape == (n, r, 3, 1) and got.dtype == z.dtype


@pytest.mark.parametrize("backend,device", IMPORTANCE_BACKENDS)
def test_importance_kernels_no_gradient(backend, device):
    z, w = importance_inputs(device, r=5, d=6, dtype=torch.float32)
    w.requires_grad_(True)
    got = ops.importance_depths(z, w, 4, deterministic=True, backend=backend)
    assert not got.requires_grad and got.grad_fn is None
    torch.testing.assert_close(got, importance_from_uniforms(z, w, torch.linspace(0, 1, 4).expand(10, 4).to(device)))


def test_importance_kernels_bad_inputs():
    z, w = importance_inputs("cpu", r=5, d=6, dtype=torch.float32)
    with pytest.raises(ValueError, match="backend must be one of"):
        ops.importance_depths(z, w, 4, backend="metal")
    with pytest.raises(BackendUnavailableError, match="backend='cuda'"):  # not built, or not CUDA tensors
        ops.importance_depths(z, w, 4, backend="cuda")
    with pytest.raises((ValueError, TypeError), match="weights is on|weights has dtype"):
        ops.importance_depths(z, w.double(), 4, backend="cpu")
    # The kernels' bound on D: 'auto' runs larger D on torch, a named kernel backend refuses it.
    limit = kernel_codes.RENDER_MAX_SAMPLES
    importance_module = importlib.import_module("nerfgan_distill.ops.importance_depths")
    triton_importance = importlib.import_module("nerfgan_distill.triton_kernels.importance_depths")
    assert limit == importance_module.MAX_COARSE == triton_importance.MAX_COARSE
    z_big, w_big = importance_inputs("cpu", n=1, r=2, d=limit + 1, dtype=torch.float32)
    with pytest.raises(ValueError, match=f"at most {limit} coarse depths per ray"):
        ops.importance_depths(z_big, w_big, 4, backend="cpu")
    torch.testing.assert_close(ops.importance_depths(z_big, w_big, 4, deterministic=True),
                               ops.importance_depths(z_big, w_big, 4, deterministic=True, backend="torch"))
    z_max, w_max = z_big[:, :, :limit], w_big[:, :, :limit - 1]
    assert_importance_matches(z_max, w_max, 3, "cpu", True)
    native = _native.load()
    with pytest.raises(ValueError, match="need 4 <= coarse"):
        call_native(native, "importance_depths_forward", "ImportanceDepthsParams", rays=1, coarse=3, fine=1)
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        call_native(native, "importance_depths_forward", "ImportanceDepthsParams", rays=0, coarse=4, fine=1, dtype=2)
    with pytest.raises(ValueError, match="must not be null"):
        call_native(native, "importance_depths_forward", "ImportanceDepthsParams", rays=1, coarse=4, fine=1)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_importance_kernels_opcheck(backend, device):
    z, w = importance_inputs(device, n=1, r=3, d=6, dtype=torch.float32)
    u = torch.rand(3, 4, device=device)
    torch.library.opcheck(torch.ops.nerfgan_distill.importance_depths, (z, w, u, backend))
