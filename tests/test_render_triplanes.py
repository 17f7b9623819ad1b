"""The renderer pieces (ray-box limits) and render_triplanes against
fixtures made from EG3D's ImportanceRenderer (tools/make_render_fixtures.py), with
EG3D's own random numbers injected; the deterministic contract; bad inputs. The fused
kernels against the composable path, their random numbers, and when they run."""
import math
import sys
from pathlib import Path

import pytest
import torch
from helpers import assert_cpu_isa_builds_agree, backend_params

from nerfgan_distill import _native, kernel_codes, ops
from nerfgan_distill.ops.importance_depths_ref import importance_uniforms
from nerfgan_distill.ops.render_triplanes_ref import ray_box_limits, render_triplanes_composable
from nerfgan_distill.ops.sample_triplanes import gather_friendly

BACKENDS = backend_params()
FIXTURES = torch.load(Path(__file__).parent / "fixtures" / "render_ops.pt", weights_only=True)


@pytest.mark.parametrize("case", FIXTURES["ray_limits_box"], ids=lambda c: c["name"])
def test_ray_box_limits_match_official(case):
    t_min, t_max = ray_box_limits(case["rays_o"], case["rays_d"], case["box_side_length"])
    torch.testing.assert_close(t_min, case["tmin"], rtol=0, atol=0)
    torch.testing.assert_close(t_max, case["tmax"], rtol=0, atol=0)


def renderer_inputs(case, device="cpu"):
    decoder = ops.TriplaneDecoder.from_eg3d({k: v.to(device) for k, v in case["decoder"].items()})
    options = ops.RenderOptions.from_eg3d(case["rendering_options"])
    return case["planes"].to(device), decoder, case["ray_origins"].to(device), case["ray_directions"].to(device), options


def assert_render_close(got, case, tol):
    rgb, depth, weights_sum = (t.cpu() for t in got)
    torch.testing.assert_close(rgb, case["rgb"], rtol=tol, atol=tol)
    torch.testing.assert_close(depth, case["depth"], rtol=tol, atol=tol)
    torch.testing.assert_close(weights_sum, case["weights_sum"], rtol=tol, atol=tol)


@pytest.mark.parametrize("backend,device", BACKENDS + [pytest.param("torch", "cpu", id="torch")])
@pytest.mark.parametrize("case", FIXTURES["renderer"], ids=lambda c: c["name"])
def test_composable_renderer_matches_official(backend, device, case):
    planes, decoder, origins, directions, options = renderer_inputs(case, device)
    u = None if case["u"] is None else case["u"].to(device)
    got = render_triplanes_composable(planes, decoder, origins, directions, options, case["jitter"].to(device), u,
                                      backend=backend)
    # Rounding differences move an importance sample a little, which moves the result a little more.
    assert_render_close(got, case, 1e-5 if backend == "torch" else 2e-4)


@pytest.mark.parametrize("backend,device", BACKENDS + [pytest.param("torch", "cpu", id="torch")])
def test_deterministic_mode_is_eg3d_with_zero_jitter_and_linspace_uniforms(backend, device):
    case = next(c for c in FIXTURES["renderer"] if c["name"] == "ffhq_det")
    got = ops.render_triplanes(*renderer_inputs(case, device), deterministic=True, backend=backend)
    assert_render_close(got, case, 1e-5 if backend == "torch" else 2e-4)


def test_stochastic_mode_follows_the_generator():
    case = next(c for c in FIXTURES["renderer"] if c["name"] == "ffhq_random")
    inputs = renderer_inputs(case)
    first = ops.render_triplanes(*inputs, generator=torch.Generator().manual_seed(5), backend="torch")
    again = ops.render_triplanes(*inputs, generator=torch.Generator().manual_seed(5), backend="torch")
    other = ops.render_triplanes(*inputs, generator=torch.Generator().manual_seed(6), backend="torch")
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other[0])


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_gradients_reach_planes_and_decoder(backend, device):
    case = FIXTURES["renderer"][0]
    planes, decoder, origins, directions, options = renderer_inputs(case, device)
    planes = planes.clone().requires_grad_(True)
    weight = decoder.fc1_weight.clone().requires_grad_(True)
    decoder = ops.TriplaneDecoder(weight, decoder.fc1_bias, decoder.fc2_weight, decoder.fc2_bias)
    outs = ops.render_triplanes(planes, decoder, origins, directions, options, deterministic=True, backend=backend)
    grads = torch.autograd.grad(outs[0].sum() + outs[1].sum(), (planes, weight))
    planes_ref = planes.detach().requires_grad_(True)
    weight_ref = weight.detach().requires_grad_(True)
    decoder_ref = ops.TriplaneDecoder(weight_ref, decoder.fc1_bias, decoder.fc2_weight, decoder.fc2_bias)
    outs_ref = ops.render_triplanes(planes_ref, decoder_ref, origins, directions, options, deterministic=True,
                                    backend="torch")
    grads_ref = torch.autograd.grad(outs_ref[0].sum() + outs_ref[1].sum(), (planes_ref, weight_ref))
    for got, want in zip(grads, grads_ref):
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("backend,device", BACKENDS)
def test_composable_path_takes_half_planes(backend, device, dtype):
    # The training path: half planes are sampled in their dtype, then widened for the
    # decoder; outputs are fp32, and the planes' gradient comes back in their dtype.
    planes, decoder, origins, directions = (t.to(device) if torch.is_tensor(t) else t for t in random_scene())
    decoder = ops.TriplaneDecoder(*(t.to(device) for t in decoder.tensors))
    half = planes.to(dtype).requires_grad_(True)
    widened = half.detach().float().requires_grad_(True)
    got, want = (ops.render_triplanes(p, decoder, origins, directions, options_for(), deterministic=True,
                                      backend=backend) for p in (half, widened))
    assert all(g.dtype == torch.float32 for g in got)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-2, atol=1e-2)
    grad, grad_ref = (torch.autograd.grad(outs[0].sum() + outs[1].sum(), p)[0]
                      for outs, p in ((got, half), (want, widened)))
    assert grad.dtype == dtype
    torch.testing.assert_close(grad.float(), grad_ref, rtol=5e-2, atol=5e-2)


