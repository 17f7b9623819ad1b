"""conv2d_resample: the reference and every backend's fast paths against fixtures from
the official code, the fast paths against the reference with gradients of first and
second order (R1 differentiates through the discriminator twice), and bad inputs."""
from pathlib import Path

import pytest
import torch

from helpers import backend_params, in_layout
from nerfgan_distill import ops
from nerfgan_distill.ops.conv2d_resample_ref import conv2d_resample_ref

BACKENDS = backend_params()
WITH_TORCH = [pytest.param("torch", "cpu", id="torch")] + BACKENDS
OFFICIAL = torch.load(Path(__file__).parent / "fixtures" / "stylegan_ops.pt", weights_only=True)["conv2d_resample"]
FIR = ops.setup_filter([1, 3, 3, 1])


@pytest.mark.parametrize("case", OFFICIAL, ids=lambda c: c["name"])
def test_reference_matches_official(case):
    y = ops.conv2d_resample(case["x"], case["w"], **case["kwargs"], backend="torch")
    torch.testing.assert_close(y, case["y"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("case", OFFICIAL, ids=lambda c: c["name"])
def test_fast_paths_match_official(backend, device, case):
    kwargs = dict(case["kwargs"])
    if kwargs.get("f") is not None:
        kwargs["f"] = kwargs["f"].to(device)
    y = ops.conv2d_resample(case["x"].to(device), case["w"].to(device), **kwargs, backend=backend)
    torch.testing.assert_close(y.cpu(), case["y"], rtol=0, atol=1e-12)


# (kernel, up, down, padding, groups, flip_weight): one per fast path, and the general one
CONFIGS = [
    (3, 2, 1, 1, 1, False),   # transposed conv, then FIR (an up-block's conv0)
    (3, 2, 2, 1, 1, True),    # transposed conv, FIR, FIR-down
    (1, 2, 1, 0, 1, True),    # pointwise conv, then FIR-up
    (3, 1, 2, 1, 1, True),    # FIR, then strided conv (discriminator)
    (1, 1, 2, 0, 1, True),    # FIR-down, then pointwise conv (discriminator skip)
    (3, 1, 1, 1, 2, True),    # plain padded, grouped conv
    (3, 1, 1, [1, 0, 2, 1], 1, True),  # asymmetric padding: the general path
]


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("config", range(len(CONFIGS)))
def test_fast_paths_match_reference_with_gradients(backend, device, config):
    k, up, down, padding, groups, flip_weight = CONFIGS[config]
    x = torch.randn(2, 4, 9, 8, device=device, requires_grad=True)
    w = torch.randn(6, 4 // groups, k, k, device=device, requires_grad=True)
    kwargs = dict(f=FIR.to(device), up=up, down=down, padding=padding, groups=groups, flip_weight=flip_weight)
    y = ops.conv2d_resample(x, w, **kwargs, backend=backend)
    x64, w64 = (t.detach().double().requires_grad_(True) for t in (x, w))
    y64 = ops.conv2d_resample(x64, w64, **kwargs, backend="torch")
    torch.testing.assert_close(y.double(), y64, rtol=1e-5, atol=1e-4)
    dy = torch.randn_like(y)
    gx, gw = torch.autograd.grad(y, (x, w), dy, create_graph=True)
    gx64, gw64 = torch.autograd.grad(y64, (x64, w64), dy.double(), create_graph=True)
    torch.testing.assert_close(gx.double(), gx64, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(gw.double(), gw64, rtol=1e-5, atol=1e-4)
    # R1-like: the gradient norm with respect to the input, differentiated to the weights.
    (ggw,) = torch.autograd.grad((gx * gx).sum(), w)
    (ggw64,) = torch.autograd.grad((gx64 * gx64).sum(), w64)
    torch.testing.assert_close(ggw.double(), ggw64, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("config", [0, 3])
def test_gradcheck_and_gradgradcheck_fp64(backend, device, config):
    k, up, down, padding, groups, flip_weight = CONFIGS[config]
    x = torch.randn(1, 2, 4, 3, device=device, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 2, k, k, device=device, dtype=torch.float64, requires_grad=True)
    fn = lambda x, w: ops.conv2d_resample(x, w, f=FIR.to(device), up=up, down=down,  # noqa: E731
                                          padding=padding, flip_weight=flip_weight, backend=backend)
    assert torch.autograd.gradcheck(fn, (x, w))
    assert torch.autograd.gradgradcheck(fn, (x, w))


@pytest.mark.parametrize("backend", ["cpu", "torch"])
@pytest.mark.parametrize("up,down", [(1, 1), (1, 2), (2, 1), (2, 2)])
def test_gradgradcheck_grouped_flip_filter_fp64(backend, up, down):
    g = torch.Generator().manual_seed(up * 2 + down)
    x = torch.randn(1, 4, 4, 3, generator=g, dtype=torch.float64).requires_grad_(True)
    w = torch.randn(4, 2, 3, 3, generator=g, dtype=torch.float64).requires_grad_(True)
    fn = lambda x, w: ops.conv2d_resample(x, w, f=FIR, up=up, down=down, padding=1, groups=2,  # noqa: E731
                                          flip_weight=up == 1, flip_filter=True, backend=backend)
    assert torch.autograd.gradcheck(fn, (x, w))
    assert torch.autograd.gradgradcheck(fn, (x, w))


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("layout", ["channels_last", "transposed", "sliced"])
@pytest.mark.parametrize("config", range(len(CONFIGS)))
def test_layouts_match_reference(backend, device, layout, config):
    k, up, down, padding, groups, flip_weight = CONFIGS[config]
    g = torch.Generator().manual_seed(config)
    x = torch.randn(2, 4, 9, 8, generator=g).to(device)
    w = torch.randn(6, 4 // groups, k, k, generator=g).to(device)
    kwargs = dict(f=FIR.to(device), up=up, down=down, padding=padding, groups=groups, flip_weight=flip_weight)
    y = ops.conv2d_resample(in_layout(x, layout), in_layout(w, layout), **kwargs, backend=backend)
    want = ops.conv2d_resample(x.double(), w.double(), **kwargs, backend="torch")
    torch.testing.assert_close(y.double(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend,device", WITH_TORCH)
@pytest.mark.parametrize("n,c,o,h,up,down", [(0, 4, 6, 5, 2, 1), (2, 0, 6, 5, 1, 2), (2, 4, 0, 5, 2, 2),
                                             (2, 4, 6, 0, 1, 1), (2, 4, 6, 0, 2, 2)],
                         ids=["no-samples", "no-in-channels", "no-out-channels", "no-rows", "no-rows-up-down"])
def test_inputs_without_elements(backend, device, n, c, o, h, up, down):
    # The output is all zeros (every sum of the conv is empty or over padding) of the shape
    # the reference gives on stand-ins with one sample and channel; gradients come back as zeros.
    x = torch.randn(n, c, h, 4, device=device, requires_grad=True)
    w = torch.randn(o, c, 3, 3, device=device, requires_grad=True)
    kwargs = dict(f=FIR.to(device), up=up, down=down, padding=2)
    y = ops.conv2d_resample(x, w, **kwargs, backend=backend)
    stand_in = conv2d_resample_ref(torch.zeros(max(n, 1), max(c, 1), h, 4, device=device),
                                   torch.zeros(max(o, 1), max(c, 1), 3, 3, device=device),
                                   kwargs["f"], up, down, (2, 2, 2, 2), 1, True, False)
    assert torch.equal(y, stand_in[:n, :o])
    grads = torch.autograd.grad(y, (x, w), torch.randn_like(y))
    for grad, t in zip(grads, (x, w)):
        assert torch.equal(grad, torch.zeros_like(t))


# (x's height and width, kernel, up, down, filter): for each, the bottom padding that leaves a
# single output row is found from the reference; one less must raise.
EDGES = [((3, 4), 3, 1, 1, None), ((3, 4), 3, 2, 1, "fir"), ((3, 4), 3, 1, 2, "fir"), ((3, 4), 1, 2, 2, "fir"),
         ((3, 4), 1, 1, 2, "fir"), ((3, 4), 1, 2, 1, "fir"), ((2, 5), 5, 1, 1, None), ((2, 2), 7, 2, 2, "fir")]


def _reference_output(x, w, f, up, down, padding):
    """The reference's output, or None where torch's conv2d refuses (a kernel larger than its input)."""
    try:
        y = conv2d_resample_ref(x, w, f, up, down, tuple(padding), 1, True, False)
    except RuntimeError:
        return None
    return y if y.numel() else None


@pytest.mark.parametrize("backend,device", WITH_TORCH)
@pytest.mark.parametrize("edge", EDGES, ids=lambda e: "{}x{}-k{}-up{}-down{}-{}".format(*e[0], *e[1:]))
def test_padding_that_leaves_no_output_raises(backend, device, edge):
    (h, w), k, up, down, fir = edge
    x, wt = torch.randn(1, 2, h, w, device=device), torch.randn(3, 2, k, k, device=device)
    kwargs = dict(f=FIR.to(device) if fir else None, up=up, down=down)
    least = 12  # going down until the reference refuses (further down, its slicing would wrap around)
    while _reference_output(x, wt, *kwargs.values(), [3, 3, 0, least - 1]) is not None:
        least -= 1
    want = _reference_output(x, wt, *kwargs.values(), [3, 3, 0, least])
    assert want.shape[2] == 1
    y = ops.conv2d_resample(x, wt, **kwargs, padding=[3, 3, 0, least], backend=backend)
    torch.testing.assert_close(y, want, rtol=1e-5, atol=1e-5)
    for padding in ([3, 3, 0, least - 1], [least - 12] * 4):
        with pytest.raises(ValueError, match=r"conv2d_resample: padding \[.*\] leaves no output"):
            ops.conv2d_resample(x, wt, **kwargs, padding=padding, backend=backend)


def test_torch_compile_fullgraph_matches_eager():
    x, w = torch.randn(2, 4, 8, 8), torch.randn(4, 4, 3, 3)
    fn = lambda x, w: ops.conv2d_resample(x, w, FIR, up=2, padding=1, flip_weight=False, backend="cpu")  # noqa
    torch.testing.assert_close(torch.compile(fn, fullgraph=True)(x, w), fn(x, w), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(w=torch.zeros(4, 4, 3)), ValueError, r"w must be \[Cout, Cin/groups, kh, kw\]"),
    (dict(x=torch.zeros(4, 8, 8)), ValueError, r"x must be \[N, C, H, W\]"),
    (dict(w=torch.zeros(4, 3, 3, 3)), ValueError, "does not fit x with 4 channels"),
    (dict(groups=3), ValueError, "does not fit x with 4 channels in 3 group"),
    (dict(w=torch.zeros(4, 4, 3, 3, dtype=torch.float64)), TypeError, "w has dtype torch.float64"),
    (dict(up=0), ValueError, "up must be an int >= 1"),
    (dict(down=1.5), ValueError, "down must be an int >= 1"),
    (dict(f=torch.ones(2, 2, 2)), ValueError, "f must be a"),
    (dict(f=torch.ones(4, 4, requires_grad=True)), ValueError, "f must not require grad"),
    (dict(f=torch.ones(4, 4, device="meta")), ValueError, "f is on meta but x is on cpu"),
    (dict(flip_weight=0), TypeError, "flip_weight must be a bool"),
    (dict(padding=[1, 2, 3]), TypeError, "padding must be"),
    (dict(w=torch.zeros(4, 4, 0, 3)), ValueError, "w must have a kernel of at least 1x1"),
    (dict(groups=0), ValueError, "groups must be an int >= 1"),
])
def test_bad_inputs_raise_clear_errors(kwargs, error, match):
    args = dict(x=torch.zeros(1, 4, 8, 8), w=torch.zeros(4, 4, 3, 3), f=FIR, up=2, padding=1)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        ops.conv2d_resample(**args)
