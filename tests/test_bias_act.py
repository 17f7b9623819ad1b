"""bias_act: every backend against the torch reference, and the reference against
StyleGAN2-ADA's definition written out elementwise in NumPy and against fixtures
made from the official code (tools/make_stylegan_fixtures.py)."""
import importlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import backend_params
from nerfgan_distill import BackendUnavailableError, ops
from nerfgan_distill.ops.bias_act_ref import ACTIVATIONS
from nerfgan_distill.dispatch import status

ACTS = list(ACTIVATIONS)
BACKENDS = backend_params()


def numpy_bias_act(x, b, dim, act, alpha, gain, clamp):
    """StyleGAN2-ADA's bias_act, one formula per activation, in float64 NumPy."""
    x = np.asarray(x, dtype=np.float64)
    if b is not None:
        shape = [1] * x.ndim
        shape[dim] = -1
        x = x + np.asarray(b, dtype=np.float64).reshape(shape)
    selu_scale, selu_alpha = 1.0507009873554805, 1.6732632423543772
    sig = 1.0 / (1.0 + np.exp(-x))
    y = {
        "linear": x,
        "relu": np.maximum(x, 0),
        "lrelu": np.where(x > 0, x, alpha * x),
        "tanh": np.tanh(x),
        "sigmoid": sig,
        "elu": np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
        "selu": selu_scale * np.where(x > 0, x, selu_alpha * np.expm1(np.minimum(x, 0))),
        "softplus": np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, 20)))),
        "swish": x * sig,
    }[act] * gain
    return np.clip(y, -clamp, clamp) if clamp is not None else y


def make_inputs(shape, dim, device, dtype=torch.float32, bias=True, scale=2.0, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).to(device=device, dtype=dtype)
    b = torch.randn(shape[dim], generator=gen, dtype=torch.float64).to(device=device, dtype=dtype) if bias else None
    return x, b


# --- the reference against the definition ----------------------------------------------------

def test_default_alpha_and_gain_follow_stylegan2():
    sqrt2 = math.sqrt(2)
    expected_gain = {"linear": 1, "relu": sqrt2, "lrelu": sqrt2, "tanh": 1, "sigmoid": 1, "elu": 1,
                     "selu": 1, "softplus": 1, "swish": sqrt2}
    assert {name: spec.default_gain for name, spec in ACTIVATIONS.items()} == pytest.approx(expected_gain)
    assert ACTIVATIONS["lrelu"].default_alpha == 0.2
    assert all(spec.default_alpha == 0 for name, spec in ACTIVATIONS.items() if name != "lrelu")


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("clamp", [None, 0.7])
def test_reference_matches_definition(act, clamp):
    x, b = make_inputs((3, 4, 5), 1, "cpu", torch.float64, scale=12.0)  # reaches softplus' threshold
    spec = ACTIVATIONS[act]
    y = ops.bias_act(x, b, act=act, clamp=clamp, backend="torch")
    want = numpy_bias_act(x.numpy(), b.numpy(), 1, act, spec.default_alpha, spec.default_gain, clamp)
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-12, atol=1e-12)


OFFICIAL = torch.load(Path(__file__).parent / "fixtures" / "stylegan_ops.pt", weights_only=True)["bias_act"]


@pytest.mark.parametrize("case", OFFICIAL, ids=lambda c: f"{c['act']}-clamp{c['clamp']}")
def test_reference_matches_official(case):
    # tests/fixtures/stylegan_ops.pt: the official EG3D bias_act (impl='ref') in float64
    y = ops.bias_act(case["x"], case["b"], act=case["act"], clamp=case["clamp"], backend="torch")
    torch.testing.assert_close(y, case["y"], rtol=0, atol=1e-12)


def test_reference_alpha_gain_dim_arguments():
    x, b = make_inputs((2, 3, 5), 2, "cpu", torch.float64)
    y = ops.bias_act(x, b, dim=-1, act="lrelu", alpha=0.1, gain=3.0, clamp=1.5, backend="torch")
    want = numpy_bias_act(x.numpy(), b.numpy(), 2, "lrelu", 0.1, 3.0, 1.5)
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-12, atol=1e-12)


