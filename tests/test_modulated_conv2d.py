"""modulated_conv2d: the reference and each backend against fixtures from the official code,
gradients of first and second order (path-length regularisation differentiates through it
twice), and bad inputs; the fused Triton kernel (up = down = 1, with its noise/bias/act/clamp
epilogue) against the torch reference on tiny shapes (its interpreter is slow)."""
import importlib
import itertools
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from helpers import backend_params
from nerfgan_distill import ops
from nerfgan_distill.ops import bias_act_ref, modulated_conv2d_ref
from nerfgan_distill.ops.upfirdn2d import parse_padding

BACKENDS = backend_params()
OFFICIAL = torch.load(Path(__file__).parent / "fixtures" / "stylegan_ops.pt", weights_only=True)["modulated_conv2d"]
FIR = ops.setup_filter([1, 3, 3, 1])


@pytest.mark.parametrize("backend,device", [pytest.param("torch", "cpu", id="torch")] + BACKENDS)
@pytest.mark.parametrize("case", OFFICIAL, ids=lambda c: c["name"])
def test_matches_official(backend, device, case):
    kwargs = dict(case["kwargs"])
    if kwargs.get("resample_filter") is not None:
        kwargs["resample_filter"] = kwargs["resample_filter"].to(device)
    noise = None if case["noise"] is None else case["noise"].to(device)
    y = ops.modulated_conv2d(case["x"].to(device), case["weight"].to(device), case["styles"].to(device),
                             noise=noise, **kwargs, backend=backend)
    assert y.dtype == case["x"].dtype
    tol = 1e-12 if y.dtype == torch.float64 else (1e-5 if y.dtype == torch.float32 else 2e-3)
    torch.testing.assert_close(y.cpu(), case["y"], rtol=tol, atol=tol)


def assert_matches_fp64_reference(y, params, reference):
    """y = f(*params) (params: x, weight, styles, ...) against reference(*fp64 copies) on the torch
    backend: the output, every first derivative, and a second-order one as a path-length penalty
    takes it (the norm of dL/dstyles, differentiated to the weight)."""
    params64 = [p.detach().double().requires_grad_(True) for p in params]
    y64 = reference(*params64)
    torch.testing.assert_close(y.double(), y64, rtol=1e-5, atol=1e-5)
    dy = torch.randn_like(y)
    grads = torch.autograd.grad(y, params, dy, create_graph=True)
    grads64 = torch.autograd.grad(y64, params64, dy.double(), create_graph=True)
    for got, want in zip(grads, grads64):
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4)
    (gg,) = torch.autograd.grad(grads[2].square().sum(), params[1])
    (gg64,) = torch.autograd.grad(grads64[2].square().sum(), params64[1])
    torch.testing.assert_close(gg.double(), gg64, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("up", [1, 2])
def test_gradients_match_reference(backend, device, fused, up):
    x = torch.randn(2, 4, 6, 6, device=device, requires_grad=True)
    weight = torch.randn(3, 4, 3, 3, device=device, requires_grad=True)
    styles = (torch.randn(2, 4, device=device) + 1).requires_grad_(True)
    kwargs = dict(up=up, padding=1, resample_filter=FIR.to(device), flip_weight=up == 1, fused_modconv=fused)
    params = (x, weight, styles)
    y = ops.modulated_conv2d(*params, **kwargs, backend=backend)
    assert_matches_fp64_reference(y, params, lambda *p64: ops.modulated_conv2d(*p64, **kwargs, backend="torch"))


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(x=torch.zeros(2, 5, 6, 6)), ValueError, "weight has 4 input channels but x has 5"),
    (dict(styles=torch.zeros(3, 4)), ValueError, r"styles must be \[N, I\] = \[2, 4\]"),
    (dict(weight=torch.zeros(3, 4, 3)), ValueError, r"weight \[O, I, kh, kw\]"),
    (dict(styles=torch.zeros(2, 4, dtype=torch.int32)), TypeError, "styles must be float32"),
    (dict(noise=torch.zeros(2, 1, 6, 6, device="meta")), ValueError, "noise is on meta"),
    (dict(demodulate=1), TypeError, "demodulate must be a bool"),
    (dict(up=0), ValueError, "up must be an int >= 1"),
])
def test_bad_inputs_raise_clear_errors(kwargs, error, match):
    args = dict(x=torch.zeros(2, 4, 6, 6), weight=torch.zeros(3, 4, 3, 3), styles=torch.ones(2, 4), padding=1)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        ops.modulated_conv2d(**args, backend="torch")


