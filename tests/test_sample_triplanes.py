"""sample_triplanes: the reference against fixtures made from the official EG3D code
(tools/make_render_fixtures.py), every backend against the reference (forward and
gradients to planes and points), layouts, non-finite points and bad inputs."""
from pathlib import Path

import pytest
import torch

from helpers import backend_params
from nerfgan_distill import ops
from nerfgan_distill.ops.sample_triplanes import gather_friendly

BACKENDS = backend_params()
FIXTURES = torch.load(Path(__file__).parent / "fixtures" / "render_ops.pt", weights_only=True)
CASES = FIXTURES["sample_from_planes"]


def test_fixtures_come_from_the_official_code():
    assert FIXTURES["source"].startswith("NVlabs/eg3d")


def sample_with_grads(case, backend, device):
    planes = case["planes"].to(device).requires_grad_(True)
    coords = case["coords"].to(device).requires_grad_(True)
    out = ops.sample_triplanes(planes, coords, case["box_warp"], backend=backend)
    grads = torch.autograd.grad(out, (planes, coords), case["grad_out"].to(device))
    return out, grads


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["name"])
def test_reference_matches_official(case):
    out, (grad_planes, grad_coords) = sample_with_grads(case, "torch", "cpu")
    torch.testing.assert_close(out, case["out"], rtol=0, atol=0)
    torch.testing.assert_close(grad_planes, case["grad_planes"], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(grad_coords, case["grad_coords"], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c["name"])
def test_backends_match_official(backend, device, case):
    out, (grad_planes, grad_coords) = sample_with_grads(case, backend, device)
    # grid_sample's CPU code and ours round the pixel coordinate differently (1 ulp).
    torch.testing.assert_close(out.cpu(), case["out"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_planes.cpu(), case["grad_planes"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_coords.cpu(), case["grad_coords"], rtol=1e-4, atol=1e-4)


def random_inputs(device, n=2, c=3, h=5, w=7, m=29, box_warp=1.0, seed=0):
    gen = torch.Generator().manual_seed(seed)
    planes = torch.randn(n, 3, c, h, w, generator=gen, dtype=torch.float64)
    coords = (torch.rand(n, m, 3, generator=gen, dtype=torch.float64) - 0.5) * 1.4 * box_warp  # some outside
    return planes.to(device), coords.to(device)


def assert_matches_reference(planes, coords, backend, box_warp=1.0, plane_axes="eg3d", tol=1e-5):
    """Forward and both gradients of `backend` (in planes' dtype) against the fp64 reference."""
    planes, coords = planes.detach().requires_grad_(True), coords.detach().requires_grad_(True)
    out = ops.sample_triplanes(planes, coords, box_warp, plane_axes, backend=backend)
    grad_out = torch.randn_like(out)
    grads = torch.autograd.grad(out, (planes, coords), grad_out)
    p64, c64 = planes.detach().double().requires_grad_(True), coords.detach().double().requires_grad_(True)
    want = ops.sample_triplanes(p64, c64, box_warp, plane_axes, backend="torch")
    want_grads = torch.autograd.grad(want, (p64, c64), grad_out.double())
    torch.testing.assert_close(out.double(), want, rtol=tol, atol=tol)
    for got, expected in zip(grads, want_grads):
        assert got.shape == expected.shape
        torch.testing.assert_close(got.double(), expected, rtol=tol, atol=tol * 10)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("plane_axes", ["eg3d", "xyz"])
@pytest.mark.parametrize("shape", [dict(c=3, h=5, w=7), dict(c=1, h=6, w=6, box_warp=1.6), dict(c=32, h=4, w=9, m=7)],
                         ids=["c3_5x7", "c1_box1.6", "c32_4x9"])
def test_forward_and_gradients_match_reference(backend, device, plane_axes, shape):
    box_warp = shape.get("box_warp", 1.0)
    planes, coords = random_inputs(device, **shape)
    assert_matches_reference(planes.float(), coords.float(), backend, box_warp, plane_axes)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_gradcheck_fp64(backend, device):
    planes, coords = random_inputs(device, n=1, c=2, h=3, w=4, m=5)
    fn = lambda p, x: ops.sample_triplanes(p, x, 1.2, "eg3d", backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (planes.requires_grad_(True), coords.requires_grad_(True)))


def test_plane_axes_follow_eg3d_quirk():
    # One texel per plane, distinct values: a point's features reveal which axes each plane reads.
    planes = torch.zeros(1, 3, 1, 2, 2, dtype=torch.float64)
    planes[0, :, 0, 0, 1] = 1.0  # row 0 (grid y < 0), column 1 (grid x > 0)
    point = torch.tensor([[[0.25, -0.25, -0.25]]], dtype=torch.float64)  # x > 0, y < 0, z < 0
    eg3d = ops.sample_triplanes(planes, point, backend="torch")[0, :, 0, 0]
    xyz = ops.sample_triplanes(planes, point, plane_axes="xyz", backend="torch")[0, :, 0, 0]
    assert eg3d.tolist() == [1.0, 1.0, 0.0]  # XY, XZ hit (x>0, y/z<0); ZX reads z as grid x: miss
    assert xyz.tolist() == [1.0, 1.0, 0.0]  # YZ: grid x = y < 0: miss
    # The third plane: EG3D's reads (z, x), the orthogonal set (y, z).
    point = torch.tensor([[[-0.25, -0.25, 0.25], [-0.25, 0.25, -0.25]]], dtype=torch.float64)
    assert ops.sample_triplanes(planes, point, backend="torch")[0, 2, :, 0].tolist() == [1.0, 0.0]
    assert ops.sample_triplanes(planes, point, plane_axes="xyz", backend="torch")[0, 2, :, 0].tolist() == [0.0, 1.0]


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("layout", ["channels_last", "sliced", "expanded_batch", "coords_transposed"])
def test_layouts(backend, device, layout):
    planes, coords = random_inputs(device, n=2, c=4, h=6, w=5, m=11)
    planes, coords = planes.float(), coords.float()
    if layout == "channels_last":  # C with stride 1: how the teacher feeds its planes
        planes = planes.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    elif layout == "sliced":
        planes = torch.randn(2, 3, 9, 8, 11, device=device)[:, :, ::2, 1:7, ::2]
    elif layout == "expanded_batch":
        planes = planes[:1].expand(2, -1, -1, -1, -1)
    else:
        coords = coords.transpose(1, 2).contiguous().transpose(1, 2)
    assert_matches_reference(planes, coords, backend)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("points", [3, 400], ids=["in-place", "channels-last-copy"])
def test_nchw_planes_are_read_in_place_or_copied_to_channels_last(backend, device, points):
    # The forward copies NCHW planes to channels-last once the points' reads outnumber the
    # planes' values; the backward reads the planes as given. Either way, the same results.
    planes, coords = random_inputs(device, n=2, c=5, h=20, w=20, m=points)
    planes, coords = planes.float(), coords.float()
    friendly = gather_friendly(planes, 2 * points)
    assert (friendly is not planes) == (points == 400) and (friendly.stride(2) == 1) == (points == 400)
    assert torch.equal(friendly, planes)
    assert_matches_reference(planes, coords, backend, tol=1e-4)  # 20x20 planes: coords gradients reach 300


@pytest.mark.parametrize("backend,device", BACKENDS + [pytest.param("torch", "cpu", id="torch")])
def test_nan_points_give_nan_and_far_points_zero(backend, device):
    planes = torch.randn(1, 3, 2, 4, 4, device=device)
    coords = torch.tensor([[[float("nan"), 0, 0], [0.1, float("nan"), 0.2], [1e30, -1e30, 3e38],
                            [float("inf"), 0, float("-inf")], [5, 5, 5]]], device=device)
    out = ops.sample_triplanes(planes, coords, backend=backend)
    assert out[0, :, 0].isnan().all()  # x feeds every plane
    assert out[0, 0, 1].isnan().all() and not out[0, 1:, 1].isnan().any()  # y feeds only the XY plane
    assert (out[0, :, 2:] == 0).all()


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_empty_inputs(backend, device):
    planes = torch.randn(2, 3, 4, 5, 5, device=device, requires_grad=True)
    coords = torch.zeros(2, 0, 3, device=device, requires_grad=True)
    out = ops.sample_triplanes(planes, coords, backend=backend)
    assert out.shape == (2, 3, 0, 4)
    grad_planes, grad_coords = torch.autograd.grad(out.sum(), (planes, coords))
    assert (grad_planes == 0).all() and grad_coords.shape == (2, 0, 3)


def test_cpu_planes_gradient_is_deterministic():
    planes, coords = random_inputs("cpu", n=1, c=8, h=4, w=4, m=500)
    planes = planes.float().requires_grad_(True)
    coords = (coords.float() * 0.2)  # many points on few texels
    out = ops.sample_triplanes(planes, coords, backend="cpu")
    grad_out = torch.randn_like(out)
    first = torch.autograd.grad(out, planes, grad_out, retain_graph=True)[0]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        again = torch.autograd.grad(out, planes, grad_out)[0]
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(first, again)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cpu_half_planes_sample_in_fp32(dtype):
    planes, coords = random_inputs("cpu", c=5)
    planes_half = planes.to(dtype)
    out = ops.sample_triplanes(planes_half, coords.float(), backend="cpu")
    assert out.dtype == dtype
    want = ops.sample_triplanes(planes_half.double(), coords, backend="torch")
    torch.testing.assert_close(out.double(), want, rtol=2 * torch.finfo(dtype).eps, atol=4 * torch.finfo(dtype).eps)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gpu_half_precision(backend, dtype):
    planes, coords = random_inputs("cuda", n=2, c=32, h=64, w=64, m=4096)
    planes = planes.to(dtype).requires_grad_(True)
    coords = coords.float().requires_grad_(True)
    out = ops.sample_triplanes(planes, coords, backend=backend)
    want = ops.sample_triplanes(planes.detach().double(), coords.detach().double(), backend="torch")
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(out.double(), want, rtol=2 * eps, atol=4 * eps * want.abs().max().item())
    grad_planes, grad_coords = torch.autograd.grad(out.float().sum(), (planes, coords))
    assert grad_planes.dtype == dtype and grad_coords.dtype == torch.float32


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_opcheck(backend, device):
    planes, coords = random_inputs(device, n=1, c=2, h=3, w=4, m=5)
    planes, coords = planes.float().requires_grad_(True), coords.float().requires_grad_(True)
    torch.library.opcheck(torch.ops.nerfgan_distill.sample_triplanes, (planes, coords, 1.0, [0, 1, 0, 2, 2, 0], backend))


def test_torch_compile_fullgraph_matches_eager():
    planes, coords = random_inputs("cpu")
    planes, coords = planes.float(), coords.float()
    fn = lambda p, x: ops.sample_triplanes(p, x, backend="cpu") * 2  # noqa: E731
    torch.testing.assert_close(torch.compile(fn, fullgraph=True)(planes, coords), fn(planes, coords))


def test_second_order_gradient_raises_clearly():
    planes, coords = random_inputs("cpu", n=1, c=2, h=3, w=3, m=4)
    planes = planes.requires_grad_(True)
    out = ops.sample_triplanes(planes, coords, backend="cpu")
    (grad,) = torch.autograd.grad(out.sum(), planes, create_graph=True)
    with pytest.raises(NotImplementedError, match="second order"):
        torch.autograd.grad(grad.sum(), planes)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(planes=torch.zeros(1, 3, 2, 4)), ValueError, r"planes must be \[N, 3, C, H, W\]"),
    (dict(planes=torch.zeros(1, 2, 2, 4, 4)), ValueError, r"planes must be \[N, 3, C, H, W\]"),
    (dict(coords=torch.zeros(1, 5, 2)), ValueError, r"coords must be \[N, M, 3\]"),
    (dict(coords=torch.zeros(2, 5, 3)), ValueError, "coords has batch 2 but planes has 1"),
    (dict(coords=torch.zeros(1, 5, 3, dtype=torch.float64)), TypeError, "coords must be torch.float32"),
    (dict(coords=torch.zeros(1, 5, 3, dtype=torch.int32)), TypeError, "coords must be float32"),
    (dict(coords=torch.zeros(1, 5, 3, device="meta")), ValueError, "coords is on meta but planes is on cpu"),
    (dict(box_warp=float("nan")), ValueError, "box_warp must be finite"),
    (dict(box_warp=0), ValueError, "box_warp must be > 0"),
    (dict(plane_axes="yzx"), ValueError, "plane_axes must be one of"),
    (dict(plane_axes=[0, 1]), TypeError, r"plane_axes must be a str, one of \['eg3d', 'xyz'\], got \[0, 1\]"),
    (dict(plane_axes=None), TypeError, "plane_axes must be a str"),
])
def test_bad_inputs_raise_clear_errors(kwargs, error, match):
    args = dict(planes=torch.zeros(1, 3, 2, 4, 4), coords=torch.zeros(1, 5, 3))
    args.update(kwargs)
    with pytest.raises(error, match=match):
        ops.sample_triplanes(**args)


@pytest.mark.parametrize("size", [(0, 4), (4, 0), (0, 0)], ids=str)
@pytest.mark.parametrize("backend,device", BACKENDS + [pytest.param("torch", "cpu", id="torch")])
def test_planes_without_texels_raise_clear_errors(backend, device, size):
    planes = torch.zeros(1, 3, 2, *size, device=device)
    for m in (5, 0):  # with points, and with none
        with pytest.raises(ValueError, match=r"sample_triplanes: planes must have H >= 1 and W >= 1"):
            ops.sample_triplanes(planes, torch.zeros(1, m, 3, device=device), backend=backend)
