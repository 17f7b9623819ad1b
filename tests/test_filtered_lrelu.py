"""filtered_lrelu and StyleGAN3's filter design: the reference and every backend against
fixtures made from the official StyleGAN3 code (tools/make_stylegan3_fixtures.py),
gradients (fp64 gradcheck, second order), layouts, compile and bad inputs."""
import math
from pathlib import Path

import pytest
import torch

from helpers import backend_params, in_layout
from nerfgan_distill import ops
from nerfgan_distill.networks.filters import kaiser_attenuation, kaiser_beta, lowpass_filter

BACKENDS = backend_params()
FIXTURES = torch.load(Path(__file__).parent / "fixtures" / "stylegan3_parity.pt", weights_only=True)
CASES = FIXTURES["filtered_lrelu"]
KAISER12 = lowpass_filter(12, 2, 12, 32)


def test_fixtures_come_from_the_official_code():
    assert FIXTURES["source"].startswith("NVlabs/stylegan3")


@pytest.mark.parametrize("case", FIXTURES["filters"], ids=lambda c: str(c["args"]))
def test_lowpass_filter_matches_official_design(case):
    ours = lowpass_filter(*case["args"][:4], radial=case["args"][4])
    if case["out"] is None:
        assert ours is None
    else:  # scipy designs in fp64 then rounds; so do we (1 fp32 ulp apart at most)
        torch.testing.assert_close(ours, case["out"], rtol=0, atol=2e-8)


def test_kaiser_design_numbers_from_the_docs():
    # ../shared/docs/training.md B.7: T-1024 L0 and L2 filters.
    attenuation = kaiser_attenuation(12, 12 / 16)
    assert attenuation == pytest.approx(67.17, abs=0.01) and kaiser_beta(attenuation) == pytest.approx(6.4437, abs=1e-4)
    assert kaiser_beta(kaiser_attenuation(24, 9.65 / 32)) == pytest.approx(5.404, abs=1e-3)
    torch.testing.assert_close(KAISER12[:6], torch.tensor([0.000792, 0.010018, 0.038950, 0.092413, 0.156526,
                                                           0.201302]), rtol=0, atol=1e-6)
    assert kaiser_beta(20.0) == 0.0


def _run(case, backend, device, dtype=None):
    dtype = dtype or case["x"].dtype
    x = case["x"].to(device, dtype).requires_grad_(True)
    b = None if case["b"] is None else case["b"].to(device, dtype).requires_grad_(True)
    fu = None if case["fu"] is None else case["fu"].to(device)
    fd = None if case["fd"] is None else case["fd"].to(device)
    y = ops.filtered_lrelu(x, fu, fd, b, **case["kwargs"], backend=backend)
    grads = torch.autograd.grad(y, [x] + ([b] if b is not None else []), case["dy"].to(device, dtype))
    return y, grads[0], grads[1] if b is not None else None


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["name"])
def test_reference_matches_official(case):
    y, dx, db = _run(case, "torch", "cpu")
    torch.testing.assert_close(y, case["y"], rtol=0, atol=1e-12)
    torch.testing.assert_close(dx, case["dx"], rtol=0, atol=1e-12)
    if db is not None:
        torch.testing.assert_close(db, case["db"], rtol=0, atol=1e-12)


def _close(got, want, tol):
    scale = want.abs().max().item() or 1.0  # the measure: error relative to the output's max
    torch.testing.assert_close(got.cpu().double(), want, rtol=0, atol=tol * scale)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c["name"])
def test_backends_match_official_fp64_and_fp32(backend, device, case):
    # fp64: the official code scales the fp32 filter by the gain in fp32, the kernels in fp64.
    y, dx, db = _run(case, backend, device)
    _close(y, case["y"], 1e-7)
    _close(dx, case["dx"], 1e-7)
    if db is not None:
        _close(db, case["db"], 1e-7)
    y, dx, db = _run(case, backend, device, torch.float32)  # the targets: 1e-5 forward, 1e-4 gradients
    _close(y, case["y"], 1e-5)
    _close(dx, case["dx"], 1e-4)
    if db is not None:
        _close(db, case["db"], 1e-4)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("case", [CASES[0], CASES[4]], ids=lambda c: c["name"])
