"""StyleGAN3's synthesis network against the official code (fixtures from
tools/make_stylegan3_fixtures.py): the layer schedule of the published configs, state-dict
names, forward and gradients with random weights (configs T and R), the magnitude EMA, and
loading the synthesis net of an official pickle (written by tests/eg3d_pickle_writer.py)."""
import io
from pathlib import Path

import numpy as np
import pytest
import torch

from eg3d_pickle_writer import EasyDict, FakeModule, call_pickle, dumps_snapshot
from nerfgan_distill.network_pickle import UnsafePickleError
from nerfgan_distill.networks.stylegan2 import set_ops_backend
from nerfgan_distill.networks.stylegan3 import SynthesisNetwork, layer_schedule
from nerfgan_distill.student import stylegan3 as student_stylegan3
from nerfgan_distill.student.stylegan3 import StyleGAN3FormatError

FIXTURES = torch.load(Path(__file__).parent / "fixtures" / "stylegan3_parity.pt", weights_only=True)
SCHEDULES = FIXTURES["schedules"]
SYNTHESIS = FIXTURES["synthesis"]


@pytest.mark.parametrize("config", sorted(SCHEDULES))
def test_schedule_and_layers_match_official(config):
    want = SCHEDULES[config]
    kwargs = want["kwargs"]
    with torch.device("meta"):  # the schedule only; no weights
        net = SynthesisNetwork(w_dim=512, img_channels=3, **kwargs)
    assert net.input.channels == want["input_channels"] and net.input.size == want["input_size"]
    assert net.layer_names == [layer["name"] for layer in want["layers"]]
    for name, expected in zip(net.layer_names, want["layers"]):
        layer = getattr(net, name)
        got = {"name": name, "in_channels": layer.in_channels, "out_channels": layer.out_channels,
               "in_size": layer.in_size, "out_size": layer.out_size,
               "in_sampling_rate": float(layer.in_sampling_rate), "out_sampling_rate": float(layer.out_sampling_rate),
               "in_cutoff": layer.in_cutoff, "out_cutoff": layer.out_cutoff, "in_half_width": layer.in_half_width,
               "out_half_width": layer.out_half_width, "up": layer.up_factor, "down": layer.down_factor,
               "up_taps": layer.up_taps, "down_taps": layer.down_taps, "padding": layer.padding,
               "use_fp16": layer.use_fp16, "is_critically_sampled": layer.is_critically_sampled}
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            assert got[key] == (pytest.approx(value, rel=1e-12) if isinstance(value, float) else value), (name, key)


def test_t1024_channels_from_the_docs():
    # ../shared/docs/training.md B.2, config T at 1024.
    specs = layer_schedule(1024, 3, channel_base=32768, channel_max=512)
    assert [s.out_channels for s in specs] == [512] * 7 + [323, 203, 128, 81, 51, 32, 32, 3]
    assert [s.out_size for s in specs][-3:] == [1044, 1024, 1024]
    assert [s.use_fp16 for s in specs].index(True) == 5


@pytest.mark.parametrize("config", sorted(SYNTHESIS))
def test_state_dict_names_and_shapes_match_official(config):
    case = SYNTHESIS[config]
    ours = SynthesisNetwork(**case["kwargs"]).state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in case["state"].items()}


@pytest.mark.parametrize("backend", ["torch", "cpu"])
@pytest.mark.parametrize("config", sorted(SYNTHESIS))
def test_forward_and_gradients_match_official(config, backend):
    case = SYNTHESIS[config]
    net = SynthesisNetwork(**case["kwargs"]).eval()
    net.load_state_dict(case["state"])
    set_ops_backend(net, backend)
    ws = case["ws"].clone().requires_grad_(True)
    y = net(ws)
    (dws,) = torch.autograd.grad(y, ws, case["dy"])
    # The target: 1e-4 of the output's max in fp32 (measured: about 1e-6).
    torch.testing.assert_close(y, case["y"], rtol=0, atol=1e-4 * case["y"].abs().max().item())
    torch.testing.assert_close(dws, case["dws"], rtol=0, atol=1e-4 * case["dws"].abs().max().item())
    with torch.no_grad():
        net(case["ws_update"], update_emas=True)
    state = net.state_dict()
    for name, value in case["magnitude_ema_after_update"].items():
        torch.testing.assert_close(state[name], value, rtol=1e-6, atol=0)


def test_input_starts_as_the_identity_transform():
    torch.manual_seed(0)
    net = SynthesisNetwork(w_dim=8, img_resolution=16, img_channels=3, channel_base=64, channel_max=8,
                           num_layers=4, num_critical=1, margin_size=2)
    assert torch.equal(net.input.affine.weight, torch.zeros(4, 8))
    assert torch.equal(net.input.affine.bias, torch.tensor([1.0, 0, 0, 0]))
    ws = torch.randn(2, net.num_ws, 8)
    same_first = torch.cat([ws[:1], ws[1:2]])
    same_first[1, 0] = ws[0, 0] + 5  # w[0] only moves the (identity) input transform at init
    a, b = net.input(same_first[:, 0])
    torch.testing.assert_close(a, b)


