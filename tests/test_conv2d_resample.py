"""conv2d_resample: the reference and every backend's fast paths against fixtures from
the official code, the fast paths against the reference with gradients of first and
second order (R1 differentiates through the discriminator twice), and bad inputs."""
from pathlib import Path

import pytest
import torch

from helpers import backend_params
from nerfgan_distill import ops

BACKENDS = backend_params()
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
])
def test_bad_inputs_raise_clear_errors(kwargs, error, match):
    args = dict(x=torch.zeros(1, 4, 8, 8), w=torch.zeros(4, 4, 3, 3), f=FIR, up=2, padding=1)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        ops.conv2d_resample(**args)