# --- every backend against the reference -----------------------------------------------------

def reference(x, b, **kwargs):
    """The torch reference in float64, as the ground truth for any input dtype."""
    return ops.bias_act(x.double(), None if b is None else b.double(), backend="torch", **kwargs)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("clamp", [None, 0.8])
@pytest.mark.parametrize("bias", [True, False])
def test_forward_backward_double_backward_match_reference(backend, device, act, clamp, bias):
    x, b = make_inputs((3, 5, 7), 1, device, bias=bias)
    x.requires_grad_(True)
    params = [x] + ([b.requires_grad_(True)] if bias else [])
    y = ops.bias_act(x, b, act=act, clamp=clamp, backend=backend)
    assert y.dtype == x.dtype and y.shape == x.shape and y.device == x.device

    x64 = x.detach().double().requires_grad_(True)
    b64 = b.detach().double().requires_grad_(True) if bias else None
    params64 = [x64] + ([b64] if bias else [])
    y64 = reference(x64, b64, act=act, clamp=clamp)
    torch.testing.assert_close(y.double(), y64, rtol=1e-5, atol=1e-5)

    dy = torch.randn_like(y)
    grads = torch.autograd.grad(y, params, dy, create_graph=True)
    grads64 = torch.autograd.grad(y64, params64, dy.double(), create_graph=True)
    for got, want in zip(grads, grads64):
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)

    # An R1-style second derivative: differentiate a function of the gradients again.
    def second(gs, ps):
        loss = sum((g * g).sum() for g in gs)
        if not loss.requires_grad:
            return [torch.zeros_like(p) for p in ps]
        out = torch.autograd.grad(loss, ps, allow_unused=True)
        return [torch.zeros_like(p) if o is None else o for o, p in zip(out, ps)]

    for got, want in zip(second(grads, params), second(grads64, params64)):
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("act", ACTS)
def test_gradcheck_and_gradgradcheck_fp64(backend, device, act):
    x, b = make_inputs((2, 3, 4), 1, device, torch.float64)
    x.requires_grad_(True)
    b.requires_grad_(True)
    fn = lambda x, b: ops.bias_act(x, b, act=act, clamp=2.5, backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, b), eps=1e-6, atol=1e-5)
    assert torch.autograd.gradgradcheck(fn, (x, b), eps=1e-6, atol=1e-5)


TRANSCENDENTAL = ["tanh", "sigmoid", "elu", "selu", "softplus", "swish"]


def assert_as_accurate_as_torch(x, got, torch32, exact, what, atol=1e-45):
    """Error against the fp64 value within 4 ulp + atol, or within twice the error torch's own
    fp32 path makes there (where an fp32 formula loses precision for everyone, e.g. sigmoid's
    1 / (1 + exp(-s)) once exp(-s) overflows)."""
    exact32 = exact.float().abs()
    ulp = (torch.nextafter(exact32, torch.full_like(exact32, math.inf)) - exact32).double()
    bound = 4 * ulp + 2 * (torch32.double() - exact).abs() + atol
    err = (got.double() - exact).abs()
    excess = err - bound
    worst = int(excess.argmax())
    assert excess[worst] <= 0, (f"{what}: {int((excess > 0).sum())} values off, worst at x={float(x[worst]):.6g}: "
                                f"{float(got[worst]):.9g}, want {float(exact[worst]):.9g} (torch fp32 "
                                f"{float(torch32[worst]):.9g})")


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("act", TRANSCENDENTAL)
def test_float32_across_the_whole_range(backend, device, act):
    """fp32 values and gradients against the fp64 reference from -110 to 110, with the edges of
    exp (overflow at 88.7, subnormal results), tiny |x| and the softplus threshold: the CPU
    kernel's own vectorised exp/log1p/expm1/tanh (csrc vec_math.h) must hold everywhere. 44000
    elements and no bias, so the CPU runs its long vectorised chunks."""
    edges = [0.0, -0.0, 1e-30, -1e-30, 1e-7, -1e-7, 0.625, -0.625, 20.0, 20.0001, 19.9999, 88.72, 88.73, -87.33,
             -103.9, -104.1, 1e-38, -1e-38]
    x = torch.cat([torch.linspace(-110, 110, 40001), torch.linspace(-2, 2, 4001), torch.tensor(edges)]).to(device)
    grads = {}
    for name, xs, be in [("got", x, backend), ("torch32", x, "torch"), ("exact", x.double(), "torch")]:
        xr = xs.clone().requires_grad_(True)
        y = ops.bias_act(xr, None, dim=0, act=act, gain=1.0, backend=be)
        (dx,) = torch.autograd.grad(y, xr, torch.ones_like(y))
        grads[name] = (y.detach().cpu(), dx.cpu())
    got, torch32, exact = grads["got"], grads["torch32"], grads["exact"]
    assert_as_accurate_as_torch(x.cpu(), got[0], torch32[0], exact[0], f"{act} value")
    # f' formulas add terms of order 1 (swish's sig (1 + s (1 - sig)) crosses 0): 1 ulp of 1 more.
    assert_as_accurate_as_torch(x.cpu(), got[1], torch32[1], exact[1], f"{act} gradient", atol=1.2e-7)


