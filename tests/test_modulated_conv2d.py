"""modulated_conv2d (for now a composite on every backend): the reference and each backend
against fixtures from the official code, gradients of first and second order (path-length
regularisation differentiates through it twice), and bad inputs."""
from pathlib import Path

import pytest
import torch

from helpers import backend_params
from nerfgan_distill import ops

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
    params64 = [p.detach().double().requires_grad_(True) for p in params]
    y64 = ops.modulated_conv2d(*params64, **kwargs, backend="torch")
    torch.testing.assert_close(y.double(), y64, rtol=1e-5, atol=1e-5)
    dy = torch.randn_like(y)
    grads = torch.autograd.grad(y, params, dy, create_graph=True)
    grads64 = torch.autograd.grad(y64, params64, dy.double(), create_graph=True)
    for got, want in zip(grads, grads64):
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4)
    # Second order, as a path-length penalty does: the norm of dL/dstyles, differentiated to the weight.
    (gg,) = torch.autograd.grad(grads[2].square().sum(), weight)
    (gg64,) = torch.autograd.grad(grads64[2].square().sum(), params64[1])
    torch.testing.assert_close(gg.double(), gg64, rtol=1e-3, atol=1e-3)


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
