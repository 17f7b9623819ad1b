"""modulated_conv2d: the reference and each backend against fixtures from the official code,
gradients of first and second order (path-length regularisation differentiates through it
twice), and bad inputs; the fused kernels (up = down = 1, with their noise/bias/act/clamp
epilogue: Triton on tiny shapes as its interpreter is slow, the CUDA kernel and its CPU twin
also on wider random cases) and their backward kernels against the fp64 torch reference."""
import functools
import importlib
import itertools
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from helpers import backend_params, call_native, in_layout
from nerfgan_distill import _native, ops
from nerfgan_distill.ops import bias_act_ref, modulated_conv2d_ref
from nerfgan_distill.ops._common import compute_dtype
from nerfgan_distill.ops.bias_act_ref import ACTIVATIONS

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


@pytest.mark.parametrize("backend", ["torch", "cpu", "triton"])
@pytest.mark.parametrize("kwargs,error,match", [
    (dict(x=torch.zeros(2, 5, 6, 6)), ValueError, "weight has 4 input channels but x has 5"),
    (dict(styles=torch.zeros(3, 4)), ValueError, r"styles must be \[N, I\] = \[2, 4\]"),
    (dict(weight=torch.zeros(3, 4, 3)), ValueError, r"weight \[O, I, kh, kw\]"),
    (dict(styles=torch.zeros(2, 4, dtype=torch.int32)), TypeError, "styles must be float32"),
    (dict(noise=torch.zeros(2, 1, 6, 6, device="meta")), ValueError, "noise is on meta"),
    (dict(demodulate=1), TypeError, "demodulate must be a bool"),
    (dict(up=0), ValueError, "modulated_conv2d: up must be an int >= 1"),
    (dict(down=2.0), ValueError, "modulated_conv2d: down must be an int >= 1"),
    (dict(up=2, resample_filter=torch.ones(2, 2, 2)), ValueError, "modulated_conv2d: f must be a"),
    (dict(x=torch.zeros(2, 0, 6, 6), weight=torch.zeros(3, 0, 3, 3), styles=torch.ones(2, 0)), ValueError,
     "weight and x have no input channels"),
    (dict(weight=torch.zeros(3, 4, 3, 0)), ValueError, "weight must have a kernel of at least 1x1"),
    # Padding or a kernel that leaves no output, on the fused and the composite paths.
    (dict(padding=-3), ValueError, r"modulated_conv2d: padding \[-3, -3, -3, -3\] leaves no output"),
    (dict(padding=[1, 1, -1, -3]), ValueError, r"modulated_conv2d: padding .* leaves no output \(0x6\)"),
    (dict(weight=torch.zeros(3, 4, 9, 9)), ValueError, "modulated_conv2d: padding .* leaves no output"),
    (dict(up=2, resample_filter=FIR, padding=-6), ValueError, "modulated_conv2d: padding .* leaves no output"),
    (dict(down=2, resample_filter=FIR, padding=-2), ValueError, "modulated_conv2d: padding .* leaves no output"),
    (dict(noise=torch.zeros(2, 1, 5, 5)), ValueError,
     r"noise of shape \[2, 1, 5, 5\] does not broadcast with the output's \[2, 3, 6, 6\]"),
    (dict(noise=torch.zeros(3, 1, 6, 6), fused_modconv=False), ValueError, r"noise of shape \[3, 1, 6, 6\]"),
])
def test_bad_inputs_raise_clear_errors(backend, kwargs, error, match):
    args = dict(x=torch.zeros(2, 4, 6, 6), weight=torch.zeros(3, 4, 3, 3), styles=torch.ones(2, 4), padding=1)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        ops.modulated_conv2d(**args, backend=backend)


def _fp64_leaves(seed, *shapes):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g, dtype=torch.float64).requires_grad_(True) for shape in shapes]


# The composite path (conv2d_resample, then bias_act): gradients of first and second order
# against finite differences. 'cpu' runs its FIR steps and bias_act on the CPU kernels.
@pytest.mark.parametrize("backend", ["cpu", "torch"])
@pytest.mark.parametrize("fused", [True, False])
def test_composite_gradcheck_and_gradgradcheck_up2_fp64(backend, fused, launches):
    x, weight, styles, noise = _fp64_leaves(9, [2, 2, 3, 3], [2, 2, 3, 3], [2, 2], [2, 1, 6, 6])

    def fn(x, weight, styles, noise):
        return ops.modulated_conv2d(x, weight, styles + 1, noise=noise, up=2, padding=1, resample_filter=FIR,
                                    demodulate=True, flip_weight=False, fused_modconv=fused, backend=backend)

    assert fn(x, weight, styles, noise).shape == (2, 2, 6, 6)
    assert torch.autograd.gradcheck(fn, (x, weight, styles, noise))
    assert torch.autograd.gradgradcheck(fn, (x, weight, styles, noise))
    assert launches == []