def test_render_options_from_eg3d_and_their_errors():
    kwargs = dict(FIXTURES["renderer"][0]["rendering_options"], image_resolution=512, superresolution_module="x",
                  white_back=False)
    options = ops.RenderOptions.from_eg3d(kwargs)
    assert options.depth_resolution == 12 and options.box_warp == 1.0 and options.plane_axes == "eg3d"
    bad = [
        (dict(depth_resolution=1), "depth_resolution must be >= 2"),
        (dict(depth_resolution=3), "depth_resolution must be >= 4 with depth_resolution_importance > 0"),
        (dict(depth_resolution_importance=-1), "depth_resolution_importance must be an int >= 0"),
        (dict(ray_start="auto"), "both be 'auto' or both numbers"),
        (dict(ray_start=3.3, ray_end=2.25), "ray_end must be > ray_start"),
        (dict(ray_end=float("inf")), "ray_end must be finite"),
        (dict(box_warp=-1), "box_warp must be > 0"),
        (dict(clamp_mode="relu"), "clamp_mode must be 'softplus'"),
        (dict(plane_axes="zyx"), "plane_axes must be one of"),
        (dict(plane_axes=["eg3d"]), "plane_axes must be a str"),
        (dict(density_noise=0.5), "density_noise"),
    ]
    for change, match in bad:
        with pytest.raises((ValueError, TypeError), match=match):
            ops.RenderOptions.from_eg3d(dict(kwargs, **change))


def test_bad_render_inputs_raise_clear_errors():
    case = FIXTURES["renderer"][0]
    planes, decoder, origins, directions, options = renderer_inputs(case)
    with pytest.raises(ValueError, match=r"planes must be \[N, 3, C, H, W\]"):
        ops.render_triplanes(planes[:, :2], decoder, origins, directions, options)
    with pytest.raises(ValueError, match=r"ray_origins must be \[N, R, 3\] with N = 2"):
        ops.render_triplanes(planes, decoder, origins[:1], directions, options)
    with pytest.raises(ValueError, match="ray_directions .* and ray_origins .* differ"):
        ops.render_triplanes(planes, decoder, origins, directions[:, :3], options)
    with pytest.raises(TypeError, match="options must be a RenderOptions"):
        ops.render_triplanes(planes, decoder, origins, directions, case["rendering_options"])
    with pytest.raises(TypeError, match="decoder must be a TriplaneDecoder"):
        ops.render_triplanes(planes, case["decoder"], origins, directions, options)
    short = ops.TriplaneDecoder(decoder.fc1_weight[:, :5], decoder.fc1_bias, decoder.fc2_weight, decoder.fc2_bias)
    with pytest.raises(ValueError, match="decoder shapes do not chain for 32 plane channels"):
        ops.render_triplanes(planes, short, origins, directions, options)
    with pytest.raises(TypeError, match="rays must be float32"):
        ops.render_triplanes(planes, decoder, origins.double(), directions.double(), options)
    with pytest.raises(ValueError, match="render_triplanes: planes must have H >= 1 and W >= 1"):
        ops.render_triplanes(planes[:, :, :, :0], decoder, origins, directions, options)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")], ids=str)
@pytest.mark.parametrize("name", ["ray_origins", "ray_directions"])
@pytest.mark.parametrize("backend,device", BACKENDS + [pytest.param("torch", "cpu", id="torch")])
def test_non_finite_rays_raise_clear_errors(backend, device, name, bad):
    # Unchecked, one such ray makes the composable path's depths all NaN (EG3D's batch-wide clamp).
    planes, decoder, origins, directions = (t.to(device) if torch.is_tensor(t) else t for t in tiny_scene())
    decoder = ops.TriplaneDecoder(*(t.to(device) for t in decoder.tensors))
    (origins if name == "ray_origins" else directions)[1, 4, 2] = bad
    for grad in (False, True):  # the fused path (where the backend has one), then the composable one
        with pytest.raises(ValueError, match=f"render_triplanes: {name} must be finite"):
            ops.render_triplanes(planes.requires_grad_(grad), decoder, origins, directions, options_for(),
                                 deterministic=True, backend=backend)