def strided_cases(device):
    """(name, x, dim) with layouts that are not plain contiguous, and odd sizes."""
    base = torch.randn(4, 6, 5, 3, dtype=torch.float64).to(device=device, dtype=torch.float32)
    return [
        ("channels_last", base.contiguous(memory_format=torch.channels_last), 1),
        ("transposed", base.transpose(1, 3), 1),
        ("sliced", base[:, ::2, 1:, :], 1),
        ("expanded", torch.randn(1, 6, 1, 1, device=device).expand(4, 6, 5, 3), 1),
        ("last_dim", base, 3),
        ("size_one_bias_dim", base[:, :1], 1),
        ("one_dim", torch.randn(37, device=device), 0),
        ("odd_large", torch.randn(3, 7, 33, 65, device=device), 1),  # spans several kernel blocks
        ("empty", torch.randn(0, 6, 5, device=device), 1),
    ]


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("case", range(9), ids=[c[0] for c in strided_cases("cpu")])
def test_layouts_and_odd_shapes(backend, device, case):
    name, x, dim = strided_cases(device)[case]
    b = torch.randn(x.shape[dim], device=device)
    x = x.clone() if name != "expanded" else x  # keep the stride-0 view for that case
    xr = x.detach().requires_grad_(True)
    y = ops.bias_act(xr, b, dim=dim, act="lrelu", clamp=1.0, backend=backend)
    want = reference(x, b, dim=dim, act="lrelu", clamp=1.0)
    torch.testing.assert_close(y.double(), want, rtol=1e-5, atol=1e-5)
    if name == "channels_last":
        assert y.is_contiguous(memory_format=torch.channels_last), "the layout of x should be kept"
    dy = torch.randn_like(y)
    (dx,) = torch.autograd.grad(y, xr, dy)
    x64 = x.detach().double().requires_grad_(True)
    (dx64,) = torch.autograd.grad(reference(x64, b, dim=dim, act="lrelu", clamp=1.0), x64, dy.double())
    torch.testing.assert_close(dx.double(), dx64, rtol=1e-5, atol=1e-5)