@pytest.mark.parametrize("backend", ["cpu", "torch"])
@pytest.mark.parametrize("fused", [True, False])
def test_composite_gradcheck_and_gradgradcheck_lrelu_clamp_fp64(backend, fused, launches):
    # One sample: backend 'cpu' runs the composite (the CPU twin only pays for N > 1).
    inputs = _fp64_leaves(10, [1, 2, 3, 3], [3, 2, 3, 3], [1, 2], [1, 1, 3, 3], [3])
    clamp = 0.8
    kwargs = dict(padding=1, demodulate=True, fused_modconv=fused, backend=backend)

    def fn(x, weight, styles, noise, bias, **epilogue):
        return ops.modulated_conv2d(x, weight, styles + 1, noise=noise, bias=bias, **kwargs, **epilogue)

    # lrelu's kink (z = 0) and the clamp (|lrelu(z) * sqrt(2)| = clamp) are each met by some
    # output, and no z is within gradcheck's steps (1e-6) of either.
    with torch.no_grad():
        z = fn(*inputs)
    a = F.leaky_relu(z, 0.2) * 2 ** 0.5
    assert (z < 0).any() and (a.abs() > clamp).any() and ((z > 0) & (a < clamp)).any()
    assert z.abs().min() > 1e-3 and (a.abs() - clamp).abs().min() > 1e-3
    fn = functools.partial(fn, act="lrelu", clamp=clamp)
    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradgradcheck(fn, inputs)
    assert launches == []


@pytest.mark.parametrize("backend,device", [pytest.param("torch", "cpu", id="torch")] + BACKENDS)
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("n,o,up", [(0, 3, 1), (0, 3, 2), (2, 0, 1), (2, 0, 2)],
                         ids=["no-samples", "no-samples-up2", "no-out-channels", "no-out-channels-up2"])
def test_empty_batch_or_output_channels(backend, device, fused, n, o, up):
    # The result is empty; its size and dtype are those of the reference on one sample and
    # output channel, and every gradient comes back as zeros of its input's shape.
    def run(n, o, backend):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(n, 4, 5, 5, generator=g).to(device).requires_grad_(True)
        weight = torch.randn(o, 4, 3, 3, generator=g).to(device).requires_grad_(True)
        styles = torch.randn(n, 4, generator=g).to(device).requires_grad_(True)
        noise = torch.randn(n, 1, 5 * up, 5 * up, generator=g, dtype=torch.float64).to(device).requires_grad_(True)
        bias = torch.randn(o, generator=g).to(device).requires_grad_(True)
        params = (x, weight, styles, noise, bias)
        return ops.modulated_conv2d(x, weight, styles, noise=noise, bias=bias, act="lrelu", up=up, padding=1,
                                    resample_filter=FIR.to(device), flip_weight=up == 1, fused_modconv=fused,
                                    backend=backend), params

    y, params = run(n, o, backend)
    stand_in, _ = run(max(n, 1), max(o, 1), "torch")
    assert y.shape == (n, o, *stand_in.shape[2:]) and y.dtype == stand_in.dtype and y.device == stand_in.device
    for grad, t in zip(torch.autograd.grad(y, params, torch.randn_like(y)), params):
        assert torch.equal(grad, torch.zeros_like(t))


# --- the fused kernels (up = down = 1) ----------------------------------------------------------
# Triton, CUDA, and the CUDA kernel's CPU twin ('cpu-twin': _cpu_twin, at every size, so these
# tests run the CUDA kernel's tile math without a GPU; backend 'cpu' uses it only where it pays).

MODCONV = importlib.import_module("nerfgan_distill.ops.modulated_conv2d")  # the attribute is the function
FUSED_PATH = importlib.import_module("nerfgan_distill.ops.modulated_conv2d_fused")
FUSED = [pytest.param("cpu-twin", "cpu", id="cpu-twin")] + [p for p in BACKENDS if p.values[0] in ("triton", "cuda")]
TWIN_AND_CUDA = [p for p in FUSED if p.values[0] != "triton"]  # fast enough for many and larger cases
CUDA = [p for p in BACKENDS if p.values[0] == "cuda"]


def _fused_op(backend):
    """modulated_conv2d on a fused backend ('cpu-twin': the CPU twin at every size)."""
    return MODCONV._cpu_twin if backend == "cpu-twin" else functools.partial(ops.modulated_conv2d, backend=backend)


@pytest.fixture
def launches(monkeypatch):
    """Count the fused forward kernel's launches (any backend; the backward's dL/dx is one
    too), so the tests know the fused path ran."""
    calls = []
    original = FUSED_PATH._launch_forward

    def counting(backend, x, *args, **kwargs):
        calls.append(x.dtype)
        return original(backend, x, *args, **kwargs)

    monkeypatch.setattr(FUSED_PATH, "_launch_forward", counting)
    return calls


@pytest.fixture
def weight_grad_launches(monkeypatch):
    """Count the weight-gradient kernel's launches (any backend)."""
    calls = []
    original = FUSED_PATH._weight_grad

    def counting(g, *args, **kwargs):
        calls.append(g.dtype)
        return original(g, *args, **kwargs)

    monkeypatch.setattr(FUSED_PATH, "_weight_grad", counting)
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
# Every activation with a bias, a gain and a clamp (the wide cases').
EVERY_ACT = {f"{act}-gain-clamp": dict(bias=True, act=act, alpha=0.3, gain=1.7, clamp=0.9) for act in ACTIVATIONS}


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
            overrides["act"] = rng.choice(list(ACTIVATIONS))
        cases.append(dict(c, k=(kh, kw), padding=[px0, px1, py0, py1], flip=rng.choice([True, False]),
                          overrides=overrides))
    for act, flip in zip(ACTIVATIONS, itertools.cycle([True, False])):
        cases.append(dict(n=2, i=3, o=4, hw=(5, 6), k=3, padding=[1, 0, 2, 1], demodulate=True,
                          fused=True, flip=flip, noise="n1hw", epilogue="tanh", overrides=dict(act=act)))
    cases.append(dict(n=2, i=3, o=4, hw=(5, 6), k=3, padding=1, demodulate=False, fused=True, noise="1o11",
                      epilogue="bias", overrides=dict(gain=2.5)))
    return cases