@pytest.mark.parametrize("change", [dict(), dict(ray_start="auto", ray_end="auto", depth_resolution_importance=0)],
                         ids=["importance", "auto-coarse-only"])
@pytest.mark.parametrize("grad", [False, True], ids=["inference", "grad"])
@pytest.mark.parametrize("n,r", [(2, 0), (0, 3)], ids=["no-rays", "no-batch"])
@pytest.mark.parametrize("backend,device", BACKENDS + [pytest.param("torch", "cpu", id="torch")])
def test_empty_inputs_give_empty_outputs(backend, device, n, r, grad, change):
    planes, decoder, origins, directions = (t.to(device) if torch.is_tensor(t) else t for t in tiny_scene(n=n, r=r))
    decoder = ops.TriplaneDecoder(*(t.to(device) for t in decoder.tensors))
    planes.requires_grad_(grad)
    for deterministic in (True, False):
        rgb, depth, weight_total = ops.render_triplanes(planes, decoder, origins, directions, options_for(**change),
                                                        deterministic=deterministic, backend=backend)
        assert rgb.shape == (n, r, 3) and depth.shape == weight_total.shape == (n, r, 1)
        assert rgb.dtype == depth.dtype == weight_total.dtype == torch.float32
        assert rgb.requires_grad == grad
    if grad:
        (grad_planes,) = torch.autograd.grad(rgb.sum() + depth.sum(), planes)
        assert grad_planes.shape == planes.shape and (grad_planes == 0).all()


# --- the fused kernel --------------------------------------------------------------------

RENDER_MODULE = sys.modules["nerfgan_distill.ops.render_triplanes"]
FUSED = [p for p in BACKENDS if p.values[0] in ("cpu", "cuda")]
# The Triton kernel runs under the interpreter without a GPU (slow): its tests use tiny scenes.
TRITON = [p for p in BACKENDS if p.values[0] == "triton"]


@pytest.fixture
def fused_only(monkeypatch):
    """Fail any call that would take the composable path."""
    def refuse(*args, **kwargs):
        raise AssertionError("render_triplanes took the composable path")

    monkeypatch.setattr(RENDER_MODULE, "render_triplanes_composable", refuse)


@pytest.fixture
def composable_calls(monkeypatch):
    """Record the calls that take the composable path (and let them run)."""
    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs.get("backend"))
        return render_triplanes_composable(*args, **kwargs)

    monkeypatch.setattr(RENDER_MODULE, "render_triplanes_composable", spy)
    return calls


# Each option the fused kernels branch on, one at a time.
OPTION_CHANGES = [dict(white_back=True), dict(ray_start="auto", ray_end="auto"), dict(disparity_space_sampling=True),
                  dict(depth_resolution_importance=0), dict(plane_axes="xyz"), dict(box_warp=0.7)]


def deterministic_reference(planes, decoder, origins, directions, options):
    """The composable torch path in deterministic mode (planes sampled in compute precision)."""
    n, r, _ = origins.shape
    jitter = origins.new_zeros(n, r, options.depth_resolution, 1)
    di = options.depth_resolution_importance
    uniforms = importance_uniforms(n * r, di, True, None, origins) if di > 0 else None
    return render_triplanes_composable(planes.to(origins.dtype), decoder, origins, directions, options, jitter,
                                       uniforms, backend="torch")


def assert_matches_deterministic_reference(got, scene, options, tol):
    """The outputs equal the composable torch path's, in the rays' dtype."""
    for g, w in zip(got, deterministic_reference(*scene, options)):
        assert g.dtype == scene[2].dtype
        torch.testing.assert_close(g, w, rtol=tol, atol=tol)


def fused(planes, decoder, origins, directions, options, backend="cpu", device="cpu", **kwargs):
    """render_triplanes in inference mode on `device`, outputs back on the CPU."""
    decoder = ops.TriplaneDecoder(*(t.to(device) for t in decoder.tensors))
    with torch.no_grad():
        outs = ops.render_triplanes(planes.to(device), decoder, origins.to(device), directions.to(device), options,
                                    backend=backend, **kwargs)
    return tuple(t.cpu() for t in outs)


def fused_tol(backend, dtype=torch.float32):
    # CUDA contracts multiply-adds into FMAs, so it rounds a little differently.
    if dtype == torch.float64:
        return 1e-11 if backend == "cpu" else 1e-9
    return 1e-5 if backend == "cpu" else 1e-4


