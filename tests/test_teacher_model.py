"""The teacher generator's behaviour: the official call interface, its statefulness, the
fast and reference paths, and bad inputs. Numerical parity with EG3D is in
test_teacher_parity.py; loading files in test_teacher_loader.py."""
import pytest
import torch

from nerfgan_distill.teacher import (OFFICIAL_CONFIGS, TriPlaneGenerator, cameras, official_config, random_state,
                                     set_ops_backend)


def small_kwargs(**rendering):
    """ShapeNet's architecture (2X SR, 128 px) with a narrow backbone and few depth samples."""
    kwargs, _ = official_config("shapenetcars128-64")
    kwargs.update(channel_base=1024, channel_max=32)
    kwargs["rendering_kwargs"].update(depth_resolution=6, depth_resolution_importance=6, **rendering)
    return kwargs


@pytest.fixture(scope="module")
def model():
    g = TriPlaneGenerator(**small_kwargs())
    g.load_state_dict(random_state(g, seed=7))
    g.neural_rendering_resolution = 16
    return g.eval().requires_grad_(False)


def inputs(model, batch=2, seed=0):
    z = torch.randn(batch, model.z_dim, generator=torch.Generator().manual_seed(seed))
    c = cameras.frontal_camera("shapenet", batch_size=batch, yaw=0.3)
    return z, c


def test_official_inventory_of_the_ffhq_generator():
    # eg3d.md 6.6: 132 parameter tensors holding 30,662,136 values; 45 buffers holding 831,049.
    g = TriPlaneGenerator(**official_config("ffhq512-128")[0])
    params, buffers = list(g.parameters()), list(g.buffers())
    assert (len(params), sum(p.numel() for p in params)) == (132, 30_662_136)
    assert (len(buffers), sum(b.numel() for b in buffers)) == (45, 831_049)
    state = g.state_dict()
    assert state["backbone.mapping.fc0.weight"].shape == (512, 1024)
    assert state["superresolution.block0.conv0.weight"].shape == (256, 32, 3, 3)
    assert state["backbone.synthesis.b256.torgb.weight"].shape == (96, 128, 1, 1)


@pytest.mark.parametrize("name", sorted(OFFICIAL_CONFIGS))
def test_every_official_config_builds(name):
    kwargs, resolution = official_config(name)
    g = TriPlaneGenerator(**kwargs)
    assert g.backbone.num_ws == 14 and resolution in (64, 128)
    assert g.superresolution.block0.use_fp16  # sr_num_fp16_res = 4: fp16 SR on CUDA


def test_outputs(model):
    z, c = inputs(model)
    with torch.no_grad():
        out = model(z, c, noise_mode="const", deterministic=True)
    assert out["image"].shape == (2, 3, 128, 128) and out["image"].dtype == torch.float32
    assert out["image_raw"].shape == (2, 3, 16, 16)
    assert out["image_depth"].shape == (2, 1, 16, 16)
    assert out["feature_image"].shape == (2, 32, 16, 16)
    for value in out.values():
        assert torch.isfinite(value).all()
    # ShapeNet renders within [ray_start, ray_end] = [0.1, 2.6]
    assert out["image_depth"].min() >= 0.1 and out["image_depth"].max() <= 2.6 + 1e-5


def test_fast_and_reference_paths_agree(model):
    z, c = inputs(model)
    with torch.no_grad():
        fast = model(z, c, noise_mode="const", deterministic=True)
        set_ops_backend(model, "torch")
        try:
            reference = model(z, c, noise_mode="const", deterministic=True)
        finally:
            set_ops_backend(model, "auto")
    for key in fast:
        torch.testing.assert_close(fast[key], reference[key], atol=2e-4, rtol=1e-4)


def test_set_ops_backend_reaches_every_layer(model):
    set_ops_backend(model, "torch")
    try:
        assert {m.backend for m in model.modules() if hasattr(m, "backend")} == {"torch"}
    finally:
        set_ops_backend(model, "auto")
    with pytest.raises(ValueError, match="backend"):
        set_ops_backend(model, "gpu")


def test_stochastic_rendering_follows_the_generator(model):
    z, c = inputs(model, batch=1)
    ws = model.mapping(z, c)

    def draw(seed):
        return model.synthesis(ws, c, noise_mode="const", generator=torch.Generator().manual_seed(seed))["image_raw"]

    with torch.no_grad():
        assert torch.equal(draw(1), draw(1))
        assert not torch.equal(draw(1), draw(2))


def test_truncation_and_conditioning(model):
    z, c = inputs(model)
    w_avg = model.backbone.mapping.w_avg
    torch.testing.assert_close(model.mapping(z, c, truncation_psi=0), w_avg.expand(2, 14, -1))
    plain = model.mapping(z, c)
    cut = model.mapping(z, c, truncation_psi=0.5, truncation_cutoff=4)
    torch.testing.assert_close(cut[:, 4:], plain[:, 4:])
    torch.testing.assert_close(cut[:, :4], w_avg.lerp(plain[:, :4], 0.5))
    # ShapeNet has c_gen_conditioning_zero: the camera does not change ws.
    other = cameras.frontal_camera("shapenet", batch_size=2, yaw=-1.0)
    torch.testing.assert_close(model.mapping(z, other), plain)


