"""EG3D's dual discriminator (nerfgan_distill.networks.discriminator): shapes, EG3D's state-dict
names, conditioning, backend parity, R1 (double backward) and parity with the official code
(fixture made by tools/eg3d_disc_parity.py from NVlabs/eg3d on CPU)."""
import importlib.util
import math
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from nerfgan_distill.networks import set_ops_backend
from nerfgan_distill.networks.discriminator import (Conv2dLayer, DiscriminatorEpilogue, DualDiscriminator,
                                                    MinibatchStdLayer, filtered_resizing)
from nerfgan_distill.teacher.synthetic import random_state

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(c_dim=25, img_resolution=32, channel_base=256, channel_max=32)  # channels 8, 16, 32, 32


def small_d(seed=0, **kwargs) -> DualDiscriminator:
    torch.manual_seed(seed)
    model = DualDiscriminator(**{**SMALL, **kwargs})
    model.load_state_dict(random_state(model, seed))  # nonzero biases, so every term counts
    return model


def batch(n=4, res=32, raw=16, c_dim=25, seed=0, dtype=torch.float32, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(n, 3, res, res, generator=g, dtype=dtype).requires_grad_(requires_grad)
    image_raw = torch.randn(n, 3, raw, raw, generator=g, dtype=dtype).requires_grad_(requires_grad)
    c = torch.randn(n, c_dim, generator=g, dtype=dtype)
    return {"image": image, "image_raw": image_raw}, c


def r1(model, img, c):
    """EG3D's R1: grad of D(real).sum() w.r.t. both images, squared and summed per sample;
    then the penalty's gradient w.r.t. D's parameters (double backward)."""
    model.zero_grad(set_to_none=True)
    logits = model(img, c)
    grads = torch.autograd.grad(logits.sum(), [img["image"], img["image_raw"]], create_graph=True)
    penalty = sum(g.square().sum([1, 2, 3]) for g in grads)
    penalty.mean().backward()
    # A parameter that dD/dx does not depend on (b4.out.bias) gets no gradient: zeros.
    params = {k: torch.zeros_like(p) if p.grad is None else p.grad.clone() for k, p in model.named_parameters()}
    return logits.detach(), [g.detach() for g in grads], params


# --- structure ----------------------------------------------------------------------------------

def test_output_is_one_logit_per_sample():
    model = small_d()
    img, c = batch()
    out = model(img, c)
    assert out.shape == (4, 1) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


def expected_names(block_resolutions, c_dim, mapping_layers=8):
    """EG3D's D state dict, by its naming rule (buffers included)."""
    def conv(prefix, bias=True):
        return [f"{prefix}.weight"] + ([f"{prefix}.bias"] if bias else []) + [f"{prefix}.resample_filter"]

    names = ["resample_filter"]
    for i, res in enumerate(block_resolutions):
        names += [f"b{res}.resample_filter"]
        names += conv(f"b{res}.fromrgb") if i == 0 else []
        names += conv(f"b{res}.conv0") + conv(f"b{res}.conv1") + conv(f"b{res}.skip", bias=False)
    if c_dim:
        names += ["mapping.embed.weight", "mapping.embed.bias"]
        names += [f"mapping.fc{i}.{leaf}" for i in range(mapping_layers) for leaf in ("weight", "bias")]
    names += conv("b4.conv") + ["b4.fc.weight", "b4.fc.bias", "b4.out.weight", "b4.out.bias"]
    return names


def test_state_dict_follows_eg3d_names_and_shapes():
    model = small_d()
    state = model.state_dict()
    assert sorted(state) == sorted(expected_names([32, 16, 8], c_dim=25))
    shapes = {"b32.fromrgb.weight": (8, 6, 1, 1), "b32.conv0.weight": (8, 8, 3, 3), "b32.conv1.weight": (16, 8, 3, 3),
              "b32.skip.weight": (16, 8, 1, 1), "b8.conv1.weight": (32, 32, 3, 3), "b4.conv.weight": (32, 33, 3, 3),
              "b4.fc.weight": (32, 32 * 16), "b4.out.weight": (32, 32), "mapping.embed.weight": (32, 25),
              "mapping.fc7.weight": (32, 32), "resample_filter": (4, 4)}
    for name, shape in shapes.items():
        assert tuple(state[name].shape) == shape, name
    unconditional = DualDiscriminator(**{**SMALL, "c_dim": 0})
    assert sorted(unconditional.state_dict()) == sorted(expected_names([32, 16, 8], c_dim=0))
    assert unconditional.b4.out.weight.shape == (1, 32)


def test_eg3d_sizing_and_fp16_blocks_at_512():
    model = DualDiscriminator(c_dim=25, img_resolution=512)
    assert sum(p.numel() for p in model.parameters()) == 31_359_744  # training.md A.2: about 31.36 M
    assert model.block_resolutions == [512, 256, 128, 64, 32, 16, 8]
    assert [getattr(model, f"b{r}").use_fp16 for r in model.block_resolutions] == [True] * 4 + [False] * 3
    assert model.b512.fromrgb.weight.shape == (64, 6, 1, 1) and model.b512.conv1.weight.shape == (128, 64, 3, 3)
    assert model.b128.conv1.weight.shape == (512, 256, 3, 3) and model.cmap_dim == 512
    assert model.b512.conv1.conv_clamp == 256 and model.b512.skip.conv_clamp is None
    assert model.mapping.num_layers == 8 and model.mapping.embed.weight.shape == (512, 25)


def test_freeze_d_numbers_layers_across_blocks():
    model = DualDiscriminator(**SMALL, block_kwargs={"freeze_layers": 5})
    # Creation order: b32 fromrgb, conv0, conv1, skip (0-3), b16 conv0 (4), conv1 (5) ...
    assert "b32.skip.weight" not in dict(model.named_parameters())
    assert "b16.conv0.weight" not in dict(model.named_parameters())
    assert "b16.conv1.weight" in dict(model.named_parameters())
    assert sorted(model.state_dict()) == sorted(DualDiscriminator(**SMALL).state_dict())


# --- the computation -------------------------------------------------------------------------

def test_conditioning_changes_the_logits():
    model = small_d()
    img, c = batch()
    assert (model(img, c) - model(img, c + 1)).abs().min() > 1e-6
    unconditional = small_d(c_dim=0)
    assert unconditional(img, None).shape == (4, 1)


def test_logit_is_the_cmap_projection():
    model = small_d(cmap_dim=8)
    img, c = batch(raw=8)
    raw = F.interpolate(img["image_raw"], size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
    x = torch.cat([img["image"], raw], dim=1)
    x, _ = model.b32(None, x)  # the first block takes the 6-channel image, the others features
    x, _ = model.b8(model.b16(x, None)[0], None)
    head = model.b4
    out = head.out(head.fc(head.conv(head.mbstd(x)).flatten(1)))
    cmap = model.mapping(None, c)
    assert out.shape == cmap.shape == (4, 8)
    expected = (out * cmap).sum(dim=1, keepdim=True) / math.sqrt(8)
    torch.testing.assert_close(model(img, c), expected, atol=1e-6, rtol=1e-5)


def test_minibatch_std_groups_are_strided():
    x = torch.randn(6, 4, 3, 3)
    y = MinibatchStdLayer(group_size=2)(x)
    assert y.shape == (6, 5, 3, 3)
    # Group size 2 over a batch of 6: samples i and i + 3 share a group.
    for i in range(3):
        pair = torch.stack([x[i], x[i + 3]])
        std = (pair.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
        torch.testing.assert_close(y[i, 4], std.expand(3, 3))
        torch.testing.assert_close(y[i + 3, 4], std.expand(3, 3))
    with pytest.raises(ValueError, match="divisible"):
        MinibatchStdLayer(group_size=4)(x)


def test_raw_image_is_resized_with_antialiasing():
    image = torch.randn(2, 3, 64, 64)
    resized = filtered_resizing(image, 16)
    assert resized.shape == (2, 3, 16, 16)
    aliased = F.interpolate(image, size=(16, 16), mode="bilinear", align_corners=False)
    assert (resized - aliased).abs().max() > 1e-3  # shrinking: the antialiased filter differs
    torch.testing.assert_close(filtered_resizing(image, 16, filter_mode="none"), aliased)
    torch.testing.assert_close(filtered_resizing(image, 16, filter_mode=0.25), 0.75 * aliased + 0.25 * resized)
    with pytest.raises(ValueError, match="filter_mode"):
        filtered_resizing(image, 16, filter_mode="bicubic")


def test_disc_c_noise_perturbs_c_without_touching_the_callers_tensor():
    model = small_d(disc_c_noise=1.0)
    img, c = batch()
    c_before = c.clone()
    torch.manual_seed(1)
    a = model(img, c)
    torch.manual_seed(2)
    b = model(img, c)
    assert torch.equal(c, c_before)
    assert (a - b).abs().max() > 1e-6
    with pytest.raises(ValueError, match="N >= 2"):
        model({k: v[:1] for k, v in img.items()}, c[:1])


# --- backends, R1, gradcheck ---------------------------------------------------------------------

def test_backends_agree_on_output_and_gradients():
    model = small_d()
    results = {}
    for backend in ("auto", "torch"):
        set_ops_backend(model, backend)
        img, c = batch(requires_grad=True)
        model.zero_grad(set_to_none=True)
        out = model(img, c)
        (out * torch.linspace(-1, 1, 4).unsqueeze(1)).sum().backward()
        results[backend] = (out.detach(), img["image"].grad, img["image_raw"].grad,
                            {k: p.grad for k, p in model.named_parameters()})
    (out_a, gi_a, gr_a, gp_a), (out_t, gi_t, gr_t, gp_t) = results["auto"], results["torch"]
    torch.testing.assert_close(out_a, out_t, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gi_a, gi_t, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gr_a, gr_t, atol=1e-5, rtol=1e-5)
    assert gp_a.keys() == gp_t.keys()
    for name in gp_a:
        torch.testing.assert_close(gp_a[name], gp_t[name], atol=1e-5, rtol=1e-4, msg=name)


def test_r1_double_backward_on_both_backends():
    model = small_d()
    results = {}
    for backend in ("auto", "torch"):
        set_ops_backend(model, backend)
        img, c = batch(requires_grad=True)
        results[backend] = r1(model, img, c)
    (_, grads_a, params_a), (_, grads_t, params_t) = results["auto"], results["torch"]
    for a, t in zip(grads_a, grads_t):
        torch.testing.assert_close(a, t, atol=1e-6, rtol=1e-4)
    for name, grad in params_a.items():
        assert torch.isfinite(grad).all(), name
        torch.testing.assert_close(grad, params_t[name], atol=1e-6, rtol=1e-3, msg=name)
    # The penalty reaches every conv (through the second derivative of bias_act and conv2d_resample).
    for name in ("b32.fromrgb.weight", "b32.conv0.weight", "b16.skip.weight", "b4.conv.weight", "b4.fc.weight"):
        assert params_a[name].abs().max() > 0, name


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("backend", ["auto", "triton", "torch"])
def test_fp16_blocks_on_cuda(backend):
    # num_fp16_res=2: b32 and b16 run in fp16 on CUDA, b8 and the epilogue in fp32.
    model = set_ops_backend(small_d(num_fp16_res=2).cuda(), backend)
    assert [model.b32.use_fp16, model.b16.use_fp16, model.b8.use_fp16] == [True, True, False]
    img, c = batch(requires_grad=True)
    img = {k: v.detach().cuda().requires_grad_(True) for k, v in img.items()}
    c = c.cuda()
    x16, _ = model.b32(None, torch.cat([img["image"], img["image"]], dim=1))
    assert x16.dtype == torch.float16
    out16, out32 = model(img, c), model(img, c, force_fp32=True)
    assert out16.dtype == out32.dtype == torch.float32
    cpu = set_ops_backend(small_d(num_fp16_res=2), "torch")
    img_cpu = {k: v.detach().cpu() for k, v in img.items()}
    torch.testing.assert_close(out32.cpu(), cpu(img_cpu, c.cpu()), atol=1e-4, rtol=1e-3)
    assert (out16 - out32).abs().max() < 0.05
    _, grads, params = r1(model, img, c)  # R1 through the fp16 blocks
    assert all(torch.isfinite(g).all() for g in grads)
    assert all(torch.isfinite(p).all() for p in params.values())


def tiny_d(**kwargs) -> DualDiscriminator:
    # Channels 4 at 8x8 and 4x4, a 2-layer mapping: small enough for fp64 gradcheck.
    model = DualDiscriminator(c_dim=3, img_resolution=8, channel_base=32, channel_max=4,
                              mapping_kwargs={"num_layers": 2}, epilogue_kwargs={"mbstd_group_size": 2}, **kwargs)
    model.load_state_dict(random_state(model, 7))
    return model.double()


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_gradcheck_tiny_d_fp64(backend):
    # W.r.t. both images. c is left out: the mapping network computes in fp32 (as EG3D's does).
    model = set_ops_backend(tiny_d(), backend)
    img, c = batch(n=2, res=8, raw=4, c_dim=3, dtype=torch.float64, requires_grad=True)

    def f(image, image_raw):
        return model({"image": image, "image_raw": image_raw}, c)

    assert f(img["image"], img["image_raw"]).dtype == torch.float64
    assert torch.autograd.gradcheck(f, (img["image"], img["image_raw"]), eps=1e-6, atol=1e-5, fast_mode=True)


def test_gradgradcheck_downsampling_conv_layer_fp64():
    # R1 needs d/dW of dD/dx: check second derivatives of a resampling conv w.r.t. x and W.
    torch.manual_seed(3)
    layer = Conv2dLayer(2, 3, kernel_size=3, activation="lrelu", down=2, conv_clamp=256).double()
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    weight = layer.weight.detach().clone().requires_grad_(True)

    def f(x, weight):
        return torch.func.functional_call(layer, {"weight": weight}, (x,), {"gain": math.sqrt(0.5)})

    assert torch.autograd.gradgradcheck(f, (x, weight), eps=1e-6, atol=1e-5, fast_mode=True)


# --- against the official code -------------------------------------------------------------------

def _parity_tool():
    spec = importlib.util.spec_from_file_location("eg3d_disc_parity", ROOT / "tools" / "eg3d_disc_parity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FIXTURE = torch.load(ROOT / "tests" / "fixtures" / "dual_discriminator_parity.pt", weights_only=True)


@pytest.mark.parametrize("backend", ["auto", "torch"])
@pytest.mark.parametrize("index", range(len(FIXTURE["cases"])), ids=[c["case"]["name"] for c in FIXTURE["cases"]])
def test_matches_official_eg3d_fixture(index, backend):
    tool, stored = _parity_tool(), FIXTURE["cases"][index]
    case = stored["case"]
    model = DualDiscriminator(**case["kwargs"])
    model.load_state_dict(random_state(model, case["seed"]), strict=True)
    ours = tool.run(set_ops_backend(model, backend), tool.inputs(case))
    assert ours.keys() == stored["official"].keys()
    for key, reference in stored["official"].items():
        scale = reference.abs().max().item()
        torch.testing.assert_close(ours[key], reference, atol=1e-5 * max(scale, 1e-3), rtol=1e-4, msg=key)


@pytest.mark.skipif(not os.environ.get("EG3D_SOURCE"), reason="set EG3D_SOURCE to an NVlabs/eg3d checkout's eg3d/")
def test_matches_official_eg3d_live():
    import sys
    import types

    sys.modules.setdefault("requests", types.ModuleType("requests"))
    sys.path.insert(0, os.environ["EG3D_SOURCE"])
    tool = _parity_tool()
    case = tool.cases()[0]
    official = tool.official_model(case["kwargs"])
    official.load_state_dict(random_state(official, case["seed"]))
    ours = DualDiscriminator(**case["kwargs"])
    ours.load_state_dict(official.state_dict(), strict=True)
    data = tool.inputs(case)
    for key, value in tool.run(official, data).items():
        torch.testing.assert_close(tool.run(ours, data)[key], value, atol=1e-6, rtol=1e-4, msg=key)


# --- bad inputs ----------------------------------------------------------------------------------

@pytest.mark.parametrize("mutate, match", [
    (lambda img, c: ({"image": img["image"]}, c), r"img must be a dict with keys 'image' and 'image_raw'"),
    (lambda img, c: (img["image"], c), r"img must be a dict"),
    (lambda img, c: ({**img, "image": img["image"][:, :, :16, :16]}, c), r"img\['image'\] must be \[N, 3, 32, 32\]"),
    (lambda img, c: ({**img, "image": img["image"][:, :2]}, c), r"img\['image'\] must be \[N, 3, 32, 32\]"),
    (lambda img, c: ({**img, "image_raw": img["image_raw"][:, :1]}, c), r"img\['image_raw'\] must be \[N, 3, H, W\]"),
    (lambda img, c: ({**img, "image_raw": img["image_raw"][:2]}, c), r"img\['image_raw'\] must be \[4, 3, H, W\]"),
    (lambda img, c: (img, c[:, :16]), r"c must be \[4, 25\], got \[4, 16\]"),
    (lambda img, c: (img, c[:2]), r"c must be \[4, 25\], got \[2, 25\]"),
    (lambda img, c: (img, None), r"c must be \[4, 25\], got NoneType"),
])
def test_bad_inputs_raise_value_errors_naming_the_argument(mutate, match):
    model = small_d()
    img, c = batch()
    with pytest.raises(ValueError, match=match):
        model(*mutate(img, c))


def test_bad_constructor_arguments_and_layer_inputs():
    with pytest.raises(ValueError, match="img_resolution must be a power of 2 >= 8"):
        DualDiscriminator(c_dim=25, img_resolution=48)
    with pytest.raises(ValueError, match="img_resolution must be a power of 2 >= 8"):
        DualDiscriminator(c_dim=25, img_resolution=4)
    with pytest.raises(ValueError, match="architecture 'skip' is not supported"):
        DualDiscriminator(**SMALL, architecture="skip")
    with pytest.raises(TypeError, match="c must be a float tensor"):
        small_d()(batch()[0], torch.zeros(4, 25, dtype=torch.int64))
    head = DiscriminatorEpilogue(8, cmap_dim=4, resolution=4, img_channels=6)
    with pytest.raises(ValueError, match=r"cmap must be \[2, 4\]"):
        head(torch.randn(2, 8, 4, 4), None, torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"x must be \[N, 8, 4, 4\]"):
        head(torch.randn(2, 8, 8, 8), None, torch.randn(2, 4))