# --- the fused Triton kernel (up = down = 1) ---------------------------------------------------

TRITON = [p for p in BACKENDS if p.values[0] == "triton"]


@pytest.fixture
def launches(monkeypatch):
    """Count the fused kernel's launches, so the tests know the fused path ran."""
    from nerfgan_distill.triton_kernels import modulated_conv2d as kernels

    calls = []
    original = kernels.launch

    def counting(*args, **kwargs):
        calls.append(args[0].dtype)
        return original(*args, **kwargs)

    monkeypatch.setattr(kernels, "launch", counting)
    return calls


@pytest.fixture
def weight_grad_launches(monkeypatch):
    """Count the weight-gradient kernel's launches."""
    from nerfgan_distill.triton_kernels import modulated_conv2d as kernels

    calls = []
    original = kernels.launch_weight_grad

    def counting(*args, **kwargs):
        calls.append(args[0].dtype)
        return original(*args, **kwargs)

    monkeypatch.setattr(kernels, "launch_weight_grad", counting)
    return calls


def _noise(kind, n, o, h, w, dtype, device):
    shape = {"none": None, "n1hw": [n, 1, h, w], "hw": [h, w], "full": [n, o, h, w], "1o11": [1, o, 1, 1]}[kind]
    return None if shape is None else torch.randn(shape, dtype=dtype, device=device)


EPILOGUES = {
    "none": {},
    "bias": dict(bias=True),
    "lrelu": dict(bias=True, act="lrelu"),  # default gain sqrt(2)
    "lrelu-alpha-gain-clamp": dict(bias=True, act="lrelu", alpha=0.1, gain=2.5, clamp=0.7),
    "linear-clamp": dict(act="linear", clamp=0.5, gain=0.5),
    "tanh": dict(bias=True, act="tanh"),
}


def _random_cases(count, seed=0):
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        k = rng.choice([1, 3])
        cases.append(dict(n=rng.choice([1, 2]), i=rng.choice([1, 3, 5, 8]), o=rng.choice([1, 3, 5, 8]),
                          hw=rng.choice([(1, 1), (4, 4), (5, 7)]), k=k, padding=k // 2,
                          demodulate=rng.choice([True, False]), fused=rng.choice([True, False]),
                          noise=rng.choice(["none", "n1hw", "hw", "full", "1o11"]),
                          epilogue=rng.choice(list(EPILOGUES))))
    # Every value of each axis at least once, whatever the draw.
    for k, demod, fused in itertools.product([1, 3], [True, False], [True, False]):
        cases.append(dict(n=2, i=5, o=3, hw=(5, 7), k=k, padding=k // 2, demodulate=demod, fused=fused,
                          noise="n1hw", epilogue="lrelu-alpha-gain-clamp"))
    for noise, epilogue in zip(["none", "n1hw", "hw", "full", "1o11", "n1hw"], EPILOGUES):
        cases.append(dict(n=2, i=8, o=8, hw=(4, 4), k=3, padding=1, demodulate=True, fused=True, noise=noise,
                          epilogue=epilogue))
    return cases