def random_scene(n=2, r=13, c=5, h=7, w=9, hidden=16, c_out=4, dtype=torch.float32, seed=0, misses=False):
    """Random planes and decoder (dense enough to make opaque rays) and rays from a sphere of
    radius 2.7 towards the box; with misses=True every third ray points away from it."""
    g = torch.Generator().manual_seed(seed)
    planes = torch.randn(n, 3, c, h, w, generator=g, dtype=dtype)
    decoder = ops.TriplaneDecoder(torch.randn(hidden, c, generator=g, dtype=dtype) / c ** 0.5,
                                  torch.randn(hidden, generator=g, dtype=dtype) * 0.1,
                                  torch.randn(1 + c_out, hidden, generator=g, dtype=dtype) / hidden ** 0.5,
                                  torch.randn(1 + c_out, generator=g, dtype=dtype) + torch.tensor(
                                      [3.0] + [0.0] * c_out, dtype=dtype))
    origins = torch.nn.functional.normalize(torch.randn(n, r, 3, generator=g, dtype=dtype), dim=-1) * 2.7
    directions = torch.nn.functional.normalize(-origins + 0.6 * torch.randn(n, r, 3, generator=g, dtype=dtype), dim=-1)
    if misses:
        directions[:, ::3] = -directions[:, ::3]
    return planes, decoder, origins, directions


def options_for(**changes):
    base = dict(depth_resolution=7, depth_resolution_importance=5, ray_start=2.0, ray_end=3.4, box_warp=1.4)
    return ops.RenderOptions(**dict(base, **changes))


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("case", FIXTURES["renderer"], ids=lambda c: c["name"])
def test_fused_matches_composable(backend, device, case, fused_only):
    inputs = renderer_inputs(case)
    got = fused(*inputs, deterministic=True, backend=backend, device=device)
    assert_matches_deterministic_reference(got, inputs[:4], inputs[4], fused_tol(backend))


@pytest.mark.parametrize("shape", [
    dict(c=1, h=5, w=9), dict(c=3, h=8, w=4, r=1), dict(c=35, h=6, w=7, r=17, hidden=9, c_out=1),
    dict(n=1, r=31, c=4, h=3, w=2)], ids=str)
@pytest.mark.parametrize("samples", [(2, 0), (3, 0), (4, 1), (4, 4), (9, 16)], ids=str)
@pytest.mark.parametrize("backend,device", FUSED)
def test_fused_odd_sizes(backend, device, shape, samples, fused_only):
    planes, decoder, origins, directions = random_scene(**shape)
    options = options_for(depth_resolution=samples[0], depth_resolution_importance=samples[1])
    got = fused(planes, decoder, origins, directions, options, deterministic=True, backend=backend, device=device)
    assert_matches_deterministic_reference(got, (planes, decoder, origins, directions), options, fused_tol(backend))


def planes_in_layout(planes, layout):
    """The same values with non-contiguous strides: channels-last, a channel slice of a
    transposed tensor, or a batch expanded from one item."""
    if layout == "channels_last":
        return planes.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    if layout == "sliced":
        return torch.cat([planes, planes.flip(-1)], dim=2).transpose(-1, -2).contiguous().transpose(-1, -2)[:, :, ::2]
    return planes[:1].expand(2, -1, -1, -1, -1)


@pytest.mark.parametrize("layout", ["channels_last", "sliced", "expanded"])
@pytest.mark.parametrize("backend,device", FUSED)
def test_fused_any_plane_strides(backend, device, layout, fused_only):
    planes, decoder, origins, directions = random_scene(c=6, h=6, w=10)
    planes = planes_in_layout(planes, layout)
    options = options_for()
    got = fused(planes, decoder, origins, directions, options, deterministic=True, backend=backend, device=device)
    assert_matches_deterministic_reference(got, (planes.contiguous(),
                                           decoder, origins, directions), options, fused_tol(backend))


@pytest.mark.parametrize("backend,device", FUSED)
def test_fused_reads_strided_planes_in_place(backend, device, fused_only):
    # Few samples on large NCHW planes: the kernel gathers with the channel stride, no copy.
    planes, decoder, origins, directions = random_scene(r=3, c=5, h=40, w=33)
    options = options_for(depth_resolution=4, depth_resolution_importance=2)
    assert gather_friendly(planes, 2 * 3 * 6) is planes
    got = fused(planes, decoder, origins, directions, options, deterministic=True, backend=backend, device=device)
    assert_matches_deterministic_reference(got, (planes, decoder, origins, directions), options, fused_tol(backend))


