"""composite_rays: the reference against fixtures made from EG3D's MipRayMarcher2
(tools/make_render_fixtures.py), every backend against the reference (outputs and
gradients to colors and densities), EG3D's edge cases and bad inputs."""
from pathlib import Path

import pytest
import torch

from helpers import backend_params
from nerfgan_distill import ops

BACKENDS = backend_params()
FIXTURES = torch.load(Path(__file__).parent / "fixtures" / "render_ops.pt", weights_only=True)
CASES = FIXTURES["ray_marcher"]


def composite_with_grads(case, backend, device):
    colors = case["colors"].to(device).requires_grad_(True)
    densities = case["densities"].to(device).requires_grad_(True)
    outs = ops.composite_rays(colors, densities, case["depths"].to(device), case["white_back"], backend=backend)
    grads = torch.autograd.grad(outs, (colors, densities),
                                [case[k].to(device) for k in ("grad_rgb", "grad_depth", "grad_weights")])
    return outs, grads


@pytest.mark.parametrize("backend,device", BACKENDS + [pytest.param("torch", "cpu", id="torch")])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c["name"])
def test_backends_match_official(backend, device, case):
    (rgb, depth, weights), (grad_colors, grad_densities) = composite_with_grads(case, backend, device)
    # The reference runs EG3D's own sequence of torch ops: equal to a few fp32 ulps, not bitwise, since
    # torch's vectorized exp/softplus differ by CPU ISA (the fixture was made on AVX2; AVX-512 differs
    # by 2 ulps).
    ulps = dict(rtol=4 * torch.finfo(torch.float32).eps, atol=1e-7)
    tol = ulps if backend == "torch" else dict(rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(weights.cpu(), case["weights"], **tol)
    torch.testing.assert_close(depth.cpu(), case["depth"], **tol)
    torch.testing.assert_close(rgb.cpu(), case["rgb"], **tol)
    torch.testing.assert_close(grad_colors.cpu(), case["grad_colors"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad_densities.cpu(), case["grad_densities"], rtol=1e-4, atol=1e-5)


def random_rays(device, n=2, r=3, s=7, c=4, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    colors = torch.rand(n, r, s, c, generator=gen, dtype=dtype)
    densities = torch.randn(n, r, s, 1, generator=gen, dtype=dtype) * 4
    step = 1.0 / max(s - 1, 1)
    depths = (torch.linspace(2.25, 3.3, s, dtype=dtype) + torch.rand(n, r, s, generator=gen, dtype=dtype) * step * 0.9)
    return colors.to(device), densities.to(device), depths.unsqueeze(-1).to(device)


def assert_matches_reference(colors, densities, depths, backend, white_back, tol=1e-5):
    colors, densities = colors.detach().requires_grad_(True), densities.detach().requires_grad_(True)
    outs = ops.composite_rays(colors, densities, depths, white_back, backend=backend)
    grads_out = [torch.randn_like(o) for o in outs]
    grads = torch.autograd.grad(outs, (colors, densities), grads_out)
    c64, d64 = colors.detach().double().requires_grad_(True), densities.detach().double().requires_grad_(True)
    want = ops.composite_rays(c64, d64, depths.double(), white_back, backend="torch")
    want_grads = torch.autograd.grad(want, (c64, d64), [g.double() for g in grads_out])
    for got, expected in zip(outs, want):
        torch.testing.assert_close(got.double(), expected, rtol=tol, atol=tol)
    for got, expected in zip(grads, want_grads):
        torch.testing.assert_close(got.double(), expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("white_back", [False, True])
@pytest.mark.parametrize("shape", [dict(s=7, c=4), dict(s=2, c=1), dict(s=13, c=35), dict(n=1, r=1, s=3, c=32)],
                         ids=["s7_c4", "s2_c1", "s13_c35", "one_ray_c32"])
def test_forward_and_gradients_match_reference(backend, device, white_back, shape):
    colors, densities, depths = random_rays(device, **shape)
    assert_matches_reference(colors.float(), densities.float(), depths.float(), backend, white_back)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_gradcheck_fp64(backend, device):
    colors, densities, depths = random_rays(device, n=1, r=2, s=5, c=3)
    fn = lambda c, d: ops.composite_rays(c, d, depths, True, backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (colors.requires_grad_(True), densities.requires_grad_(True)))


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_non_contiguous_inputs(backend, device):
    colors, densities, depths = random_rays(device, n=3, r=2, s=6, c=5, dtype=torch.float32)
    colors = colors.transpose(0, 1).contiguous().transpose(0, 1)
    densities = torch.randn(3, 2, 12, 1, device=device)[:, :, ::2]
    depths = depths.expand(3, 2, 6, 1)
    assert_matches_reference(colors, densities, depths, backend, False)


@pytest.mark.parametrize("backend,device", BACKENDS + [pytest.param("torch", "cpu", id="torch")])
def test_empty_rays_take_the_global_max_depth(backend, device):
    colors, densities, depths = random_rays(device, n=2, r=2, s=5, c=3, dtype=torch.float32)
    densities[0, 1] = -200.0  # softplus underflows to 0: no weight at all
    depths[1] += 1.0  # the global range comes from another batch item
    rgb, depth, weights = ops.composite_rays(colors, densities, depths, backend=backend)
    assert weights[0, 1].abs().max() == 0
    assert depth[0, 1, 0] == depths.max()
    assert (rgb[0, 1] == -1).all()  # no white background: black, mapped to -1


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_empty_ray_has_finite_gradients(backend, device):
    # EG3D's torch code gives NaN densities gradients here (0/0 in the depth); the kernels give 0.
    colors, densities, depths = random_rays(device, n=1, r=2, s=4, c=2, dtype=torch.float32)
    densities[0, 0] = -200.0
    densities.requires_grad_(True)
    outs = ops.composite_rays(colors, densities, depths, backend=backend)
    (grad,) = torch.autograd.grad(sum(o.sum() for o in outs), densities)
    assert grad.isfinite().all()


@pytest.mark.parametrize("n,r", [(0, 3), (2, 0)], ids=["no-batch", "no-rays"])
@pytest.mark.parametrize("backend,device", BACKENDS + [pytest.param("torch", "cpu", id="torch")])
def test_empty_batch(backend, device, n, r):
    colors, densities, depths = random_rays(device, n=n, r=r, s=4, c=2, dtype=torch.float32)
    colors.requires_grad_(True)
    densities.requires_grad_(True)
    rgb, depth, weights = ops.composite_rays(colors, densities, depths, backend=backend)
    assert rgb.shape == (n, r, 2) and depth.shape == (n, r, 1) and weights.shape == (n, r, 3, 1)
    grad_colors, grad_densities = torch.autograd.grad(rgb.sum() + depth.sum() + weights.sum(), (colors, densities))
    assert grad_colors.shape == colors.shape and grad_densities.shape == densities.shape


@pytest.mark.parametrize("white_back", [False, True])
@pytest.mark.parametrize("backend,device", BACKENDS + [pytest.param("torch", "cpu", id="torch")])
def test_no_channels_give_empty_features(backend, device, white_back):
    # Depth and weights do not depend on the colors: they match the same rays with one channel.
    colors, densities, depths = random_rays(device, c=1, dtype=torch.float32)
    rgb, depth, weights = ops.composite_rays(colors[..., :0], densities, depths, white_back, backend=backend)
    _, depth_one, weights_one = ops.composite_rays(colors, densities, depths, white_back, backend=backend)
    assert rgb.shape == (2, 3, 0)
    torch.testing.assert_close(depth, depth_one, rtol=0, atol=0)
    torch.testing.assert_close(weights, weights_one, rtol=0, atol=0)
    assert_matches_reference(colors[..., :0], densities, depths, backend, white_back)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cpu_half_precision_accumulates_in_fp32(dtype):
    colors, densities, depths = random_rays("cpu", s=48, c=32)
    half = [t.to(dtype) for t in (colors, densities, depths)]
    got = ops.composite_rays(*half, backend="cpu")
    want = ops.composite_rays(*[t.double() for t in half], backend="torch")
    eps = torch.finfo(dtype).eps
    for g, w in zip(got, want):
        assert g.dtype == dtype
        torch.testing.assert_close(g.double(), w, rtol=2 * eps, atol=2 * eps * max(1.0, w.abs().max().item()))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gpu_half_precision(backend, dtype):
    colors, densities, depths = random_rays("cuda", n=2, r=1000, s=96, c=32)
    half = [t.to(dtype) for t in (colors, densities, depths)]
    colors_h = half[0].requires_grad_(True)
    got = ops.composite_rays(colors_h, *half[1:], backend=backend)
    want = ops.composite_rays(*[t.detach().double() for t in half], backend="torch")
    eps = torch.finfo(dtype).eps
    for g, w in zip(got, want):
        torch.testing.assert_close(g.double(), w, rtol=2 * eps, atol=2 * eps * max(1.0, w.abs().max().item()))
    (grad,) = torch.autograd.grad(got[0].float().sum(), colors_h)
    assert grad.dtype == dtype and grad.isfinite().all()


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_opcheck(backend, device):
    colors, densities, depths = random_rays(device, n=1, r=2, s=4, c=3, dtype=torch.float32)
    torch.library.opcheck(torch.ops.nerfgan_distill.composite_rays,
                          (colors.requires_grad_(True), densities.requires_grad_(True), depths, True, backend))


def test_torch_compile_fullgraph_matches_eager():
    colors, densities, depths = random_rays("cpu", dtype=torch.float32)
    fn = lambda c, d, t: ops.composite_rays(c, d, t, backend="cpu")[0] * 2  # noqa: E731
    torch.testing.assert_close(torch.compile(fn, fullgraph=True)(colors, densities, depths), fn(colors, densities, depths))


def test_second_order_gradient_raises_clearly():
    colors, densities, depths = random_rays("cpu", n=1, r=1, s=3, c=2)
    densities.requires_grad_(True)
    (grad,) = torch.autograd.grad(ops.composite_rays(colors, densities, depths, backend="cpu")[0].sum(), densities,
                                  create_graph=True)
    with pytest.raises(NotImplementedError, match="second order"):
        torch.autograd.grad(grad.sum(), densities)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(colors=torch.zeros(1, 2, 4)), ValueError, "colors must have 4 dims"),
    (dict(densities=torch.zeros(1, 2, 4, 2)), ValueError, r"densities must be \[N, R, S, 1\]"),
    (dict(depths=torch.zeros(1, 2, 5, 1)), ValueError, r"depths must be \[N, R, S, 1\]"),
    (dict(colors=torch.zeros(1, 2, 1, 3), densities=torch.zeros(1, 2, 1, 1), depths=torch.zeros(1, 2, 1, 1)),
     ValueError, "S >= 2"),
    (dict(densities=torch.zeros(1, 2, 4, 1, dtype=torch.float64)), TypeError, "densities has dtype torch.float64"),
    (dict(depths=torch.zeros(1, 2, 4, 1, requires_grad=True)), ValueError, "depths must not require grad"),
    (dict(white_back=1), TypeError, "white_back must be a bool"),
    (dict(clamp_mode="relu"), ValueError, "clamp_mode must be 'softplus'"),
])
def test_bad_inputs_raise_clear_errors(kwargs, error, match):
    args = dict(colors=torch.zeros(1, 2, 4, 3), densities=torch.zeros(1, 2, 4, 1), depths=torch.zeros(1, 2, 4, 1))
    args.update(kwargs)
    with pytest.raises(error, match=match):
        ops.composite_rays(**args)