def _gradient_cases(count, seed=0):
    """_random_cases with the options the backward treats on its own drawn too: non-square and
    odd kernels, asymmetric and cropping padding, flip_weight, every activation (overriding the
    epilogue's, with its default gain), a linear epilogue with a gain and no clamp."""
    rng = random.Random(seed + 1)
    cases = []
    for c in _random_cases(count, seed):
        kh, kw = rng.choice([(c["k"], c["k"])] * 2 + [(1, 3), (3, 2), (5, 3)])
        h, w = c["hw"]
        py0, px0 = rng.randint(0, kh - 1), rng.randint(0, kw - 1)
        # The far side from cropping one row to padding kh - 1, but leaving a non-empty output.
        py1, px1 = max(rng.randint(-1, kh - 1), kh - h - py0), max(rng.randint(-1, kw - 1), kw - w - px0)
        overrides = {}
        if c["epilogue"] not in ("none", "bias"):
            overrides["act"] = rng.choice(list(bias_act_ref.ACTIVATIONS))
        cases.append(dict(c, kernel=(kh, kw), padding=[px0, px1, py0, py1], flip=rng.choice([True, False]),
                          overrides=overrides))
    for act, flip in zip(bias_act_ref.ACTIVATIONS, itertools.cycle([True, False])):
        cases.append(dict(n=2, i=3, o=4, hw=(5, 6), k=3, kernel=(3, 3), padding=[1, 0, 2, 1], demodulate=True,
                          fused=True, flip=flip, noise="n1hw", epilogue="tanh", overrides=dict(act=act)))
    cases.append(dict(n=2, i=3, o=4, hw=(5, 6), k=3, padding=1, demodulate=False, fused=True, noise="1o11",
                      epilogue="bias", overrides=dict(gain=2.5)))
    return cases


def _case_id(c):
    kernel = "{}x{}".format(*c["kernel"]) if "kernel" in c else c["k"]
    extra = "".join(f"-{key}_{value}" for key, value in c.get("overrides", {}).items())
    if "flip" in c:
        extra += f"-pad_{'_'.join(map(str, parse_padding('test', c['padding'])))}-{'flip' if c['flip'] else 'noflip'}"
    return (f"n{c['n']}-i{c['i']}-o{c['o']}-{c['hw'][0]}x{c['hw'][1]}-k{kernel}-{'demod' if c['demodulate'] else 'mod'}"
            f"-{'fused' if c['fused'] else 'split'}-noise_{c['noise']}-{c['epilogue']}{extra}")


