"""The renderer pieces (importance_depths, ray-box limits) and render_triplanes against
fixtures made from EG3D's ImportanceRenderer (tools/make_render_fixtures.py), with
EG3D's own random numbers injected; the deterministic contract; bad inputs."""
from pathlib import Path

import pytest
import torch

from helpers import backend_params
from nerfgan_distill import ops
from nerfgan_distill.ops.importance_depths import importance_from_uniforms, sample_pdf
from nerfgan_distill.ops.render_triplanes_ref import ray_box_limits, render_triplanes_composable

BACKENDS = backend_params()
FIXTURES = torch.load(Path(__file__).parent / "fixtures" / "render_ops.pt", weights_only=True)


@pytest.mark.parametrize("case", FIXTURES["sample_importance"], ids=lambda c: c["name"])
def test_importance_depths_match_official(case):
    got = importance_from_uniforms(case["z_vals"], case["weights"], case["u"])
    torch.testing.assert_close(got, case["out"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("case", FIXTURES["sample_pdf_det"], ids=lambda c: c["name"])
def test_deterministic_sample_pdf_matches_official(case):
    u = torch.linspace(0, 1, case["n_importance"]).expand(case["bins"].shape[0], -1)
    torch.testing.assert_close(sample_pdf(case["bins"], case["weights"], u), case["out"], rtol=0, atol=1e-6)


def test_importance_depths_public_api():
    case = FIXTURES["sample_importance"][0]
    z, w, n = case["z_vals"], case["weights"], case["n_importance"]
    det = ops.importance_depths(z, w, n, deterministic=True)
    u = torch.linspace(0, 1, n).expand(z.shape[0] * z.shape[1], n)
    torch.testing.assert_close(det, importance_from_uniforms(z, w, u))
    a = ops.importance_depths(z, w, n, generator=torch.Generator().manual_seed(1))
    b = ops.importance_depths(z, w, n, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, det)
    assert (a >= z[..., :1, :]).all() and (a <= z[..., -1:, :]).all()
    with pytest.raises(ValueError, match=r"weights must be \[N, R, D-1, 1\]"):
        ops.importance_depths(z, w[:, :, 1:], n)
    with pytest.raises(ValueError, match="n_importance must be an int >= 1"):
        ops.importance_depths(z, w, 0)


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


def test_render_options_from_eg3d_and_their_errors():
    kwargs = dict(FIXTURES["renderer"][0]["rendering_options"], image_resolution=512, superresolution_module="x",
                  white_back=False)
    options = ops.RenderOptions.from_eg3d(kwargs)
    assert options.depth_resolution == 12 and options.box_warp == 1.0 and options.plane_axes == "eg3d"
    bad = [
        (dict(depth_resolution=1), "depth_resolution must be >= 2"),
        (dict(depth_resolution_importance=-1), "depth_resolution_importance must be an int >= 0"),
        (dict(ray_start="auto"), "both be 'auto' or both numbers"),
        (dict(ray_start=3.3, ray_end=2.25), "ray_end must be > ray_start"),
        (dict(ray_end=float("inf")), "ray_end must be finite"),
        (dict(box_warp=-1), "box_warp must be > 0"),
        (dict(clamp_mode="relu"), "clamp_mode must be 'softplus'"),
        (dict(plane_axes="zyx"), "plane_axes must be one of"),
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