@pytest.mark.parametrize("change", OPTION_CHANGES, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("backend,device", FUSED)
def test_fused_options(backend, device, change, dtype, fused_only):
    planes, decoder, origins, directions = random_scene(dtype=dtype, misses=True)
    options = options_for(**change)
    got = fused(planes, decoder, origins, directions, options, deterministic=True, backend=backend, device=device)
    assert_matches_deterministic_reference(got, (planes, decoder, origins, directions),
                                           options, fused_tol(backend, dtype))


@pytest.mark.parametrize("backend,device", FUSED)
def test_fused_auto_limits_with_every_ray_missing(backend, device, fused_only):
    planes, decoder, origins, directions = random_scene()
    options = options_for(ray_start="auto", ray_end="auto")
    got = fused(planes, decoder, origins, -directions, options, deterministic=True, backend=backend, device=device)
    assert_matches_deterministic_reference(got, (planes, decoder, origins, -directions), options, fused_tol(backend))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("backend,device", FUSED)
def test_fused_reads_half_planes_in_float32(backend, device, dtype, fused_only):
    planes, decoder, origins, directions = random_scene()
    planes = planes.to(dtype)
    got = fused(planes, decoder, origins, directions, options_for(), deterministic=True, backend=backend,
                device=device)
    want = fused(planes.float(), decoder, origins, directions, options_for(), deterministic=True, backend=backend,
                 device=device)
    assert all(torch.equal(g, w) for g, w in zip(got, want))


def test_fused_cpu_empty_batch(fused_only):
    planes, decoder, origins, directions = random_scene(r=0)
    rgb, depth, weights = fused(planes, decoder, origins, directions, options_for(), deterministic=True)
    assert rgb.shape == (2, 0, 4) and depth.shape == weights.shape == (2, 0, 1)


def test_fused_cpu_isa_variants_agree_bitwise(tmp_path):
    probe = """
import sys, torch
sys.path.insert(0, "tests")
from test_render_triplanes import random_scene, options_for, fused
from nerfgan_distill import _native
outs = []
for dtype in (torch.float32, torch.float64):
    scene = random_scene(dtype=dtype, c=11, hidden=20, c_out=9)
    outs += fused(*scene, options_for(), deterministic=True)
    outs += fused(*scene, options_for(white_back=True), generator=torch.Generator().manual_seed(3))
torch.save(outs, sys.argv[1])
print(_native.build_info()["cpu_isa"])
"""
    assert_cpu_isa_builds_agree(probe, tmp_path, cwd=Path(__file__).parent.parent)


def pointwise(planes, decoder, origins, directions, options, seed=None):
    """The CPU kernel run point by point, as the CUDA kernel runs (render_triplanes.h's render_ray_pointwise)."""
    start, end, auto = RENDER_MODULE._depth_range(options)
    with torch.no_grad():
        return RENDER_MODULE._fused_forward(
            planes, *decoder.tensors, origins, directions, seed, options.depth_resolution,
            options.depth_resolution_importance, start, end, auto, options.box_warp, options.white_back,
            options.disparity_space_sampling, RENDER_MODULE._axes(options), "cpu", pointwise=True)


POINTWISE_CASES = [
    (dict(), dict()), (dict(c=1, h=5, w=9), dict(depth_resolution=2, depth_resolution_importance=0)),
    (dict(c=35, r=17, hidden=9, c_out=1), dict(depth_resolution=4, depth_resolution_importance=1)),
    (dict(misses=True), dict(white_back=True)), (dict(misses=True), dict(ray_start="auto", ray_end="auto")),
    (dict(), dict(disparity_space_sampling=True)), (dict(dtype=torch.float64), dict(plane_axes="xyz")),
]


@pytest.mark.parametrize("scene,change", POINTWISE_CASES, ids=str)
def test_pointwise_path_matches_composable(scene, change):
    planes, decoder, origins, directions = random_scene(**scene)
    planes = planes.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3) if "c" in scene else planes
    options = options_for(**change)
    got = pointwise(planes, decoder, origins, directions, options)
    assert_matches_deterministic_reference(got, (planes, decoder, origins, directions),
                                           options, fused_tol("cpu", planes.dtype))


@pytest.mark.parametrize("case", FIXTURES["renderer"], ids=lambda c: c["name"])
def test_pointwise_path_matches_batched_path(case):
    # Also in stochastic mode: both paths draw the same numbers for the same seed.
    inputs = renderer_inputs(case)
    for seed in (None, torch.tensor([2 ** 61 + 12345])):
        got = pointwise(*inputs, seed=seed)
        start, end, auto = RENDER_MODULE._depth_range(inputs[-1])
        with torch.no_grad():
            want = RENDER_MODULE._fused_forward(
                inputs[0], *inputs[1].tensors, *inputs[2:4], seed, inputs[-1].depth_resolution,
                inputs[-1].depth_resolution_importance, start, end, auto, inputs[-1].box_warp,
                inputs[-1].white_back, inputs[-1].disparity_space_sampling, RENDER_MODULE._axes(inputs[-1]), "cpu")
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


# --- the fused kernel's random numbers ---------------------------------------------------------

def test_philox_known_answers():
    # Random123's kat_vectors for philox4x32 10 (counter, key -> output).
    native = _native.load()
    assert native.philox4x32_10([0, 0, 0, 0], [0, 0]) == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]
    assert native.philox4x32_10([0xFFFFFFFF] * 4, [0xFFFFFFFF] * 2) == [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]
    assert native.philox4x32_10([0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344], [0xA4093822, 0x299F31D0]) == [
        0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]