def _wide_cases(count, seed=0):
    """_random_cases' kind, drawn wider for the kernels that run fast here: kernels up to 5x5
    (and not square), asymmetric padding, flip_weight=False, every activation, channels past
    one tile (the kernels' tiles hold 16 to 64 channels and 64 to 256 pixels), images of one
    row or column, x channels-last or sliced."""
    rng = random.Random(seed)
    epilogues = list(EPILOGUES) + list(EVERY_ACT)
    cases = []
    for index in range(count):
        k = rng.choice([(1, 1), (3, 3), (2, 3), (5, 1), (5, 5)])
        hw = rng.choice([(1, 1), (1, 9), (9, 1), (5, 7), (13, 11), (17, 23)])
        padding = [rng.randint(0, kk - 1) for kk in (k[1], k[1], k[0], k[0])]  # x0, x1, y0, y1
        for axis, size in ((0, hw[1]), (2, hw[0])):  # at least one output row and column
            padding[axis + 1] = max(padding[axis + 1], k[1 - axis // 2] - size - padding[axis])
        cases.append(dict(n=rng.choice([1, 2, 3]), i=rng.choice([1, 3, 8, 37, 70]), o=rng.choice([1, 3, 5, 17, 70]),
                          hw=hw, k=k, padding=padding, flip=rng.choice([True, False]),
                          demodulate=rng.choice([True, False]), fused=rng.choice([True, False]),
                          noise=rng.choice(["none", "n1hw", "hw", "full", "1o11"]),
                          epilogue=epilogues[index] if index < len(epilogues) else rng.choice(epilogues),
                          layout=rng.choice(["contiguous", "contiguous", "channels_last", "sliced"])))
    return cases


def _case_id(c):
    kh, kw = _kernel_size(c)
    text = (f"n{c['n']}-i{c['i']}-o{c['o']}-{c['hw'][0]}x{c['hw'][1]}-k{kh if kh == kw else f'{kh}x{kw}'}"
            f"-{'demod' if c['demodulate'] else 'mod'}-{'fused' if c['fused'] else 'split'}-noise_{c['noise']}"
            f"-{c['epilogue']}")
    padding = c["padding"]
    if padding != kh // 2 or kh != kw:
        text += "-pad" + ("_".join(str(v) for v in padding) if isinstance(padding, list) else str(padding))
    if not c.get("flip", True):
        text += "-conv"
    if c.get("layout", "contiguous") != "contiguous":
        text += f"-{c['layout']}"
    return text + "".join(f"-{key}_{value}" for key, value in c.get("overrides", {}).items())


def _kernel_size(c):
    return (c["k"], c["k"]) if isinstance(c["k"], int) else c["k"]


def _inputs(c, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    h, w = c["hw"]
    kh, kw = _kernel_size(c)
    x = torch.randn(c["n"], c["i"], h, w, generator=g, dtype=torch.float64).to(device, dtype)
    x = in_layout(x, c.get("layout", "contiguous"))
    weight = torch.randn(c["o"], c["i"], kh, kw, generator=g, dtype=torch.float64).to(device, dtype)
    styles = (torch.randn(c["n"], c["i"], generator=g, dtype=torch.float64) + 1).to(device, dtype)
    noise = _noise(c["noise"], c["n"], c["o"], *_out_size(c), torch.float64, device)
    noise = None if noise is None else noise.to(dtype)
    epi = dict({**EPILOGUES, **EVERY_ACT}[c["epilogue"]], **c.get("overrides", {}))
    if epi.pop("bias", False):
        epi["bias"] = torch.randn(c["o"], generator=g, dtype=torch.float64).to(device, dtype)
    kwargs = dict(noise=noise, padding=c["padding"], demodulate=c["demodulate"], fused_modconv=c["fused"], **epi)
    if not c.get("flip", True):
        kwargs["flip_weight"] = False
    return x, weight, styles, kwargs


def _out_size(c):
    kh, kw = _kernel_size(c)
    x0, x1, y0, y1 = (c["padding"],) * 4 if isinstance(c["padding"], int) else c["padding"]
    return c["hw"][0] + y0 + y1 - kh + 1, c["hw"][1] + x0 + x1 - kw + 1


def _fp64_reference(x, weight, styles, kwargs):
    """The torch backend on fp64 copies of every tensor."""
    kwargs64 = {k: (v.double() if isinstance(v, torch.Tensor) else v) for k, v in kwargs.items()}
    return ops.modulated_conv2d(x.double(), weight.double(), styles.double(), **kwargs64, backend="torch")


UNIT_ROUNDOFF = {torch.float64: 2.0 ** -53, torch.float32: 2.0 ** -24, torch.float16: 2.0 ** -11,
                 torch.bfloat16: 2.0 ** -8}


def _term_sizes(x, weight, styles, kwargs):
    """Per output element, the sizes of the terms its convolution sums (x times the modulated,
    demodulated weight): their sum of magnitudes and their root-sum-square."""
    conv = {k: kwargs[k] for k in ("padding", "flip_weight") if k in kwargs}
    x64, w64, s64 = x.double(), weight.double(), styles.double()
    l1 = ops.modulated_conv2d(x64.abs(), w64.abs(), s64.abs(), demodulate=False, **conv, backend="torch")
    sum_sq = ops.modulated_conv2d(x64.square(), w64.square(), s64.square(), demodulate=False, **conv, backend="torch")
    if kwargs.get("demodulate", True):
        d = (s64.square() @ w64.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()[:, :, None, None]
        l1, sum_sq = l1 * d, sum_sq * d.square()
    return l1, sum_sq.sqrt()


def _assert_matches_fp64_reference(y, x, weight, styles, kwargs):
    """y against the torch reference on fp64 copies, within the rounding error a fused kernel
    may make: the output's rounding and its activation's, fp32 (fp64) accumulation (at most ~K
    ulp of the summed magnitudes, noise and bias included; 16 here) and for fp16/bf16 the
    rounding of the modulated weight to x's dtype
    (a random error per term: 4 sigma of the terms' root-sum-square), all through the
    activation's slope (at most 1.76, selu's) times the gain. A sum that cancels thus gets a
    large absolute tolerance, while an indexing or epilogue error stays far outside it."""
    want = _fp64_reference(x, weight, styles, kwargs)
    assert y.dtype == x.dtype and y.shape == want.shape
    l1, rss = _term_sizes(x, weight, styles, kwargs)
    act = kwargs.get("act", "linear")
    slope = 1.76 * abs(kwargs.get("gain", ACTIVATIONS[act].default_gain))
    u_out, u_acc = UNIT_ROUNDOFF[x.dtype], UNIT_ROUNDOFF[compute_dtype(x.dtype)]
    u_weight = u_out if x.dtype in (torch.float16, torch.bfloat16) else 0.0
    added = torch.zeros_like(want)  # the sizes of what the epilogue adds
    if kwargs.get("noise") is not None:
        added = added + kwargs["noise"].double().abs()
    if kwargs.get("bias") is not None:
        added = added + kwargs["bias"].double().abs().reshape(-1, 1, 1)
    bound = 4 * u_out * want.abs() + slope * (16 * u_acc * (l1 + added) + 4 * u_weight * rss) + 1e-300
    error = (y.double() - want).abs()
    ok = (error <= bound) | (torch.isnan(y.double()) & torch.isnan(want))
    assert ok.all(), (f"{int((~ok).sum())} of {ok.numel()} elements differ beyond the rounding bound; worst "
                      f"error / bound: {float((error / bound)[~ok].max()):.3g}, max error {float(error.max()):.3g}")


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("case", _random_cases(24), ids=_case_id)
def test_fused_matches_reference(backend, device, dtype, case, launches):
    x, weight, styles, kwargs = _inputs(case, dtype, device)
    y = _fused_op(backend)(x, weight, styles, **kwargs)
    assert launches == [dtype]
    _assert_matches_fp64_reference(y, x, weight, styles, kwargs)


@pytest.mark.parametrize("backend,device", TWIN_AND_CUDA)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("case", _wide_cases(60), ids=_case_id)
def test_fused_wide_cases_match_reference(backend, device, dtype, case, launches):
    x, weight, styles, kwargs = _inputs(case, dtype, device)
    y = _fused_op(backend)(x, weight, styles, **kwargs)
    assert launches == [dtype]
    _assert_matches_fp64_reference(y, x, weight, styles, kwargs)
    if case["layout"] == "channels_last" and not x.is_contiguous():  # out follows x's layout
        assert y.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("backend,device", TWIN_AND_CUDA)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("case", _wide_cases(20, seed=1), ids=_case_id)
def test_fused_wide_cases_low_precision(backend, device, dtype, case, launches):
    x, weight, styles, kwargs = _inputs(case, dtype, device)
    y = _fused_op(backend)(x, weight.float(), styles.float(), **kwargs)
    assert launches == [dtype]
    _assert_matches_fp64_reference(y, x, weight, styles, kwargs)


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("k", [1, 3])
def test_fused_low_precision(backend, device, dtype, demodulate, k, launches):
    # bf16 runs its tile products in fp32 under the Triton interpreter (its bf16 tl.dot is wrong).
    case = dict(n=2, i=8, o=5, hw=(5, 7), k=k, padding=k // 2, demodulate=demodulate, fused=True, noise="n1hw",
                epilogue="lrelu-alpha-gain-clamp")
    x, weight, styles, kwargs = _inputs(case, dtype, device)
    y = _fused_op(backend)(x, weight.float(), styles.float(), **kwargs)
    assert launches == [dtype]
    _assert_matches_fp64_reference(y, x, weight, styles, kwargs)


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("layout", ["channels_last", "sliced", "transposed", "expanded_styles"])
def test_fused_layouts(backend, device, layout, launches):
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
    y = _fused_op(backend)(x, weight, styles, **kwargs)
    assert launches == [torch.float32]
    want = ops.modulated_conv2d(x.contiguous(), weight.contiguous(), styles.contiguous(), **kwargs, backend="torch")
    torch.testing.assert_close(y, want, rtol=2e-5, atol=2e-5)
    if layout == "channels_last":
        assert y.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("padding,flip_weight", [([1, 0, 2, 0], True), ([0, 2, 1, 1], False), (2, False),
                                                 (-1, True), ([1, 1, 0, 0], False)])
def test_fused_padding_and_flip(backend, device, padding, flip_weight, launches):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 5, 7, generator=g, dtype=torch.float64).to(device)
    weight = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64).to(device)
    styles = torch.randn(2, 3, generator=g, dtype=torch.float64).to(device)
    kwargs = dict(padding=padding, flip_weight=flip_weight, resample_filter=FIR.to(device),
                  bias=torch.ones(4, dtype=torch.float64, device=device))
    y = _fused_op(backend)(x, weight, styles, **kwargs)
    assert launches == [torch.float64]
    want = ops.modulated_conv2d(x, weight, styles, **kwargs, backend="torch")
    torch.testing.assert_close(y, want, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_fused_clamp_passes_nan(backend, device, dtype, launches):
    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 6, 5, 7, generator=g).to(device, dtype)
    weight, styles = torch.randn(5, 6, 3, 3, generator=g).to(device), torch.randn(2, 6, generator=g).to(device) + 1
    noise = torch.randn(2, 5, 5, 7, generator=g)
    noise[0, 1, 2, 3] = noise[1, 4, 0, 0] = float("nan")
    kwargs = dict(padding=1, noise=noise.to(device, dtype), bias=torch.randn(5, generator=g).to(device), act="lrelu",
                  clamp=0.25)
    y = _fused_op(backend)(x, weight, styles, **kwargs)
    assert launches == [dtype]
    assert torch.equal(torch.isnan(y).cpu(), torch.isnan(noise))
    finite = y[~torch.isnan(y)]
    assert finite.abs().max() <= 0.25 and (finite.abs() == 0.25).any()  # the clamp bites
    want = _fp64_reference(x, weight, styles, kwargs)
    torch.testing.assert_close(y.double(), want, rtol=2e-2, atol=2e-2, equal_nan=True)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_cases_the_kernel_does_not_cover_use_the_composite(backend, device, launches):
    x, weight, styles = (torch.randn(2, 4, 6, 6, device=device), torch.randn(3, 4, 3, 3, device=device),
                         torch.randn(2, 4, device=device) + 1)
    epi = dict(bias=torch.randn(3, device=device), act="lrelu", clamp=0.5)
    # up = 2 with an epilogue: composite, then bias_act on the backend.
    kwargs = dict(up=2, padding=1, resample_filter=FIR.to(device), flip_weight=False, **epi)
    y = ops.modulated_conv2d(x, weight, styles, **kwargs, backend=backend)
    want = ops.modulated_conv2d(x, weight, styles, **kwargs, backend="torch")
    torch.testing.assert_close(y, want, rtol=1e-5, atol=1e-5)
    # fp32 noise on fp16 x: the reference's y + noise promotes to fp32; the composite keeps that.
    xh = x.half()
    y = ops.modulated_conv2d(xh, weight, styles, noise=torch.randn(2, 1, 6, 6, device=device), padding=1,
                             backend=backend)
    assert y.dtype == torch.float32
    # noise that broadcasts to a bigger shape than the output.
    y = ops.modulated_conv2d(x, weight, styles, noise=torch.randn(5, 1, 1, 1, 1, device=device), padding=1,
                             backend=backend)
    assert y.shape == (5, 2, 3, 6, 6)
    assert launches == []
    with pytest.raises(ValueError, match="the CPU twin runs only calls the fused kernels cover"):
        MODCONV._cpu_twin(x.cpu(), weight.cpu(), styles.cpu(), up=2, padding=1, resample_filter=FIR)


@pytest.mark.parametrize("shape,dtype,fused_modconv,twin", [
    ((4, 8, 8), torch.float32, True, True), ((2, 8, 8), torch.bfloat16, True, True),
    ((4, 9, 9), torch.float32, True, False), ((1, 8, 8), torch.float32, True, False),
    ((4, 8, 8), torch.float64, False, False), ((1, 16, 16), torch.float16, False, True)])
def test_cpu_backend_runs_the_twin_where_it_pays(shape, dtype, fused_modconv, twin, launches):
    n, h, w = shape
    x = torch.randn(n, 6, h, w, dtype=dtype)
    y = ops.modulated_conv2d(x, torch.randn(4, 6, 3, 3), torch.randn(n, 6) + 1, padding=1, bias=torch.randn(4),
                             act="lrelu", fused_modconv=fused_modconv, backend="cpu")
    assert launches == ([dtype] if twin else [])
    assert y.shape == (n, 4, h, w) and y.dtype == dtype


def test_cpu_twin_results_do_not_depend_on_the_thread_count():
    case = dict(n=3, i=37, o=70, hw=(13, 11), k=3, padding=1, demodulate=True, fused=True, noise="n1hw",
                epilogue="lrelu-alpha-gain-clamp")
    x, weight, styles, kwargs = _inputs(case, torch.float32, "cpu")
    threads = torch.get_num_threads()
    try:
        outputs = []
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            outputs.append(MODCONV._cpu_twin(x, weight, styles, **kwargs))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(outputs[0], outputs[1]) and torch.equal(outputs[0], outputs[2])


def _native_args(**changes):
    """Arguments of _C.modulated_conv2d_forward_cpu for a tiny valid call, with `changes`."""
    x, w, s, out = torch.ones(1, 2, 3, 3), torch.ones(3, 3, 4, 2), torch.ones(1, 2), torch.empty(1, 4, 3, 3)
    sx, so = x.stride(), out.stride()
    args = dict(x=x, weight=w, s=s, out=out, n=1, i=2, o=4, h=3, w=3, kh=3, kw=3, oh=3, ow=3,
                sx_n=sx[0], sx_c=sx[1], sx_h=sx[2], sx_w=sx[3], so_n=so[0], so_c=so[1], so_h=so[2], so_w=so[3],
                pad_x0=1, pad_y0=1, act=0, alpha=0.0, gain=1.0, clamp=-1.0, dtype=0, threads=1)
    args.update(changes)
    return args, (x, w, s, out)


@pytest.mark.parametrize("changes,match", [
    (dict(w=-3), "sizes must be >= 0"),
    (dict(kh=0), "kernel height and width"),
    (dict(i=0), "x must not be empty"),
    (dict(x=None), "must not be null"),
    (dict(act=99), "unknown activation code"),
    (dict(dtype=7), "unknown dtype code"),
    (dict(threads=0), "threads must be >= 1"),
])
def test_native_entry_point_rejects_impossible_calls(changes, match):
    native = _native.load()
    args, tensors = _native_args(**changes)
    with pytest.raises(ValueError, match=match):
        call_native(native, "modulated_conv2d_forward", "ModulatedConv2dParams", **args)
    args, tensors = _native_args()  # and the unchanged call runs
    call_native(native, "modulated_conv2d_forward", "ModulatedConv2dParams", **args)
    assert torch.equal(tensors[3], MODCONV._cpu_twin(tensors[0], torch.ones(4, 2, 3, 3), tensors[2], padding=1,
                                                     demodulate=False))


def _weight_grad_args(**changes):
    """Arguments of _C.modulated_conv2d_weight_grad_cpu for a tiny valid call, with `changes`."""
    g, x, d, s = torch.ones(1, 4, 3, 3), torch.ones(1, 2, 3, 3), torch.ones(1, 4), torch.ones(1, 2)
    partial = torch.full((1, 3, 3, 4, 2), float("nan"))
    sg, sx = g.stride(), x.stride()
    args = dict(g=g, x=x, d=d, s=s, partial=partial, n=1, i=2, o=4, h=3, w=3, kh=3, kw=3, oh=3, ow=3,
                sg_n=sg[0], sg_c=sg[1], sg_h=sg[2], sg_w=sg[3], sx_n=sx[0], sx_c=sx[1], sx_h=sx[2], sx_w=sx[3],
                pad_x0=1, pad_y0=1, samples_per_split=1, pixel_splits=1, pixels_per_split=9, dtype=0, threads=1)
    args.update(changes)
    return args, (g, x, d, s, partial)


@pytest.mark.parametrize("changes,match", [
    (dict(oh=-3), "sizes must be >= 0"),
    (dict(kw=0), "kernel height and width"),
    (dict(pixel_splits=0), "splits must be >= 1"),
    (dict(partial=None), "must not be null"),
    (dict(g=None), "must not be null"),
    (dict(dtype=7), "unknown dtype code"),
    (dict(threads=0), "threads must be >= 1"),
])
def test_native_weight_grad_entry_point_rejects_impossible_calls(changes, match):
    native = _native.load()
    args, _ = _weight_grad_args(**changes)
    with pytest.raises(ValueError, match=match):
        call_native(native, "modulated_conv2d_weight_grad", "ModulatedConv2dWeightGradParams", **args)
    args, (g, x, d, s, partial) = _weight_grad_args()  # and the unchanged call runs
    call_native(native, "modulated_conv2d_weight_grad", "ModulatedConv2dWeightGradParams", **args)
    want = torch.nn.grad.conv2d_weight(x, (4, 2, 3, 3), g, padding=1)
    torch.testing.assert_close(partial[0].permute(2, 3, 0, 1), want)


@pytest.mark.parametrize("backend,device", CUDA)
def test_cuda_kernel_batches_past_grid_z_on_a_side_stream(backend, device, launches):
    # More samples than grid.z could hold, launched on a user stream.
    g = torch.Generator().manual_seed(7)
    x = torch.randn(70000, 3, 2, 2, generator=g).to(device)
    weight, styles = torch.randn(2, 3, 3, 3, generator=g).to(device), torch.randn(70000, 3, generator=g).to(device)
    kwargs = dict(padding=1, bias=torch.randn(2, generator=g).to(device), act="lrelu")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        y = ops.modulated_conv2d(x, weight, styles, **kwargs, backend=backend)
    stream.synchronize()
    assert launches == [torch.float32]
    _assert_matches_fp64_reference(y, x, weight, styles, kwargs)


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


@pytest.mark.parametrize("capability,backend,want", [
    ("AVX512", "auto", "torch"), ("AVX2", "auto", "cpu"), ("AVX512", "cpu", "cpu")])
def test_composite_epilogue_follows_bias_acts_auto_policy(monkeypatch, capability, backend, want):
    """A tanh epilogue on CPU tensors goes where bias_act's own 'auto' would send it (torch where
    torch runs AVX-512 code); an explicit backend is kept."""
    bias_act_module = importlib.import_module("nerfgan_distill.ops.bias_act")
    monkeypatch.setattr(bias_act_module, "_torch_cpu_runs_avx512", lambda: capability == "AVX512")
    module = importlib.import_module("nerfgan_distill.ops.modulated_conv2d")
    used = []

    def recording(*args, backend, **kwargs):
        used.append(backend)
        return bias_act_module.bias_act(*args, backend=backend, **kwargs)

    monkeypatch.setattr(module, "bias_act", recording)
    g = torch.Generator().manual_seed(5)
    x, weight, styles = (torch.randn(*s, generator=g) for s in ((1, 4, 5, 5), (3, 4, 3, 3), (1, 4)))
    bias = torch.randn(3, generator=g)
    y = ops.modulated_conv2d(x, weight, styles, padding=1, bias=bias, act="tanh", backend=backend)
    assert used == [want]
    plain = modulated_conv2d_ref.modulated_conv2d_ref(x, weight, styles, None, 1, 1, (1, 1, 1, 1), None, True,
                                                      True, True)
    torch.testing.assert_close(y, bias_act_ref.bias_act_ref(plain, bias, 1, "tanh", 0.0, 1.0, None))


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("k", [1, 3])
def test_fused_gradients_match_reference(backend, device, fused, k, launches):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 5, 4, 5, generator=g).to(device).requires_grad_(True)
    weight = torch.randn(3, 5, k, k, generator=g).to(device).requires_grad_(True)
    styles = (torch.randn(2, 5, generator=g) + 1).to(device).requires_grad_(True)
    bias = torch.randn(3, generator=g).to(device).requires_grad_(True)
    noise = torch.randn(2, 1, 4, 5, generator=g).to(device).requires_grad_(True)
    params = (x, weight, styles, bias, noise)
    kwargs = dict(padding=k // 2, fused_modconv=fused, act="lrelu", gain=1.5, clamp=1.0)

    def run(x, weight, styles, bias, noise, backend):
        return _fused_op(backend)(x, weight, styles, noise=noise, bias=bias, **kwargs)

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


@pytest.mark.parametrize("backend,device", FUSED)
def test_fused_gradcheck_fp64(backend, device, launches):
    g = torch.Generator().manual_seed(5)
    inputs = [torch.randn(shape, generator=g, dtype=torch.float64).to(device).requires_grad_(True)
              for shape in ([1, 2, 3, 3], [3, 2, 3, 3], [1, 2], [3], [1, 1, 3, 3])]

    def fn(x, weight, styles, bias, noise):
        return _fused_op(backend)(x, weight, styles, noise=noise, bias=bias, padding=1, act="tanh")

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
    y = _fused_op(backend)(tensors["x"], tensors["weight"], tensors["styles"], noise=tensors["noise"],
                           bias=tensors["bias"], **options)
    dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64).to(x.dtype)
    wanted = [name for name in names if tensors[name] is not None]
    return dict(zip(wanted, torch.autograd.grad(y, [tensors[name] for name in wanted], dy.to(y.device, y.dtype))))


def _assert_grads_close(got, want, tol):
    """Each gradient within tol of the reference, relative to the reference's largest entry."""
    assert got.keys() == want.keys()
    for name, grad in got.items():
        scale = max(1.0, want[name].abs().max().item())
        torch.testing.assert_close(grad.double(), want[name], rtol=tol, atol=tol * scale, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("case", _gradient_cases(24), ids=_case_id)
def test_fused_backward_matches_reference(backend, device, dtype, case, launches, weight_grad_launches):
    x, weight, styles, kwargs = _inputs(case, dtype, device)
    got = _run_grads(x, weight, styles, kwargs, GRAD_NAMES, backend)
    assert launches == [dtype, dtype] and weight_grad_launches == [dtype]  # forward, dL/dx, dL/dweight
    want = _run_grads(x, weight, styles, kwargs, GRAD_NAMES, "torch", to=torch.float64)
    assert all(got[name].dtype == dtype for name in got)
    _assert_grads_close(got, want, 1e-10 if dtype == torch.float64 else 1e-4)


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("params_dtype", ["fp32", "same"])
def test_fused_backward_low_precision(backend, device, dtype, demodulate, k, params_dtype, launches):
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


@pytest.mark.parametrize("backend,device", FUSED)
def test_fused_backward_recomputes_only_for_create_graph(backend, device, monkeypatch, launches,
                                                         weight_grad_launches):
    module = MODCONV
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
    y = _fused_op(backend)(*params, **kwargs)
    first = torch.autograd.grad(y, params, torch.ones_like(y), retain_graph=True)
    assert composite_calls == [] and len(launches) == 2 and len(weight_grad_launches) == 1
    second = torch.autograd.grad(y, params, torch.ones_like(y), create_graph=True)
    assert composite_calls == [1] and len(launches) == 2 and all(g.requires_grad for g in second)
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("names", [("x",), ("weight",), ("styles",), ("noise",), ("bias",), ("weight", "bias"),
                                   ("x", "noise"), ("styles", "weight")], ids="-".join)
def test_fused_backward_computes_only_what_is_needed(backend, device, names, launches, weight_grad_launches):
    case = dict(n=2, i=5, o=3, hw=(5, 6), k=(3, 2), padding=[1, 0, 2, 1], flip=False, demodulate=True,
                fused=True, noise="hw", epilogue="lrelu")
    x, weight, styles, kwargs = _inputs(case, torch.float64, device)
    got = _run_grads(x, weight, styles, kwargs, names, backend)
    # Only x and the styles need dL/dx's launch; only the weight the weight gradient's.
    assert len(launches) == 1 + any(name in names for name in ("x", "styles"))
    assert len(weight_grad_launches) == ("weight" in names)
    _assert_grads_close(got, _run_grads(x, weight, styles, kwargs, names, "torch", to=torch.float64), 1e-10)


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("demodulate,epilogue,names,saves_v", [
    (True, "none", ("x", "noise"), False),  # demodulation needs v for the weight and styles only
    (True, "none", ("styles",), True),
    (False, "bias", GRAD_NAMES, False),  # linear without clamp: dL/dz = dy * gain
    (False, "linear-clamp", ("x",), True),
    (True, "lrelu", (), False),  # no input requires a gradient
])
def test_fused_forward_saves_v_only_when_backward_needs_it(backend, device, monkeypatch, demodulate, epilogue,
                                                           names, saves_v):
    stored = []
    original = FUSED_PATH._launch_forward

    def recording(backend, x, prep, out, v=None):
        stored.append(v is not None)
        return original(backend, x, prep, out, v)

    monkeypatch.setattr(FUSED_PATH, "_launch_forward", recording)
    case = dict(n=2, i=3, o=4, hw=(4, 4), k=3, padding=1, demodulate=demodulate, fused=True, noise="n1hw",
                epilogue=epilogue)
    x, weight, styles, kwargs = _inputs(case, torch.float32, device)
    tensors = dict(x=x, weight=weight, styles=styles, noise=kwargs["noise"], bias=kwargs.get("bias"))
    for name in names:
        if tensors[name] is not None:
            tensors[name].requires_grad_(True)
    _fused_op(backend)(x, weight, styles, **kwargs)
    with torch.no_grad():
        _fused_op(backend)(x, weight, styles, **kwargs)
    assert stored == [saves_v, False]


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("kernel,padding,noise,options", [
    ((3, 3), 1, [3, 3], dict(demodulate=False, act="swish")),
    ((3, 2), [1, 0, 0, 2], [1, 3, 1, 1], dict(flip_weight=False, act="softplus")),
    ((2, 3), [0, 2, 1, 0], [1, 1, 3, 3], dict(act="elu")),
], ids=["mod-swish", "noflip-softplus", "elu-2x3"])
def test_fused_gradcheck_first_order(backend, device, kernel, padding, noise, options, launches):
    # First order only (create_graph=False), so the kernels' backward; gradgradcheck is above.
    # Fast mode (one random projection of the Jacobian): the interpreter is slow. Every kernel
    # size and padding here gives a 3x3 output from the 3x3 input.
    g = torch.Generator().manual_seed(6)
    shapes = ([2, 2, 3, 3], [3, 2, *kernel], [2, 2], [3], noise)
    inputs = [torch.randn(shape, generator=g, dtype=torch.float64).to(device).requires_grad_(True)
              for shape in shapes]

    def fn(x, weight, styles, bias, noise):
        return _fused_op(backend)(x, weight, styles, noise=noise, bias=bias, padding=padding, **options)

    assert fn(*inputs).shape == (2, 3, 3, 3)
    assert torch.autograd.gradcheck(fn, inputs, fast_mode=True)
    assert launches and set(launches) == {torch.float64}


# Reduction plans for a 10 x 10 output of 3 samples: (samples per split, pixel splits, pixels per split).
SPLIT_PLANS = {"one-split": (3, 1, 100), "samples-grouped": (2, 1, 100), "per-sample": (1, 1, 100),
               "pixel-splits": (1, 4, 32), "odd-pixel-splits": (1, 8, 13), "empty-last-split": (1, 9, 13)}


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("plan", SPLIT_PLANS.values(), ids=SPLIT_PLANS.keys())
def test_weight_grad_kernel_splits(backend, device, dtype, plan):
    # The weight gradient's reduction over (sample, pixel) is split in several ways; the sum
    # must not depend on how: against torch's weight gradient of the scaled tensors.
    gen = torch.Generator().manual_seed(8)
    n, i, o, kh, kw, pad = 3, 4, 5, 3, 3, (1, 0, 2, 1)  # x0, x1, y0, y1
    x = torch.randn(n, i, 9, 11, generator=gen, dtype=dtype)
    g = torch.randn(n, o, 9 + pad[2] + pad[3] - kh + 1, 11 + pad[0] + pad[1] - kw + 1, generator=gen, dtype=dtype)
    assert g.shape[2:] == (10, 10)
    d, s = torch.rand(n, o, generator=gen, dtype=dtype) + 0.5, torch.rand(n, i, generator=gen, dtype=dtype) + 0.5
    g_strided = g.transpose(2, 3).contiguous().transpose(2, 3)  # any strides
    got = FUSED_PATH._weight_grad(*(t.to(device) for t in (g_strided, x, d, s)), pad, (kh, kw),
                                  "cpu" if backend == "cpu-twin" else backend, FUSED_PATH._ReductionSplits(*plan))
    want = torch.nn.grad.conv2d_weight(F.pad(x.double() * s.double()[:, :, None, None], pad), (o, i, kh, kw),
                                       g.double() * d.double()[:, :, None, None])
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(got.double().cpu(), want, rtol=tol, atol=tol)


@pytest.mark.parametrize("backend", ["cpu", "cuda"])
@pytest.mark.parametrize("samples,pixels,channels,taps", [(1, 16, (512, 512), 9), (4, 64 * 64, (3, 128), 1),
                                                         (32, 256 * 256, (32, 64), 9), (2, 100, (5, 4), 9),
                                                         (7, 4, (512, 3), 1), (1, 512 * 512, (3, 32), 1)])
def test_reduction_splits_cover_every_pixel_once(backend, samples, pixels, channels, taps):
    plan = FUSED_PATH._reduction_splits(samples, pixels, *channels, taps, backend)
    count = plan.count(samples)
    assert 1 <= count <= FUSED_PATH._WGRAD_MAX_SPLITS
    covered = torch.zeros(samples, pixels, dtype=torch.int64)
    for j in range(count):
        n_lo = j // plan.pixel_splits * plan.samples_per_split
        p_lo = j % plan.pixel_splits * plan.pixels_per_split
        covered[n_lo:n_lo + plan.samples_per_split, p_lo:p_lo + plan.pixels_per_split] += 1
    assert torch.equal(covered, torch.ones_like(covered))