def test_gradcheck_and_gradgradcheck_fp64(backend, device, case):
    x = case["x"][:1, :1, :6, :6].to(device).clone().requires_grad_(True)  # interpreter-sized
    b = None if case["b"] is None else case["b"][:1].to(device).clone().requires_grad_(True)
    fu = None if case["fu"] is None else case["fu"].to(device)
    fd = None if case["fd"] is None else case["fd"].to(device)
    kwargs = dict(case["kwargs"])
    if kwargs.get("padding") == [9, 8, 9, 8]:
        kwargs["padding"] = [10, 10, 10, 10]  # a 6x6 crop with 12-tap filters needs more room
    kwargs.pop("clamp", None)  # the clamp's kink is not differentiable where gradcheck probes it

    def fn(x, b):
        return ops.filtered_lrelu(x, fu, fd, b, **kwargs, backend=backend)

    inputs = (x, b)
    assert torch.autograd.gradcheck(fn, inputs)
    if backend == "triton" and device == "cpu" and fu is not None and fu.ndim == 2:
        return  # second order with dense filters: a minute in the interpreter (compiled on a GPU it is not)
    assert torch.autograd.gradgradcheck(fn, inputs)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("layout", ["channels_last", "transposed", "sliced"])
def test_layouts(backend, device, layout):
    x = torch.randn(2, 3, 11, 9, device=device)
    b = torch.randn(3, device=device)
    f = KAISER12.to(device)
    kwargs = dict(up=2, down=2, padding=[9, 8, 9, 8], clamp=1.0)
    y = ops.filtered_lrelu(in_layout(x, layout), f, f, b, **kwargs, backend=backend)
    torch.testing.assert_close(y, ops.filtered_lrelu(x, f, f, b, **kwargs, backend="torch"), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_defaults_are_a_scaled_leaky_relu(backend, device):
    x = torch.randn(2, 3, 5, 4, device=device)
    y = ops.filtered_lrelu(x, backend=backend)
    torch.testing.assert_close(y, torch.nn.functional.leaky_relu(x, 0.2) * math.sqrt(2))


def test_cpu_half_precision():
    case = CASES[0]
    for dtype in (torch.float16, torch.bfloat16):
        y, _, _ = _run(case, "cpu", "cpu", dtype)
        _close(y, case["y"], 4 * torch.finfo(dtype).eps)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gpu_half_precision(backend, dtype):
    for case in CASES[:3]:
        y, _, _ = _run(case, backend, "cuda", dtype)
        _close(y, case["y"], 4 * torch.finfo(dtype).eps)


def test_torch_compile_fullgraph_matches_eager():
    x, b = torch.randn(2, 4, 10, 10), torch.randn(4)
    fn = lambda x: ops.filtered_lrelu(x, KAISER12, KAISER12, b, up=2, down=2, padding=[9, 8, 9, 8],  # noqa: E731
                                      backend="cpu")
    torch.testing.assert_close(torch.compile(fn, fullgraph=True)(x), fn(x))


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(x=torch.zeros(2, 3, 4)), ValueError, r"x must be \[N, C, H, W\]"),
    (dict(x=torch.zeros(1, 2, 4, 4, dtype=torch.int64)), TypeError, "x must be float32"),
    (dict(fu=torch.zeros(2, 2, 2)), ValueError, "f must be a non-empty"),
    (dict(fd=torch.ones(3, requires_grad=True)), ValueError, "f must not require grad"),
    (dict(b=torch.zeros(3)), ValueError, r"b must have shape \[2\]"),
    (dict(b=torch.zeros(2, dtype=torch.float64)), TypeError, "b has dtype torch.float64"),
    (dict(up=0), ValueError, "up must be >= 1"),
    (dict(down=2.0), TypeError, "down must be an int"),
    (dict(padding=[1, 2, 3]), TypeError, "padding must be an int"),
    (dict(padding=-3), ValueError, "gives no output pixel"),
    (dict(gain=0.0), ValueError, "gain must be > 0"),
    (dict(slope=-0.1), ValueError, "slope must be >= 0"),
    (dict(clamp=float("nan")), ValueError, "clamp must be finite"),
    (dict(flip_filter=1), TypeError, "flip_filter must be a bool"),
    (dict(backend="fast"), ValueError, "backend"),
])
def test_bad_arguments_name_the_argument(kwargs, error, match):
    args = dict(x=torch.zeros(1, 2, 4, 4), fu=None, fd=None, b=None)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        ops.filtered_lrelu(**args)