def assert_stochastic_follows_the_generator(scene, options, backend, device):
    """The fused kernel's random numbers come from the generator: the same seed repeats the
    result, another seed or deterministic mode changes it. Returns the run function."""
    run = lambda **kwargs: fused(*scene, options, backend=backend, device=device, **kwargs)  # noqa: E731
    seeded = lambda seed: torch.Generator(device=device).manual_seed(seed)  # noqa: E731
    first, again, other = run(generator=seeded(5)), run(generator=seeded(5)), run(generator=seeded(6))
    det = run(deterministic=True)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other[0]) and not torch.equal(first[0], det[0])
    return run


@pytest.mark.parametrize("backend,device", FUSED)
def test_fused_stochastic_follows_the_generator(backend, device, fused_only):
    run = assert_stochastic_follows_the_generator(random_scene(), options_for(), backend, device)
    torch.manual_seed(7)
    default = run()
    torch.manual_seed(7)
    assert torch.equal(default[0], run()[0])


def test_fused_cpu_stochastic_ignores_the_thread_count(fused_only):
    scene, options = random_scene(n=2, r=40), options_for(depth_resolution=12, depth_resolution_importance=12)
    threads = torch.get_num_threads()
    try:
        outs = []
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            outs.append(fused(*scene, options, generator=torch.Generator().manual_seed(11)))
    finally:
        torch.set_num_threads(threads)
    for other in outs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(outs[0], other))


@pytest.mark.parametrize("backend,device", FUSED)
def test_fused_jitter_is_uniform_and_independent(backend, device, fused_only):
    # Two coarse samples, a constant decoder: each ray's depth gives j0 + j1 and its total
    # weight 1 - exp(-k (t1 - t0)) gives j1 - j0, so the jitter of every ray can be read back.
    rays, k = 8192, 0.75
    decoder = ops.TriplaneDecoder(torch.zeros(2, 1, dtype=torch.float64), torch.zeros(2, dtype=torch.float64),
                                  torch.zeros(2, 2, dtype=torch.float64),
                                  torch.tensor([1 + math.log(math.expm1(k)), 0.0], dtype=torch.float64))
    planes = torch.zeros(1, 3, 1, 2, 2, dtype=torch.float64)
    origins = torch.zeros(1, rays, 3, dtype=torch.float64)
    directions = torch.zeros(1, rays, 3, dtype=torch.float64)
    directions[..., 2] = 1
    options = options_for(depth_resolution=2, depth_resolution_importance=0, ray_start=1.0, ray_end=2.0)
    _, depth, weight = fused(planes, decoder, origins, directions, options, backend=backend, device=device,
                             generator=torch.Generator(device=device).manual_seed(0))
    total = 2 * depth.flatten() - 3  # (t0 + t1) = 3 + j0 + j1 with spacing 1
    diff = -torch.log1p(-weight.flatten()) / k - 1  # t1 - t0 = 1 + j1 - j0
    jitter = torch.stack([(total - diff) / 2, (total + diff) / 2])
    assert ((jitter > -1e-9) & (jitter < 1 + 1e-9)).all()
    for j in jitter:
        assert abs(j.mean().item() - 0.5) < 5 * (1 / 12 / rays) ** 0.5
        assert abs(j.var().item() - 1 / 12) < 0.005
        counts = torch.histc(j, bins=10, min=0, max=1)
        assert ((counts - rays / 10).abs() < 5 * (rays / 10) ** 0.5).all()
    assert abs(torch.corrcoef(jitter)[0, 1].item()) < 5 / rays ** 0.5


def test_fused_cpu_stochastic_mean_matches_composable():
    # Over many seeds the two samplers estimate the same expectation.
    case = next(c for c in FIXTURES["renderer"] if c["name"] == "ffhq_random")
    inputs, seeds = renderer_inputs(case), 96
    with torch.no_grad():
        runs = {backend: torch.stack([ops.render_triplanes(*inputs, generator=torch.Generator().manual_seed(s),
                                                           backend=backend)[0] for s in range(seeds)])
                for backend in ("cpu", "torch")}
    mean_f, mean_c = runs["cpu"].mean(0), runs["torch"].mean(0)
    stderr = ((runs["cpu"].var(0) + runs["torch"].var(0)) / seeds).sqrt()
    assert ((mean_f - mean_c).abs() <= 5 * stderr + 1e-6).all()
    assert (runs["cpu"].std(0) > 0).any()


# --- when the fused kernel runs --------------------------------------------------------------------

# --- the Triton fused kernel (tiny scenes: under the interpreter it is slow) ------------------------

def tiny_scene(**changes):
    return random_scene(**dict(dict(n=2, r=7, c=3, h=8, w=6, hidden=8, c_out=3), **changes))


@pytest.mark.parametrize("shape,samples", [
    (dict(n=1, r=17, c=1), (4, 4)), (dict(c=3), (6, 3)), (dict(c=8, c_out=1), (2, 0)), (dict(n=1, r=5, c=8), (4, 1)),
    (dict(n=1, r=3, c=5, h=3, w=2, hidden=3), (5, 2))], ids=str)