def test_student_module_exposes_the_network():
    assert student_stylegan3.SynthesisNetwork is SynthesisNetwork


@pytest.mark.parametrize("kwargs,match", [
    (dict(img_resolution=2), "img_resolution must be an int >= 4"),
    (dict(num_layers=2, num_critical=2), "num_layers > num_critical"),
])
def test_bad_configs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SynthesisNetwork(**{"w_dim": 8, "img_resolution": 16, "img_channels": 3, **kwargs})


def test_bad_ws_names_the_shape():
    net = SynthesisNetwork(w_dim=8, img_resolution=16, img_channels=3, channel_base=64, channel_max=8,
                           num_layers=4, num_critical=1, margin_size=2)
    with pytest.raises(ValueError, match=r"ws must be"):
        net(torch.randn(2, net.num_ws - 1, 8))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_fp16_layers_track_fp32(backend):
    case = SYNTHESIS["T"]
    kwargs = {**case["kwargs"], "num_fp16_res": 4}
    net = SynthesisNetwork(**kwargs).cuda().eval()
    net.load_state_dict(case["state"])
    set_ops_backend(net, backend)
    y16 = net(case["ws"].cuda())
    y32 = net(case["ws"].cuda(), force_fp32=True)
    assert any(getattr(net, n).use_fp16 for n in net.layer_names)
    torch.testing.assert_close(y32.cpu(), case["y"], rtol=0, atol=1e-4 * case["y"].abs().max().item())
    torch.testing.assert_close(y16, y32, rtol=0, atol=2e-2 * y32.abs().max().item())


# --- official pickles ------------------------------------------------------------------------------

def _as_official_pickle_tree(module, init_kwargs=None):
    """`module` as the official StyleGAN3 pickle holds it: persistent classes of the same names,
    sizes as numpy arrays (as networks_stylegan3.py keeps them), our tensors (equal to the official
    ones: tests above)."""
    attrs = {}
    for name in ("in_size", "out_size", "size"):
        if isinstance(getattr(module, name, None), (int, torch.Size, tuple, list)):
            attrs[name] = np.broadcast_to(np.asarray(getattr(module, name)), [2])
    return FakeModule(type(module).__name__, module_src="# networks_stylegan3.py", init_kwargs=init_kwargs or {},
                      attrs=attrs, params=dict(module._parameters), buffers=dict(module._buffers),
                      children={k: _as_official_pickle_tree(m) for k, m in module._modules.items()})


def _official_snapshot(config, **changes):
    case = SYNTHESIS[config]
    net = SynthesisNetwork(**case["kwargs"])
    net.load_state_dict(case["state"])
    synthesis = _as_official_pickle_tree(net, EasyDict({**case["kwargs"], **changes}))
    generator = FakeModule("Generator", init_kwargs=EasyDict(z_dim=8, c_dim=0, w_dim=case["kwargs"]["w_dim"]),
                           children={"mapping": FakeModule("MappingNetwork"), "synthesis": synthesis})
    return dumps_snapshot({"G": generator, "D": None, "G_ema": generator, "augment_pipe": None,
                           "training_set_kwargs": EasyDict(resolution=case["kwargs"]["img_resolution"])})


@pytest.mark.parametrize("config", sorted(SYNTHESIS))
def test_load_synthesis_from_an_official_pickle(config):
    case = SYNTHESIS[config]
    net = student_stylegan3.load_synthesis(io.BytesIO(_official_snapshot(config)))
    assert not net.training and net.state_dict().keys() == case["state"].keys()
    with torch.no_grad():
        y = net(case["ws"])
    torch.testing.assert_close(y, case["y"], rtol=0, atol=1e-4 * case["y"].abs().max().item())


def test_load_synthesis_refuses_what_it_cannot_rebuild():
    with pytest.raises(StyleGAN3FormatError, match="not understood: use_noise"):
        student_stylegan3.load_synthesis(io.BytesIO(_official_snapshot("T", use_noise=True)))
    with pytest.raises(StyleGAN3FormatError, match="cannot rebuild"):
        student_stylegan3.load_synthesis(io.BytesIO(_official_snapshot("T", img_resolution=2)))
    with pytest.raises(StyleGAN3FormatError, match="tensors do not match the architecture"):
        student_stylegan3.load_synthesis(io.BytesIO(_official_snapshot("T", channel_max=4)))
    not_a_generator = dumps_snapshot({"G_ema": FakeModule("TriPlaneGenerator")})
    with pytest.raises(StyleGAN3FormatError, match="not a StyleGAN3 Generator"):
        student_stylegan3.load_synthesis(io.BytesIO(not_a_generator))
    with pytest.raises(StyleGAN3FormatError, match="no sub-module 'synthesis'"):
        student_stylegan3.load_synthesis(io.BytesIO(dumps_snapshot({"G_ema": FakeModule("Generator")})))


def test_load_synthesis_never_runs_the_pickle():
    evil = call_pickle("os", "system", "echo pwned")
    with pytest.raises(UnsafePickleError, match="refusing global 'os.system'"):
        student_stylegan3.load_synthesis(io.BytesIO(evil))