def test_resolution_override_is_stored_as_in_eg3d(model):
    z, c = inputs(model, batch=1)
    ws = model.mapping(z, c)
    with torch.no_grad():
        out = model.synthesis(ws, c, neural_rendering_resolution=8, noise_mode="const", deterministic=True)
    try:
        assert out["image_raw"].shape[-1] == 8 and model.neural_rendering_resolution == 8
        assert out["image"].shape[-1] == 128  # the SR resizes its input to 64 first
    finally:
        model.neural_rendering_resolution = 16
    with pytest.raises(ValueError, match="neural_rendering_resolution"):
        model.synthesis(ws, c, neural_rendering_resolution=0)
    assert model.neural_rendering_resolution == 16


def test_cached_backbone(model):
    z, c = inputs(model, batch=1)
    ws = model.mapping(z, c)
    ws_other = model.mapping(torch.randn_like(z), c)
    with torch.no_grad():
        first = model.synthesis(ws, c, cache_backbone=True, noise_mode="const", deterministic=True)
        reused = model.synthesis(ws_other, c, use_cached_backbone=True, noise_mode="const", deterministic=True)
        fresh = model.synthesis(ws_other, c, noise_mode="const", deterministic=True)
    model._last_planes = None
    assert torch.equal(first["image_depth"], reused["image_depth"])
    assert not torch.equal(fresh["image_depth"], reused["image_depth"])


def test_sample_and_density(model):
    z, c = inputs(model, batch=1)
    points = torch.rand(1, 50, 3) - 0.5
    with torch.no_grad():
        out = model.sample(points, torch.zeros_like(points), z, c, noise_mode="const")
        ws = model.mapping(z, c)
        planes = model.synthesize_planes(ws, noise_mode="const")
        sigma = model.sample_density(points, ws, planes=planes)
    assert out["rgb"].shape == (1, 50, 32) and out["sigma"].shape == (1, 50, 1)
    assert out["rgb"].min() >= -0.001 and out["rgb"].max() <= 1.001  # the widened sigmoid
    torch.testing.assert_close(sigma, out["sigma"])
    assert planes.shape == (1, 3, 32, 256, 256)
    with pytest.raises(ValueError, match="coordinates"):
        model.sample_density(points[0], ws, planes=planes)


def test_gradients_reach_the_latents(model):
    # The teacher is frozen, but inversion (fitting ws to an image) differentiates through it.
    z, c = inputs(model, batch=1)
    ws = model.mapping(z, c).detach().requires_grad_(True)
    out = model.synthesis(ws, c, noise_mode="const", deterministic=True)
    (out["image"].square().mean() + out["image_depth"].mean()).backward()
    assert ws.grad is not None and torch.isfinite(ws.grad).all() and ws.grad.abs().sum() > 0


@pytest.mark.parametrize("bad, match", [
    (lambda z, c: (z, c[:, :16]), "c must be"),
    (lambda z, c: (z, c.clone().fill_(float("nan"))), "non-finite"),
    (lambda z, c: (z.clone().fill_(float("inf")), c), "non-finite"),
    (lambda z, c: (z[:, :10], c), "z must be"),
])
def test_bad_inputs(model, bad, match):
    z, c = bad(*inputs(model, batch=1))
    with pytest.raises(ValueError, match=match):
        model(z, c)


def test_bad_constructor_arguments():
    kwargs = small_kwargs()
    del kwargs["rendering_kwargs"]["box_warp"]
    with pytest.raises(ValueError, match="box_warp"):
        TriPlaneGenerator(**kwargs)
    kwargs = small_kwargs(superresolution_module="training.superresolution.SuperresolutionHybrid16X")
    with pytest.raises(ValueError, match="not understood"):
        TriPlaneGenerator(**kwargs)
    kwargs = small_kwargs()
    kwargs["img_resolution"] = 256
    with pytest.raises(ValueError, match="img_resolution"):
        TriPlaneGenerator(**kwargs)


def test_random_state_is_reproducible_and_keeps_fixed_buffers(model):
    a, b = random_state(model, 3), random_state(model, 3)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["backbone.synthesis.b4.const"], random_state(model, 4)["backbone.synthesis.b4.const"])
    assert torch.equal(a["backbone.synthesis.b8.resample_filter"], model.backbone.synthesis.b8.resample_filter)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fp16_super_resolution_on_cuda(model):
    g = TriPlaneGenerator(**small_kwargs())
    g.load_state_dict(model.state_dict())
    g = g.eval().requires_grad_(False).cuda()
    g.neural_rendering_resolution = 16
    z, c = inputs(g, batch=2)
    with torch.no_grad():
        out16 = g(z.cuda(), c.cuda(), noise_mode="const", deterministic=True)
        out32 = g(z.cuda(), c.cuda(), noise_mode="const", deterministic=True, force_fp32=True)
        cpu = model(z, c, noise_mode="const", deterministic=True)
    assert out16["image"].dtype == torch.float32
    torch.testing.assert_close(out32["image"].cpu(), cpu["image"], atol=2e-3, rtol=0)
    assert (out16["image"] - out32["image"]).abs().max() < 0.05