@pytest.mark.parametrize("backend,device", TRITON)
def test_triton_fused_matches_composable(backend, device, shape, samples, fused_only):
    scene = tiny_scene(**shape)
    options = options_for(depth_resolution=samples[0], depth_resolution_importance=samples[1])
    got = fused(*scene, options, deterministic=True, backend=backend, device=device)
    assert_matches_deterministic_reference(got, scene, options, fused_tol(backend))


@pytest.mark.parametrize("change", OPTION_CHANGES, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("backend,device", TRITON)
def test_triton_fused_options(backend, device, change, dtype, fused_only):
    scene = tiny_scene(n=1, r=9, dtype=dtype, misses=True)
    options = options_for(**dict(dict(depth_resolution=5, depth_resolution_importance=3), **change))
    got = fused(*scene, options, deterministic=True, backend=backend, device=device)
    assert_matches_deterministic_reference(got, scene, options, fused_tol(backend, dtype))


@pytest.mark.parametrize("backend,device", TRITON)
def test_triton_fused_auto_limits_with_every_ray_missing(backend, device, fused_only):
    planes, decoder, origins, directions = tiny_scene(r=4)
    scene = planes, decoder, origins, -directions
    options = options_for(depth_resolution=4, depth_resolution_importance=2, ray_start="auto", ray_end="auto")
    got = fused(*scene, options, deterministic=True, backend=backend, device=device)
    assert_matches_deterministic_reference(got, scene, options, fused_tol(backend))


@pytest.mark.parametrize("layout", ["channels_last", "sliced", "expanded"])
@pytest.mark.parametrize("backend,device", TRITON)
def test_triton_fused_any_plane_strides(backend, device, layout, fused_only):
    planes, decoder, origins, directions = tiny_scene(r=5, c=4)
    planes = planes_in_layout(planes, layout)
    assert not planes.is_contiguous()
    options = options_for(depth_resolution=4, depth_resolution_importance=3)
    got = fused(planes, decoder, origins, directions, options, deterministic=True, backend=backend, device=device)
    assert_matches_deterministic_reference(got, (planes.contiguous(), decoder, origins, directions), options,
                                           fused_tol(backend))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("backend,device", TRITON)
def test_triton_fused_reads_half_planes_in_float32(backend, device, dtype, fused_only):
    planes, decoder, origins, directions = tiny_scene(r=5)
    planes = planes.to(dtype)
    options = options_for(depth_resolution=4, depth_resolution_importance=2)
    got = fused(planes, decoder, origins, directions, options, deterministic=True, backend=backend, device=device)
    want = fused(planes.float(), decoder, origins, directions, options, deterministic=True, backend=backend,
                 device=device)
    assert all(torch.equal(g, w) for g, w in zip(got, want))


@pytest.mark.parametrize("backend,device", TRITON)
def test_triton_fused_empty_batch(backend, device, fused_only):
    rgb, depth, weights = fused(*tiny_scene(r=0), options_for(), deterministic=True, backend=backend, device=device)
    assert rgb.shape == (2, 0, 3) and depth.shape == weights.shape == (2, 0, 1)


def test_triton_philox_known_answers():
    # Random123's kat_vectors for philox4x32 10, as test_philox_known_answers checks the C++ one.
    from nerfgan_distill.triton_kernels import render_triplanes as kernels

    if torch.cuda.is_available():
        pytest.skip("the known-answer launcher runs on CPU tensors (the interpreter)")
    assert kernels.philox4x32_10([0, 0, 0, 0], [0, 0]) == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]
    assert kernels.philox4x32_10([0xFFFFFFFF] * 4, [0xFFFFFFFF] * 2) == [
        0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]
    assert kernels.philox4x32_10([0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344], [0xA4093822, 0x299F31D0]) == [
        0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]


@pytest.mark.parametrize("backend,device", TRITON)
def test_triton_fused_stochastic_follows_the_generator(backend, device, fused_only):
    assert_stochastic_follows_the_generator(tiny_scene(n=1, r=6),
                                            options_for(depth_resolution=4, depth_resolution_importance=3),
                                            backend, device)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("change", [dict(), dict(ray_start="auto", ray_end="auto", white_back=True),
                                    dict(disparity_space_sampling=True), dict(depth_resolution_importance=0)], ids=str)
@pytest.mark.parametrize("backend,device", TRITON)
def test_triton_fused_stochastic_draws_the_cpu_kernels_numbers(backend, device, change, dtype, fused_only):
    # Same seed, same Philox counters: the Triton kernel renders what the CPU kernel renders.
    scene = tiny_scene(n=1, r=6, dtype=dtype, misses=True)
    options = options_for(**dict(dict(depth_resolution=5, depth_resolution_importance=3), **change))
    seed = torch.tensor([2 ** 61 + 987654321])
    start, end, auto = RENDER_MODULE._depth_range(options)

    def run(backend_name, dev):
        planes, decoder, origins, directions = scene
        with torch.no_grad():
            outs = RENDER_MODULE._fused_forward(
                planes.to(dev), *(t.to(dev) for t in decoder.tensors), origins.to(dev), directions.to(dev),
                seed.to(dev), options.depth_resolution, options.depth_resolution_importance, start, end, auto,
                options.box_warp, options.white_back, options.disparity_space_sampling, RENDER_MODULE._axes(options),
                backend_name)
        return [t.cpu() for t in outs]

    tol = fused_tol(backend, dtype)
    for g, w in zip(run(backend, device), run("cpu", "cpu")):
        torch.testing.assert_close(g, w, rtol=tol, atol=tol)