# Above the CPU kernel's parallel threshold (32768 elements), cut as it cuts the work: the bias
# innermost (rows), one value for all (chunks of 16384, the last one partial) and runs of a stride.
LARGE_CASES = [("rows", (1031, 64), 1, True), ("no_bias", (3 * 16384 + 17,), 0, False),
               ("size_one_bias", (40001, 1), 1, True), ("runs", (5, 7, 1501), 1, True)]


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("case", LARGE_CASES, ids=[c[0] for c in LARGE_CASES])
def test_large_tensors_every_work_split(backend, device, case):
    _, shape, dim, bias = case
    x, b = make_inputs(shape, dim, device, bias=bias)
    xr = x.detach().requires_grad_(True)
    y = ops.bias_act(xr, b, dim=dim, act="lrelu", clamp=1.5, backend=backend)
    torch.testing.assert_close(y.double(), reference(x, b, dim=dim, act="lrelu", clamp=1.5), rtol=1e-5, atol=1e-5)
    dy = torch.randn_like(y)
    (dx,) = torch.autograd.grad(y, xr, dy)
    x64 = x.detach().double().requires_grad_(True)
    (dx64,) = torch.autograd.grad(reference(x64, b, dim=dim, act="lrelu", clamp=1.5), x64, dy.double())
    torch.testing.assert_close(dx.double(), dx64, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("clamp", [None, 3.0])
def test_nan_and_inf_follow_the_reference(backend, device, act, clamp):
    special = [float("nan"), float("inf"), float("-inf"), 0.0, -0.0, 25.0, -25.0, 1e-30]
    x = torch.tensor(special, device=device).reshape(2, 4)
    y = ops.bias_act(x, torch.zeros(4, device=device), act=act, clamp=clamp, backend=backend)
    want = ops.bias_act(x, torch.zeros(4, device=device), act=act, clamp=clamp, backend="torch")
    torch.testing.assert_close(y, want, equal_nan=True, rtol=1e-6, atol=1e-6)
    dy = torch.ones_like(x)
    xr = x.clone().requires_grad_(True)
    (dx,) = torch.autograd.grad(ops.bias_act(xr, act=act, clamp=clamp, backend=backend), xr, dy)
    xw = x.clone().requires_grad_(True)
    (dx_want,) = torch.autograd.grad(ops.bias_act(xw, act=act, clamp=clamp, backend="torch"), xw, dy)
    # At +-inf autograd's formulas give NaN or 0 by accident of form. So do they at NaN under
    # a clamp (0 * f'(NaN)); there the fused kernels give exactly 0: the clamp mask wins.
    compared = ~torch.isinf(x) & ~(torch.isnan(x) & (clamp is not None))
    torch.testing.assert_close(dx[compared], dx_want[compared], equal_nan=True, rtol=1e-6, atol=1e-6)
    if clamp is not None:
        assert (dx[torch.isnan(x)] == 0).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("act", ["lrelu", "tanh", "swish"])
def test_cpu_half_precision_is_fp32_math_rounded_once(dtype, act):
    x, b = make_inputs((2, 8, 9), 1, "cpu", dtype)
    y = ops.bias_act(x, b, act=act, clamp=256, backend="cpu")
    want = reference(x, b, act=act, clamp=256).to(dtype)  # exact math, rounded once
    ulp = torch.finfo(dtype).eps
    torch.testing.assert_close(y.double(), want.double(), rtol=ulp, atol=ulp)
    # Special values convert correctly through the hand-written fp16/bf16 conversions.
    special = torch.tensor([0.0, -0.0, 1e-7, -3e-5, 6e4, -6e4, float("inf"), float("-inf"), float("nan")],
                           dtype=dtype)
    out = ops.bias_act(special.reshape(1, -1), None, act="linear", backend="cpu").reshape(-1)
    torch.testing.assert_close(out, special, equal_nan=True, rtol=0, atol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("act", ACTS)
def test_gpu_half_precision_matches_fp32_reference(backend, dtype, act):
    x, b = make_inputs((4, 32, 17, 9), 1, "cuda", dtype)
    x.requires_grad_(True)
    y = ops.bias_act(x, b, act=act, clamp=256, backend=backend)
    want = reference(x.detach(), b, act=act, clamp=256)
    tol = 2 * torch.finfo(dtype).eps
    torch.testing.assert_close(y.double(), want, rtol=tol, atol=tol)
    dy = torch.randn_like(y)
    (dx,) = torch.autograd.grad(y, x, dy)
    x64 = x.detach().double().requires_grad_(True)
    (dx64,) = torch.autograd.grad(reference(x64, b, act=act, clamp=256), x64, dy.double())
    torch.testing.assert_close(dx.double(), dx64, rtol=4 * tol, atol=4 * tol)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_runs_on_the_current_stream_and_under_cuda_graphs(backend):
    x, b = make_inputs((8, 64, 32, 32), 1, "cuda")
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        y = ops.bias_act(x, b, act="lrelu", backend=backend)
    stream.synchronize()
    torch.testing.assert_close(y, ops.bias_act(x, b, act="lrelu", backend="torch"))
    compiled = torch.compile(lambda x, b: ops.bias_act(x, b, act="lrelu", backend=backend) * 2,
                             mode="reduce-overhead")
    for _ in range(3):
        out = compiled(x, b)
    torch.testing.assert_close(out, 2 * ops.bias_act(x, b, act="lrelu", backend="torch"))


def test_kernel_outputs_are_poisoned_during_tests():
    # The conftest fixture fills outputs with NaN before the kernels write them; this keeps the
    # other tests able to catch a kernel that skips elements.
    import importlib

    module = importlib.import_module("nerfgan_distill.ops.bias_act")
    assert torch.isnan(module.empty_output(torch.zeros(3))).all()


# --- custom op registration ------------------------------------------------------------------

@pytest.mark.parametrize("backend,device", BACKENDS)
def test_opcheck(backend, device):
    x, b = make_inputs((2, 3, 4), 1, device)
    g, h = torch.randn_like(x), torch.randn_like(x)
    args = (1, "swish", 0.0, math.sqrt(2), 1.5, backend)
    lib = torch.ops.nerfgan_distill
    torch.library.opcheck(lib.bias_act, (x.requires_grad_(True), b.requires_grad_(True)) + args)
    torch.library.opcheck(lib.bias_act, (x.detach(), None) + args)
    torch.library.opcheck(lib.bias_act_grad, (g.requires_grad_(True), x, b) + args)
    torch.library.opcheck(lib.bias_act_grad2, (g.detach(), h, x.detach(), b.detach()) + args)


def test_torch_compile_fullgraph_matches_eager():
    x, b = make_inputs((2, 8, 6, 6), 1, "cpu")
    fn = lambda x, b: ops.bias_act(x, b, act="lrelu", clamp=2.0, backend="cpu") + 1  # noqa: E731
    compiled = torch.compile(fn, fullgraph=True)
    torch.testing.assert_close(compiled(x, b), fn(x, b))


def test_third_order_gradient_raises_clearly():
    x, b = make_inputs((2, 3), 1, "cpu", torch.float64)
    x.requires_grad_(True)
    y = ops.bias_act(x, b, act="tanh", backend="cpu")
    (dx,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    (ddx,) = torch.autograd.grad(dx.sum(), x, create_graph=True)
    with pytest.raises(NotImplementedError, match="third order"):
        torch.autograd.grad(ddx.sum(), x)


def native_calls(monkeypatch):
    calls = []
    from nerfgan_distill import _native

    native = _native.load()
    status("cpu")  # the backends' probe (build_info) runs once, before the spy counts calls

    class Spy:
        def __getattr__(self, name):
            calls.append(name)
            return getattr(native, name)

    monkeypatch.setattr(_native, "load", lambda: Spy())
    return calls


def test_auto_backend_uses_the_native_cpu_kernel(monkeypatch):
    calls = native_calls(monkeypatch)
    x, b = make_inputs((2, 3), 1, "cpu")
    ops.bias_act(x, b, act="relu")
    assert calls == ["BiasActParams", "bias_act_forward_cpu"]


BIAS_ACT_MODULE = importlib.import_module("nerfgan_distill.ops.bias_act")
TORCH_CPU_RUNS_AVX512_UNCACHED = BIAS_ACT_MODULE._torch_cpu_runs_avx512.__wrapped__


def torch_cpu_capability(monkeypatch, capability):
    """Pretend torch's own CPU kernels are `capability` code (bias_act's 'auto' policy reads it;
    uncached here, so each call takes effect). Like the real query, the fake cannot be traced by
    torch.compile."""
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", torch.compiler.disable(lambda: capability))
    monkeypatch.setattr(BIAS_ACT_MODULE, "_torch_cpu_runs_avx512", TORCH_CPU_RUNS_AVX512_UNCACHED)


@pytest.mark.parametrize("act", sorted(BIAS_ACT_MODULE.TORCH_FASTER_WITH_AVX512))
def test_auto_leaves_to_torch_what_torch_runs_faster_with_avx512(monkeypatch, act):
    """Measured slower than eager torch where torch runs AVX-512 code (the benchmark): 'auto'
    runs torch there, an explicit choice (argument or environment) still runs the kernel; where
    torch runs AVX2 code, 'auto' runs the kernel."""
    calls = native_calls(monkeypatch)
    x, b = make_inputs((2, 3), 1, "cpu")
    want = reference(x, b, act=act)
    torch_cpu_capability(monkeypatch, "AVX512")
    torch.testing.assert_close(ops.bias_act(x, b, act=act).double(), want, rtol=1e-5, atol=1e-6)
    assert calls == []
    ops.bias_act(x, b, act=act, backend="cpu")
    assert calls == ["BiasActParams", "bias_act_forward_cpu"]
    monkeypatch.setenv("NERFGAN_DISTILL_BACKEND", "cpu")
    ops.bias_act(x, b, act=act)
    assert calls[2:] == ["BiasActParams", "bias_act_forward_cpu"]
    monkeypatch.delenv("NERFGAN_DISTILL_BACKEND")
    torch_cpu_capability(monkeypatch, "AVX2")
    ops.bias_act(x, b, act=act)
    assert calls[4:] == ["BiasActParams", "bias_act_forward_cpu"]


@pytest.mark.parametrize("capability", ["AVX512", "AVX2"])
def test_auto_policy_compiles_fullgraph(monkeypatch, capability):
    """torch.compile must take the policy's answer as a constant, not trace torch's CPU-capability
    query (a graph break fails fullgraph), on either side of the policy."""
    torch_cpu_capability(monkeypatch, capability)
    torch._dynamo.reset()
    x, b = make_inputs((2, 8, 6, 6), 1, "cpu")
    fn = lambda x, b: ops.bias_act(x, b, act="tanh") * 2  # noqa: E731
    compiled = torch.compile(fn, fullgraph=True)
    torch.testing.assert_close(compiled(x, b).double(), 2 * reference(x, b, act="tanh"), rtol=1e-5, atol=1e-6)
    torch._dynamo.reset()


# --- bad inputs ------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,error,match", [
    (dict(x=torch.tensor(1.0)), ValueError, "at least one dimension"),
    (dict(x=torch.zeros(2, 3, dtype=torch.int32)), TypeError, "x must be float32"),
    (dict(x=[1.0, 2.0]), TypeError, "x must be a torch.Tensor"),
    (dict(dim=3), IndexError, "dim=3 is out of range"),
    (dict(dim=-4), IndexError, "dim=-4 is out of range"),
    (dict(b=torch.zeros(4)), ValueError, r"b must have shape \[3\]"),
    (dict(b=torch.zeros(3, 1)), ValueError, r"b must have shape \[3\]"),
    (dict(b=torch.zeros(3, dtype=torch.float64)), TypeError, "b has dtype torch.float64"),
    (dict(b=torch.zeros(3, device="meta")), ValueError, "b is on meta but x is on cpu"),
    (dict(act="gelu"), ValueError, "unknown act 'gelu'"),
    (dict(clamp=-1), ValueError, "clamp must be >= 0"),
    (dict(gain=float("nan")), ValueError, "gain must be finite"),
    (dict(alpha="0.2"), TypeError, "alpha must be a number"),
    (dict(backend="cudnn"), ValueError, "backend must be one of"),
])
def test_bad_inputs_raise_clear_errors(kwargs, error, match):
    args = dict(x=torch.zeros(2, 3, 4), b=None, dim=1, act="lrelu")
    args.update(kwargs)
    with pytest.raises(error, match=match):
        ops.bias_act(**args)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")
def test_cuda_backend_on_cpu_tensors_says_why():
    with pytest.raises(BackendUnavailableError, match="backend 'cuda' runs on CUDA tensors"):
        ops.bias_act(torch.zeros(2, 3), backend="cuda")