# Geometries beyond StyleGAN3's, each against the reference on every backend: odd factors,
# asymmetric and negative padding, dense and separable filters of different lengths, the
# identity filter on one side; small enough for the Triton interpreter.
GEOMETRIES = {
    "up3_down2_dense": dict(fu=torch.rand(5, 4) + 0.1, fd=torch.rand(3, 3), up=3, down=2, padding=[2, 1, 3, 0]),
    "up1_down3_separable": dict(fu=None, fd=torch.rand(7) + 0.1, up=1, down=3, padding=[3, 3, 2, 4]),
    "up2_crop": dict(fu=KAISER12, fd=None, up=2, down=1, padding=[-1, 2, 5, -2]),
    "dense_up_separable_down": dict(fu=torch.rand(4, 6), fd=torch.rand(5) + 0.1, up=2, down=2, padding=[4, 3, 2, 5]),
    "down_wider_than_filter": dict(fu=torch.rand(3), fd=torch.rand(2), up=1, down=4, padding=[1, 2, 1, 2]),
}


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("name", GEOMETRIES)
@pytest.mark.parametrize("flip_filter", [False, True])
def test_geometries_match_the_reference(backend, device, name, flip_filter):
    g = torch.Generator().manual_seed(3)
    spec = dict(GEOMETRIES[name])
    fu, fd = [None if f is None else f.double().to(device) for f in (spec.pop("fu"), spec.pop("fd"))]
    x = torch.randn(2, 3, 7, 9, generator=g, dtype=torch.float64).to(device).requires_grad_(True)
    b = torch.randn(3, generator=g, dtype=torch.float64).to(device).requires_grad_(True)
    kwargs = dict(spec, clamp=1.5, flip_filter=flip_filter)
    y = ops.filtered_lrelu(x, fu, fd, b, **kwargs, backend=backend)
    want = ops.filtered_lrelu(x, fu, fd, b, **kwargs, backend="torch")
    torch.testing.assert_close(y, want, rtol=0, atol=1e-12)
    dy = torch.randn(y.shape, generator=g, dtype=torch.float64).to(device)
    got_grads = torch.autograd.grad(y, [x, b], dy)
    want_grads = torch.autograd.grad(want, [x, b], dy)
    for got, ref in zip(got_grads, want_grads):
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-11)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_gradcheck_dense_filters_with_bias(backend, device):
    spec = dict(GEOMETRIES["up3_down2_dense"])
    fu, fd = spec.pop("fu").double().to(device), spec.pop("fd").double().to(device)
    x = torch.randn(1, 2, 4, 5, dtype=torch.float64, device=device, requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, b: ops.filtered_lrelu(x, fu, fd, b, **spec, backend=backend), (x, b))


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_fused_backends_save_one_byte_per_intermediate_sample(backend, device):
    """What backward keeps: the filters and a uint8 sign code per sample of the upsampled image,
    not the float intermediate a composition of upfirdn2d and bias_act would keep."""
    x = torch.randn(1, 4, 12, 12, device=device, requires_grad=True)
    f = KAISER12.to(device)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = ops.filtered_lrelu(x, f, f, up=2, down=2, padding=[9, 8, 9, 8], backend=backend)
    codes = [t for t in saved if t.dtype == torch.uint8]
    assert len(codes) == 1 and list(codes[0].shape) == [1, 4, 24 + 17 - 11, 24 + 17 - 11]
    assert all(t.numel() <= f.numel() for t in saved if t.is_floating_point()), [t.shape for t in saved]
    with torch.no_grad():  # nothing to save: no codes are written
        torch.testing.assert_close(ops.filtered_lrelu(x, f, f, up=2, down=2, padding=[9, 8, 9, 8], backend=backend), y)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_bias_gradient_alone_and_all_padding_input(backend, device):
    x = torch.randn(2, 3, 6, 5, device=device)
    b = torch.randn(3, device=device, requires_grad=True)
    kwargs = dict(up=2, down=2, padding=[9, 8, 9, 8], clamp=0.5)
    (db,) = torch.autograd.grad(ops.filtered_lrelu(x, KAISER12.to(device), KAISER12.to(device), b, **kwargs,
                                                   backend=backend).sum(), [b])
    (want,) = torch.autograd.grad(ops.filtered_lrelu(x, KAISER12.to(device), KAISER12.to(device), b, **kwargs,
                                                     backend="torch").sum(), [b])
    torch.testing.assert_close(db, want, rtol=1e-5, atol=1e-5)
    empty = torch.zeros(1, 2, 0, 3, device=device)
    y = ops.filtered_lrelu(empty, None, None, None, padding=[0, 0, 2, 2], backend=backend)
    assert y.shape == (1, 2, 4, 3) and not y.any()