def _inputs(c, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    h, w = c["hw"]
    kh, kw = c.get("kernel", (c["k"], c["k"]))
    px0, px1, py0, py1 = parse_padding("test", c["padding"])
    x = torch.randn(c["n"], c["i"], h, w, generator=g, dtype=torch.float64).to(device, dtype)
    weight = torch.randn(c["o"], c["i"], kh, kw, generator=g, dtype=torch.float64).to(device, dtype)
    styles = (torch.randn(c["n"], c["i"], generator=g, dtype=torch.float64) + 1).to(device, dtype)
    noise = _noise(c["noise"], c["n"], c["o"], h + py0 + py1 - kh + 1, w + px0 + px1 - kw + 1, torch.float64, device)
    noise = None if noise is None else noise.to(dtype)
    epi = dict(EPILOGUES[c["epilogue"]], **c.get("overrides", {}))
    if epi.pop("bias", False):
        epi["bias"] = torch.randn(c["o"], generator=g, dtype=torch.float64).to(device, dtype)
    kwargs = dict(noise=noise, padding=c["padding"], demodulate=c["demodulate"], fused_modconv=c["fused"],
                  flip_weight=c.get("flip", True), **epi)
    return x, weight, styles, kwargs


@pytest.mark.parametrize("backend,device", TRITON)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("case", _random_cases(24), ids=_case_id)
def test_fused_triton_matches_reference(backend, device, dtype, case, launches):
    x, weight, styles, kwargs = _inputs(case, dtype, device)
    y = ops.modulated_conv2d(x, weight, styles, **kwargs, backend=backend)
    assert launches == [dtype]
    want = ops.modulated_conv2d(x, weight, styles, **kwargs, backend="torch")
    assert y.dtype == dtype and y.shape == want.shape
    tol = 1e-11 if dtype == torch.float64 else 2e-5
    torch.testing.assert_close(y, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("backend,device", TRITON)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("k", [1, 3])
def test_fused_triton_low_precision(backend, device, dtype, demodulate, k, launches):
    # bf16 runs its tile products in fp32 under the interpreter (its bf16 tl.dot is wrong).
    case = dict(n=2, i=8, o=5, hw=(5, 7), k=k, padding=k // 2, demodulate=demodulate, fused=True, noise="n1hw",
                epilogue="lrelu-alpha-gain-clamp")
    x, weight, styles, kwargs = _inputs(case, dtype, device)
    y = ops.modulated_conv2d(x, weight.float(), styles.float(), **kwargs, backend=backend)
    assert launches == [dtype] and y.dtype == dtype
    kwargs64 = {k: (v.double() if isinstance(v, torch.Tensor) else v) for k, v in kwargs.items()}
    want = ops.modulated_conv2d(x.double(), weight.double(), styles.double(), **kwargs64, backend="torch")
    tol = 2e-2 if dtype == torch.float16 else 6e-2
    torch.testing.assert_close(y.double(), want, rtol=tol, atol=tol)


@pytest.mark.parametrize("backend,device", TRITON)
@pytest.mark.parametrize("layout", ["channels_last", "sliced", "transposed", "expanded_styles"])
def test_fused_triton_layouts(backend, device, layout, launches):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 5, 6, 7, generator=g).to(device)
    weight = torch.randn(3, 5, 3, 3, generator=g).to(device)
    styles = torch.randn(2, 5, generator=g).to(device) + 1
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
        weight = weight.to(memory_format=torch.channels_last)
    elif layout == "sliced":
        x = torch.randn(2, 10, 6, 14, generator=g).to(device)[:, ::2, :, ::2]
    elif layout == "transposed":
        x = x.transpose(2, 3).contiguous().transpose(2, 3)
    else:
        styles = styles[:1].expand(2, 5)
    assert not x.is_contiguous() or layout == "expanded_styles"
    kwargs = dict(padding=1, noise=torch.randn(6, 7, device=device), bias=torch.randn(3, device=device), act="lrelu")
    y = ops.modulated_conv2d(x, weight, styles, **kwargs, backend=backend)
    assert launches == [torch.float32]
    want = ops.modulated_conv2d(x.contiguous(), weight.contiguous(), styles.contiguous(), **kwargs, backend="torch")
    torch.testing.assert_close(y, want, rtol=2e-5, atol=2e-5)
    if layout == "channels_last":
        assert y.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("backend,device", TRITON)
@pytest.mark.parametrize("padding,flip_weight", [([1, 0, 2, 0], True), ([0, 2, 1, 1], False), (2, False),
                                                 (-1, True), ([1, 1, 0, 0], False)])
def test_fused_triton_padding_and_flip(backend, device, padding, flip_weight, launches):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 5, 7, generator=g, dtype=torch.float64).to(device)
    weight = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64).to(device)
    styles = torch.randn(2, 3, generator=g, dtype=torch.float64).to(device)
    kwargs = dict(padding=padding, flip_weight=flip_weight, resample_filter=FIR.to(device), bias=torch.ones(4).double())
    y = ops.modulated_conv2d(x, weight, styles, **kwargs, backend=backend)
    assert launches == [torch.float64]
    want = ops.modulated_conv2d(x, weight, styles, **kwargs, backend="torch")
    torch.testing.assert_close(y, want, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("backend,device", TRITON)
def test_cases_the_kernel_does_not_cover_use_the_composite(backend, device, launches):
    x, weight, styles = torch.randn(2, 4, 6, 6), torch.randn(3, 4, 3, 3), torch.randn(2, 4) + 1
    epi = dict(bias=torch.randn(3), act="lrelu", clamp=0.5)
    # up = 2 with an epilogue: composite, then bias_act on the backend.
    kwargs = dict(up=2, padding=1, resample_filter=FIR, flip_weight=False, **epi)
    y = ops.modulated_conv2d(x, weight, styles, **kwargs, backend=backend)
    want = ops.modulated_conv2d(x, weight, styles, **kwargs, backend="torch")
    torch.testing.assert_close(y, want, rtol=1e-5, atol=1e-5)
    # fp32 noise on fp16 x: the reference's y + noise promotes to fp32; the composite keeps that.
    xh = x.half()
    y = ops.modulated_conv2d(xh, weight, styles, noise=torch.randn(2, 1, 6, 6), padding=1, backend=backend)
    assert y.dtype == torch.float32
    # noise that broadcasts to a bigger shape than the output.
    y = ops.modulated_conv2d(x, weight, styles, noise=torch.randn(5, 1, 1, 1, 1), padding=1, backend=backend)
    assert y.shape == (5, 2, 3, 6, 6)
    assert launches == []


def test_defaults_add_no_epilogue_and_epilogue_is_bias_act():
    g = torch.Generator().manual_seed(3)
    x, weight = torch.randn(2, 4, 5, 5, generator=g), torch.randn(3, 4, 3, 3, generator=g)
    styles = torch.randn(2, 4, generator=g)
    noise, bias = torch.randn(2, 1, 5, 5, generator=g), torch.randn(3, generator=g)
    pad = (1, 1, 1, 1)
    plain = modulated_conv2d_ref.modulated_conv2d_ref(x, weight, styles, noise, 1, 1, pad, None, True, True, True)
    assert torch.equal(ops.modulated_conv2d(x, weight, styles, noise=noise, padding=1, backend="torch"), plain)
    y = ops.modulated_conv2d(x, weight, styles, noise=noise, padding=1, bias=bias, act="lrelu", clamp=0.3,
                             backend="torch")
    assert torch.equal(y, bias_act_ref.bias_act_ref(plain, bias, 1, "lrelu", 0.2, 2 ** 0.5, 0.3))


@pytest.mark.parametrize("backend,device", TRITON)
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("k", [1, 3])
def test_fused_triton_gradients_match_reference(backend, device, fused, k, launches):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 5, 4, 5, generator=g).to(device).requires_grad_(True)
    weight = torch.randn(3, 5, k, k, generator=g).to(device).requires_grad_(True)
    styles = (torch.randn(2, 5, generator=g) + 1).to(device).requires_grad_(True)
    bias = torch.randn(3, generator=g).to(device).requires_grad_(True)
    noise = torch.randn(2, 1, 4, 5, generator=g).to(device).requires_grad_(True)
    params = (x, weight, styles, bias, noise)
    kwargs = dict(padding=k // 2, fused_modconv=fused, act="lrelu", gain=1.5, clamp=1.0)

    def run(x, weight, styles, bias, noise, backend):
        return ops.modulated_conv2d(x, weight, styles, noise=noise, bias=bias, **kwargs, backend=backend)

    y = run(*params, backend)
    assert launches == [torch.float32]
    assert_matches_fp64_reference(y, params, lambda *p64: run(*p64, "torch"))
    # Only some inputs needing gradients, and a forward without autograd.
    y = run(x.detach(), weight, styles.detach(), None, None, backend)
    (gw,) = torch.autograd.grad(y.sum(), weight)
    weight64 = weight.detach().double().requires_grad_(True)
    (gw64,) = torch.autograd.grad(run(x.detach().double(), weight64, styles.detach().double(), None, None,
                                      "torch").sum(), weight64)
    torch.testing.assert_close(gw.double(), gw64, rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        assert not run(*params, backend).requires_grad


@pytest.mark.parametrize("backend,device", TRITON)
def test_fused_triton_gradcheck_fp64(backend, device, launches):
    g = torch.Generator().manual_seed(5)
    inputs = [torch.randn(shape, generator=g, dtype=torch.float64).to(device).requires_grad_(True)
              for shape in ([1, 2, 3, 3], [3, 2, 3, 3], [1, 2], [3], [1, 1, 3, 3])]

    def fn(x, weight, styles, bias, noise):
        return ops.modulated_conv2d(x, weight, styles, noise=noise, bias=bias, padding=1, act="tanh", backend=backend)

    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradgradcheck(fn, inputs)
    assert launches and set(launches) == {torch.float64}


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("kwargs,error,match", [
    (dict(bias=torch.zeros(4)), ValueError, r"bias must have shape \[3\]"),
    (dict(bias=torch.zeros(3, 1)), ValueError, r"bias must have shape \[3\]"),
    (dict(bias=torch.zeros(3, dtype=torch.int64)), TypeError, "bias must be float32"),
    (dict(bias=torch.zeros(3, device="meta")), ValueError, "bias is on meta"),
    (dict(act="gelu"), ValueError, "unknown act 'gelu'"),
    (dict(clamp=-1.0), ValueError, "clamp must be >= 0"),
    (dict(clamp=float("nan")), ValueError, "clamp must be finite"),
    (dict(gain="2"), TypeError, "gain must be a number"),
    (dict(alpha=float("inf"), act="lrelu"), ValueError, "alpha must be finite"),
])
def test_bad_epilogue_arguments_raise_clear_errors(backend, kwargs, error, match):
    with pytest.raises(error, match=match):
        ops.modulated_conv2d(torch.zeros(2, 4, 6, 6), torch.zeros(3, 4, 3, 3), torch.ones(2, 4), padding=1,
                             **kwargs, backend=backend)


# --- the fused op's backward: kernels without create_graph, the composite's VJP with it -------

GRAD_NAMES = ("x", "weight", "styles", "noise", "bias")


def _run_grads(x, weight, styles, kwargs, names, backend, to=None):
    """{name: dL/dname} for L = <y, dy> with a fixed random dy (in x's dtype), only the inputs in
    `names` requiring gradients (create_graph=False); `to` casts every tensor first."""
    tensors = dict(x=x, weight=weight, styles=styles, noise=kwargs["noise"], bias=kwargs.get("bias"))
    tensors = {name: None if t is None else t.detach().to(to or t.dtype).requires_grad_(name in names)
               for name, t in tensors.items()}
    options = {k: v for k, v in kwargs.items() if k not in ("noise", "bias")}
    y = ops.modulated_conv2d(tensors["x"], tensors["weight"], tensors["styles"], noise=tensors["noise"],
                             bias=tensors["bias"], **options, backend=backend)
    dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64).to(x.dtype)
    wanted = [name for name in names if tensors[name] is not None]
    return dict(zip(wanted, torch.autograd.grad(y, [tensors[name] for name in wanted], dy.to(y.device, y.dtype))))


def _assert_grads_close(got, want, tol):
    """Each gradient within tol of the reference, relative to the reference's largest entry."""
    assert got.keys() == want.keys()
    for name, grad in got.items():
        scale = max(1.0, want[name].abs().max().item())
        torch.testing.assert_close(grad.double(), want[name], rtol=tol, atol=tol * scale, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("backend,device", TRITON)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("case", _gradient_cases(24), ids=_case_id)
def test_fused_triton_backward_matches_reference(backend, device, dtype, case, launches, weight_grad_launches):
    x, weight, styles, kwargs = _inputs(case, dtype, device)
    got = _run_grads(x, weight, styles, kwargs, GRAD_NAMES, backend)
    assert launches == [dtype, dtype] and weight_grad_launches == [dtype]  # forward, dL/dx, dL/dweight
    want = _run_grads(x, weight, styles, kwargs, GRAD_NAMES, "torch", to=torch.float64)
    assert all(got[name].dtype == dtype for name in got)
    _assert_grads_close(got, want, 1e-10 if dtype == torch.float64 else 1e-4)


@pytest.mark.parametrize("backend,device", TRITON)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("params_dtype", ["fp32", "same"])
def test_fused_triton_backward_low_precision(backend, device, dtype, demodulate, k, params_dtype, launches):
    # tanh: smooth. A clamp or an lrelu kink would put a few z on the other side of it after the
    # 16-bit rounding of the saved v, and the reference differentiates the exact z.
    # fp16 with demodulation also checks the pre-normalisation's gradient scaling.
    case = dict(n=2, i=8, o=5, hw=(5, 7), k=k, padding=k // 2, demodulate=demodulate, fused=True, noise="n1hw",
                epilogue="tanh")
    x, weight, styles, kwargs = _inputs(case, dtype, device)
    if params_dtype == "fp32":
        weight, styles = weight.float(), styles.float()
    got = _run_grads(x, weight, styles, kwargs, GRAD_NAMES, backend)
    assert launches == [dtype, dtype]
    assert [got[name].dtype for name in GRAD_NAMES] == [dtype, weight.dtype, styles.dtype, dtype, dtype]
    want = _run_grads(x, weight, styles, kwargs, GRAD_NAMES, "torch", to=torch.float64)
    _assert_grads_close(got, want, 1e-2 if dtype == torch.float16 else 3e-2)


@pytest.mark.parametrize("backend,device", TRITON)
def test_fused_triton_backward_recomputes_only_for_create_graph(backend, device, monkeypatch, launches,
                                                                weight_grad_launches):
    module = importlib.import_module("nerfgan_distill.ops.modulated_conv2d")
    composite_calls = []
    original = module._composite

    def counting(*args, **kwargs):
        composite_calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, "_composite", counting)
    case = dict(n=2, i=5, o=3, hw=(4, 5), k=3, padding=1, demodulate=True, fused=True, noise="n1hw",
                epilogue="lrelu-alpha-gain-clamp")
    x, weight, styles, kwargs = _inputs(case, torch.float64, device)
    params = [t.requires_grad_(True) for t in (x, weight, styles)]
    y = ops.modulated_conv2d(*params, **kwargs, backend=backend)
    first = torch.autograd.grad(y, params, torch.ones_like(y), retain_graph=True)
    assert composite_calls == [] and len(launches) == 2 and len(weight_grad_launches) == 1
    second = torch.autograd.grad(y, params, torch.ones_like(y), create_graph=True)
    assert composite_calls == [1] and len(launches) == 2 and all(g.requires_grad for g in second)
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("backend,device", TRITON)
@pytest.mark.parametrize("names", [("x",), ("weight",), ("styles",), ("noise",), ("bias",), ("weight", "bias"),
                                   ("x", "noise"), ("styles", "weight")], ids="-".join)
def test_fused_triton_backward_computes_only_what_is_needed(backend, device, names, launches,
                                                            weight_grad_launches):
    case = dict(n=2, i=5, o=3, hw=(5, 6), k=3, kernel=(3, 2), padding=[1, 0, 2, 1], flip=False, demodulate=True,
                fused=True, noise="hw", epilogue="lrelu")
    x, weight, styles, kwargs = _inputs(case, torch.float64, device)
    got = _run_grads(x, weight, styles, kwargs, names, backend)
    # Only x and the styles need dL/dx's launch; only the weight the weight gradient's.
    assert len(launches) == 1 + any(name in names for name in ("x", "styles"))
    assert len(weight_grad_launches) == ("weight" in names)
    _assert_grads_close(got, _run_grads(x, weight, styles, kwargs, names, "torch", to=torch.float64), 1e-10)


@pytest.mark.parametrize("backend,device", TRITON)
@pytest.mark.parametrize("demodulate,epilogue,names,saves_v", [
    (True, "none", ("x", "noise"), False),  # demodulation needs v for the weight and styles only
    (True, "none", ("styles",), True),
    (False, "bias", GRAD_NAMES, False),  # linear without clamp: dL/dz = dy * gain
    (False, "linear-clamp", ("x",), True),
    (True, "lrelu", (), False),  # no input requires a gradient
])
def test_fused_triton_forward_saves_v_only_when_backward_needs_it(backend, device, monkeypatch, demodulate,
                                                                  epilogue, names, saves_v):
    from nerfgan_distill.triton_kernels import modulated_conv2d as kernels

    stored = []
    original = kernels.launch

    def recording(*args, v=None, **kwargs):
        stored.append(v is not None)
        return original(*args, v=v, **kwargs)

    monkeypatch.setattr(kernels, "launch", recording)
    case = dict(n=2, i=3, o=4, hw=(4, 4), k=3, padding=1, demodulate=demodulate, fused=True, noise="n1hw",
                epilogue=epilogue)
    x, weight, styles, kwargs = _inputs(case, torch.float32, device)
    tensors = dict(x=x, weight=weight, styles=styles, noise=kwargs["noise"], bias=kwargs.get("bias"))
    for name in names:
        if tensors[name] is not None:
            tensors[name].requires_grad_(True)
    ops.modulated_conv2d(x, weight, styles, **kwargs, backend=backend)
    with torch.no_grad():
        ops.modulated_conv2d(x, weight, styles, **kwargs, backend=backend)
    assert stored == [saves_v, False]


@pytest.mark.parametrize("backend,device", TRITON)
@pytest.mark.parametrize("kernel,padding,noise,options", [
    ((3, 3), 1, [3, 3], dict(demodulate=False, act="swish")),
    ((3, 2), [1, 0, 0, 2], [1, 3, 1, 1], dict(flip_weight=False, act="softplus")),
    ((2, 3), [0, 2, 1, 0], [1, 1, 3, 3], dict(act="elu")),
], ids=["mod-swish", "noflip-softplus", "elu-2x3"])
def test_fused_triton_gradcheck_first_order(backend, device, kernel, padding, noise, options, launches):
    # First order only (create_graph=False), so the kernels' backward; gradgradcheck is above.
    # Fast mode (one random projection of the Jacobian): the interpreter is slow. Every kernel
    # size and padding here gives a 3x3 output from the 3x3 input.
    g = torch.Generator().manual_seed(6)
    shapes = ([2, 2, 3, 3], [3, 2, *kernel], [2, 2], [3], noise)
    inputs = [torch.randn(shape, generator=g, dtype=torch.float64).to(device).requires_grad_(True)
              for shape in shapes]

    def fn(x, weight, styles, bias, noise):
        return ops.modulated_conv2d(x, weight, styles, noise=noise, bias=bias, padding=padding, **options,
                                    backend=backend)

    assert fn(*inputs).shape == (2, 3, 3, 3)
    assert torch.autograd.gradcheck(fn, inputs, fast_mode=True)
    assert launches and set(launches) == {torch.float64}


@pytest.mark.parametrize("backend,device", TRITON)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("programs,max_splits", [(1, 64), (18, 64), (1024, 64), (1024, 4)],
                         ids=["one-split", "samples-grouped", "pixel-splits", "capped"])
def test_weight_grad_kernel_splits(backend, device, monkeypatch, dtype, programs, max_splits):
    # The launcher splits its reduction over (sample, pixel) in several ways; the sum must not
    # depend on how: against torch's weight gradient of the scaled tensors.
    from nerfgan_distill.triton_kernels import modulated_conv2d as kernels

    monkeypatch.setattr(kernels, "_WGRAD_PROGRAMS", programs)
    monkeypatch.setattr(kernels, "_WGRAD_MAX_SPLITS", max_splits)
    gen = torch.Generator().manual_seed(8)
    n, i, o, kh, kw, pad = 3, 4, 5, 3, 3, (1, 0, 2, 1)  # x0, x1, y0, y1
    x = torch.randn(n, i, 9, 11, generator=gen, dtype=dtype)
    g = torch.randn(n, o, 9 + pad[2] + pad[3] - kh + 1, 11 + pad[0] + pad[1] - kw + 1, generator=gen, dtype=dtype)
    d, s = torch.rand(n, o, generator=gen, dtype=dtype) + 0.5, torch.rand(n, i, generator=gen, dtype=dtype) + 0.5
    out = torch.full((kh, kw, o, i), float("nan"), dtype=dtype, device=device)
    g_strided = g.transpose(2, 3).contiguous().transpose(2, 3)  # any strides
    kernels.launch_weight_grad(*(t.to(device) for t in (g_strided, x, d, s)), out, pad[0], pad[2])
    want = torch.nn.grad.conv2d_weight(F.pad(x.double() * s.double()[:, :, None, None], pad), (o, i, kh, kw),
                                       g.double() * d.double()[:, :, None, None])
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(out.permute(2, 3, 0, 1).double().cpu(), want, rtol=tol, atol=tol)