@pytest.mark.parametrize("backend,device", TRITON)
def test_fused_path_is_taken_for_triton_inference(backend, device, composable_calls):
    scene, options = tiny_scene(n=1, r=3), options_for(depth_resolution=4, depth_resolution_importance=2)
    fused(*scene, options, deterministic=True, backend=backend, device=device)
    assert composable_calls == []
    planes, decoder, origins, directions = (t.to(device) if torch.is_tensor(t) else t for t in scene)
    decoder = ops.TriplaneDecoder(*(t.to(device) for t in decoder.tensors))
    ops.render_triplanes(planes, decoder, origins, directions, options, deterministic=True, backend=backend)
    assert composable_calls == []
    planes = planes.clone().requires_grad_(True)
    rgb, _, _ = ops.render_triplanes(planes, decoder, origins, directions, options, deterministic=True,
                                     backend=backend)
    assert composable_calls == [backend] and rgb.requires_grad
    wide = ops.TriplaneDecoder(torch.zeros(2, 129), torch.zeros(2), torch.zeros(3, 2), torch.zeros(3))
    assert not RENDER_MODULE._fused_applies(backend, torch.zeros(1, 3, 129, 2, 2), wide, origins, directions, options)
    many = options_for(depth_resolution=500, depth_resolution_importance=13)
    assert not RENDER_MODULE._fused_applies(backend, planes.detach(), decoder, origins, directions, many)


def test_fused_path_is_taken_for_cpu_inference(composable_calls):
    scene, options = random_scene(), options_for()
    fused(*scene, options, deterministic=True)
    ops.render_triplanes(*scene, options, deterministic=True, backend="cpu")  # nothing requires grad
    assert composable_calls == []
    ops.render_triplanes(*scene, options, deterministic=True, backend="torch")
    assert composable_calls == ["torch"]


def test_gradients_take_the_composable_path(composable_calls):
    planes, decoder, origins, directions = random_scene()
    planes.requires_grad_(True)
    rgb, _, _ = ops.render_triplanes(planes, decoder, origins, directions, options_for(), deterministic=True,
                                     backend="cpu")
    assert composable_calls == ["cpu"] and rgb.requires_grad
    with torch.no_grad():
        ops.render_triplanes(planes, decoder, origins, directions, options_for(), deterministic=True, backend="cpu")
    assert composable_calls == ["cpu"]


def test_too_many_samples_take_the_composable_path(composable_calls):
    limit = kernel_codes.RENDER_MAX_SAMPLES
    assert RENDER_MODULE.fused_max_samples() == limit
    scene = random_scene(n=1, r=3, c=2, hidden=4, c_out=2)
    options = options_for(depth_resolution=limit - 9, depth_resolution_importance=10)
    got = fused(*scene, options, deterministic=True)
    assert composable_calls == ["cpu"]
    assert_matches_deterministic_reference(got, scene, options, 1e-5)
    with pytest.raises(ValueError, match="coarse \\+ fine <= kMaxSamples"):  # the kernel's own guard
        pointwise(*scene, options)


def test_fused_opcheck():
    planes, decoder, origins, directions = random_scene(n=1, r=3, c=3, h=4, w=5, hidden=6, c_out=2)
    for seed in (None, torch.tensor([123])):
        torch.library.opcheck(torch.ops.nerfgan_distill.render_triplanes,
                              (planes, *decoder.tensors, origins, directions, seed, 5, 3, 2.0, 3.4, False, 1.4,
                               False, False, [0, 1, 0, 2, 2, 0], "cpu"))


def test_fused_torch_compile_fullgraph_matches_eager():
    scene, options = random_scene(), options_for()
    fn = lambda *s: ops.render_triplanes(*s, options, deterministic=True, backend="cpu")[0] * 2  # noqa: E731
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(fn, fullgraph=True)(*scene), fn(*scene))


def test_fused_torch_compile_fullgraph_still_refuses_non_finite_rays():
    # Compiled, the finiteness check stays in the graph as a runtime assert (a RuntimeError
    # without our message) rather than breaking the graph or rendering NaN depths.
    planes, decoder, origins, directions = random_scene()
    fn = lambda *s: ops.render_triplanes(*s, options_for(), deterministic=True, backend="cpu")[1]  # noqa: E731
    compiled = torch.compile(fn, fullgraph=True)
    with torch.no_grad():
        compiled(planes, decoder, origins, directions)  # compiles: the error below comes from running it
        origins[0, 1, 1] = float("nan")
        with pytest.raises((ValueError, RuntimeError)):
            compiled(planes, decoder, origins, directions)
