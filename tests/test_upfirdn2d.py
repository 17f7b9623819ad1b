"""upfirdn2d and its helpers: the reference against fixtures made from the official
StyleGAN2-ADA/EG3D code (tools/make_stylegan_fixtures.py), every backend against the
reference, gradients of first and second order, layouts and bad inputs."""
import functools
from pathlib import Path

import pytest
import torch

from helpers import backend_params
from nerfgan_distill import ops

BACKENDS = backend_params()
FIXTURES = torch.load(Path(__file__).parent / "fixtures" / "stylegan_ops.pt", weights_only=True)
FIR = ops.setup_filter([1, 3, 3, 1])


def test_fixtures_come_from_the_official_code():
    assert FIXTURES["source"].startswith("NVlabs/eg3d")


@pytest.mark.parametrize("case", FIXTURES["setup_filter"], ids=lambda c: str(c["f"]) + str(c["kwargs"]))
def test_setup_filter_matches_official(case):
    torch.testing.assert_close(ops.setup_filter(case["f"], **case["kwargs"]), case["out"], rtol=0, atol=0)


@pytest.mark.parametrize("case", FIXTURES["upfirdn2d"], ids=lambda c: c["name"])
def test_reference_matches_official(case):
    y = getattr(ops, case["fn"])(case["x"], case["f"], **case["kwargs"], backend="torch")
    torch.testing.assert_close(y, case["y"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("case", FIXTURES["upfirdn2d"], ids=lambda c: c["name"])
def test_backends_match_official(backend, device, case):
    f = None if case["f"] is None else case["f"].to(device)
    y = getattr(ops, case["fn"])(case["x"].to(device), f, **case["kwargs"], backend=backend)
    # The official code applies the gain to the fp32 filter; we apply it in fp64 here.
    torch.testing.assert_close(y.cpu(), case["y"], rtol=1e-6, atol=1e-6)


# (up, down, padding, flip_filter, gain, filter) covering what StyleGAN2 and EG3D run plus odd cases
CONFIGS = [
    (2, 1, [2, 1, 2, 1], False, 4.0, "fir"),      # upsample2d of the skip RGB
    (1, 1, [1, 1, 1, 1], False, 4.0, "fir"),      # after the transposed conv of an up-conv
    (1, 2, [1, 1, 1, 1], False, 1.0, "fir"),      # downsample2d
    (1, 1, [1, 2, 1, 2], False, 1.0, "fir"),      # filter2d
    ([2, 3], [3, 2], [1, -2, 3, 0], True, 1.7, "odd"),
    (3, 2, [-1, 4, 2, -3], False, 0.5, "sep"),
    (1, 1, 0, False, 1.0, None),
]


def make_filter(kind, device):
    if kind is None:
        return None
    if kind == "fir":
        return FIR.to(device)
    if kind == "sep":
        return ops.setup_filter([1, 2, 3, 4, 4, 3, 2, 1], device=device)
    return torch.tensor([[0.1, 0.5, 0.2], [0.7, -0.3, 0.4]], device=device)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("config", range(len(CONFIGS)))
def test_forward_backward_double_backward_match_reference(backend, device, config):
    up, down, padding, flip, gain, kind = CONFIGS[config]
    f = make_filter(kind, device)
    x = torch.randn(2, 3, 9, 7, device=device, requires_grad=True)
    kwargs = dict(up=up, down=down, padding=padding, flip_filter=flip, gain=gain)
    y = ops.upfirdn2d(x, f, **kwargs, backend=backend)
    x64 = x.detach().double().requires_grad_(True)
    y64 = ops.upfirdn2d(x64, None if f is None else f, **kwargs, backend="torch")
    torch.testing.assert_close(y.double(), y64, rtol=1e-5, atol=1e-5)
    dy = torch.randn_like(y)
    (dx,) = torch.autograd.grad(y, x, dy, create_graph=True)
    (dx64,) = torch.autograd.grad(y64, x64, dy.double(), create_graph=True)
    torch.testing.assert_close(dx.double(), dx64, rtol=1e-5, atol=1e-5)
    assert dx.shape == x.shape
    # Second order: differentiate a function of the gradient with respect to dy's source.
    dy.requires_grad_(True)
    (dx,) = torch.autograd.grad(ops.upfirdn2d(x, f, **kwargs, backend=backend), x, dy, create_graph=True)
    (ddy,) = torch.autograd.grad((dx * dx).sum(), dy)
    dy64 = dy.detach().double().requires_grad_(True)
    (dx64,) = torch.autograd.grad(ops.upfirdn2d(x64, f, **kwargs, backend="torch"), x64, dy64, create_graph=True)
    (ddy64,) = torch.autograd.grad((dx64 * dx64).sum(), dy64)
    torch.testing.assert_close(ddy.double(), ddy64, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("config", [0, 2, 4, 5])
def test_gradcheck_and_gradgradcheck_fp64(backend, device, config):
    up, down, padding, flip, gain, kind = CONFIGS[config]
    f = make_filter(kind, device)
    x = torch.randn(1, 1, 4, 3, device=device, dtype=torch.float64, requires_grad=True)  # interpreter-sized
    fn = lambda x: ops.upfirdn2d(x, f, up=up, down=down, padding=padding, flip_filter=flip,  # noqa: E731
                                 gain=gain, backend=backend)
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


# The up-block's upsample2d, and the pure 4x4 filtering after its transposed conv (the CPU
# kernel runs the latter per plane).
RESAMPLERS = (ops.upsample2d, functools.partial(ops.filter2d, padding=[1, 2, 0, 1], gain=4))


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("layout", ["channels_last", "transposed_hw", "sliced", "expanded", "one_pixel"])
def test_layouts_and_odd_shapes(backend, device, layout):
    base = torch.randn(2, 5, 7, 9, device=device)
    x = {"channels_last": base.contiguous(memory_format=torch.channels_last),
         "transposed_hw": base.transpose(2, 3),
         "sliced": base[:, 1::2, ::2, 1:],
         "expanded": torch.randn(1, 5, 7, 9, device=device).expand(3, 5, 7, 9),
         "one_pixel": torch.randn(2, 3, 1, 1, device=device)}[layout]
    f = FIR.to(device)
    for resample in RESAMPLERS:
        y = resample(x, f, backend=backend)
        torch.testing.assert_close(y, resample(x.contiguous(), f, backend="torch"), rtol=1e-5, atol=1e-5)
        if layout == "channels_last":
            assert y.is_contiguous(memory_format=torch.channels_last), "the layout of x should be kept"


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_empty_batch(backend, device):
    y = ops.downsample2d(torch.randn(0, 3, 8, 8, device=device), FIR.to(device), backend=backend)
    assert y.shape == (0, 3, 4, 4)


@pytest.mark.parametrize("backend,device", [pytest.param("torch", "cpu", id="torch")] + BACKENDS)
@pytest.mark.parametrize("shape,up,down", [([2, 0, 5, 4], 2, 1), ([1, 2, 0, 4], 1, 1), ([1, 2, 5, 0], 1, 2),
                                           ([0, 0, 0, 0], 2, 2)], ids=["no-channels", "no-rows", "no-columns", "nothing"])
def test_inputs_without_elements_give_zeros_of_the_padded_size(backend, device, shape, up, down):
    # x has no pixels or no channels; the padding alone makes the output (zeros).
    x = torch.randn(shape, device=device, requires_grad=True)
    padding = [3, 2, 4, 3]
    y = ops.upfirdn2d(x, FIR.to(device), up=up, down=down, padding=padding, backend=backend)
    n, c, h, w = shape
    # The formula in upfirdn2d_ref's docstring, with a 4x4 filter.
    out_h, out_w = (h * up + 4 + 3 - 4) // down + 1, (w * up + 3 + 2 - 4) // down + 1
    assert torch.equal(y, torch.zeros(n, c, out_h, out_w, device=device))
    (dx,) = torch.autograd.grad(y, x, torch.randn_like(y))
    assert dx.shape == x.shape


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cpu_half_precision(dtype):
    x = torch.randn(2, 4, 8, 8).to(dtype)
    ulp = torch.finfo(dtype).eps
    for resample in RESAMPLERS:
        y = resample(x, FIR, backend="cpu")
        want = resample(x.double(), FIR, backend="torch").to(dtype)
        torch.testing.assert_close(y.double(), want.double(), rtol=2 * ulp, atol=2 * ulp)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gpu_half_precision(backend, dtype):
    x = torch.randn(4, 32, 33, 17, device="cuda").to(dtype)
    f = FIR.cuda()
    for fn in (ops.upsample2d, ops.downsample2d, ops.filter2d):
        y = fn(x, f, backend=backend)
        want = fn(x.double(), f, backend="torch")
        tol = 2 * torch.finfo(dtype).eps
        torch.testing.assert_close(y.double(), want, rtol=tol, atol=tol * want.abs().max().item())


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_opcheck(backend, device):
    x = torch.randn(2, 3, 6, 5, device=device, requires_grad=True)
    torch.library.opcheck(torch.ops.nerfgan_distill.upfirdn2d,
                          (x, FIR.to(device), [2, 2, 1, 1], [2, 1, 2, 1], False, 4.0, backend))
    torch.library.opcheck(torch.ops.nerfgan_distill.upfirdn2d,
                          (x.detach(), FIR.to(device), [1, 1, 2, 2], [1, 1, 1, 1], True, 1.0, backend))


def test_torch_compile_fullgraph_matches_eager():
    x = torch.randn(2, 4, 8, 8)
    fn = lambda x: ops.upsample2d(x, FIR, backend="cpu") * 2  # noqa: E731
    torch.testing.assert_close(torch.compile(fn, fullgraph=True)(x), fn(x))


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(x=torch.zeros(2, 3, 4)), ValueError, r"x must be \[N, C, H, W\]"),
    (dict(x=torch.zeros(1, 1, 4, 4, dtype=torch.int64)), TypeError, "x must be float32"),
    (dict(f=torch.zeros(2, 2, 2)), ValueError, "f must be a non-empty"),
    (dict(f=torch.zeros(0)), ValueError, "f must be a non-empty"),
    (dict(f=torch.ones(4, 4, requires_grad=True)), ValueError, "f must not require grad"),
    (dict(f=torch.ones(4, 4, device="meta")), ValueError, "f is on meta but x is on cpu"),
    (dict(up=0), ValueError, "up must be >= 1"),
    (dict(down=[1, 2, 3]), TypeError, "down must be an int or a list of 2 ints"),
    (dict(up=2.0), TypeError, "up must be an int"),
    (dict(padding=[1, 2, 3]), TypeError, "padding must be an int or a list of 2 ints or a list of 4 ints"),
    (dict(padding=[-5, 0, 0, 0]), ValueError, "smaller than the 4x4 filter"),
    (dict(padding=-3), ValueError, "smaller than the 4x4 filter"),
    (dict(gain=float("inf")), ValueError, "gain must be finite"),
    (dict(flip_filter=1), TypeError, "flip_filter must be a bool"),
])
def test_bad_inputs_raise_clear_errors(kwargs, error, match):
    args = dict(x=torch.zeros(1, 2, 4, 4), f=FIR)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        ops.upfirdn2d(**args)


def test_setup_filter_rejects_bad_shapes():
    with pytest.raises(ValueError, match="setup_filter: f must be"):
        ops.setup_filter(torch.ones(2, 2, 2))
    with pytest.raises(ValueError, match="cannot be separable"):
        ops.setup_filter([[1, 2], [3, 4]], separable=True)
