"""Tests of nerfgan_distill.teacher.loader: official EG3D pickles and our .safetensors format.

The official-format pickles are made from our own TriPlaneGenerator: `official_tree` turns a model into
the tree of FakeModules an EG3D snapshot holds (docs/eg3d.md, section 6: persistent classes under our class
names, the non-persistent OSGDecoder / Sequential / Softplus by their qualified names, plus EG3D's
renderer and ray sampler), and tests/eg3d_pickle_writer.py writes it as the official stream. The model
is tiny (channel_base 1024, channel_max 32, ShapeNet's SR 2X) so the whole file runs in seconds.
"""
import copy
import hashlib
import io
import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from eg3d_pickle_writer import EasyDict, FakeModule, PersistentCall, call_pickle, dumps_snapshot
from nerfgan_distill.teacher import cameras, loader
from nerfgan_distill.teacher.configs import official_config
from nerfgan_distill.network_pickle import Eg3dPickleError, UnsafePickleError
from nerfgan_distill.teacher.generator import TriPlaneGenerator
from nerfgan_distill.teacher.loader import TeacherFormatError, convert, load, save
from safetensors import safe_open

from nerfgan_distill.formats import safetensors_bytes


def load_safetensors(path):
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def save_safetensors(path, tensors, metadata):
    path.write_bytes(safetensors_bytes(tensors, metadata))
from nerfgan_distill.teacher.synthetic import random_state

REPO = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------------------------------------
# Official-format trees from our models

# Placeholder module sources, one per official file (their hashes are not in loader.KNOWN_SOURCES).
SOURCES = {
    "triplane": "# placeholder for training/triplane.py (not the official text)\n",
    "networks_stylegan2": "# placeholder for training/networks_stylegan2.py (not the official text)\n",
    "superresolution": "# placeholder for training/superresolution.py (not the official text)\n",
}
SOURCE_OF_CLASS = {
    "TriPlaneGenerator": "triplane",
    "SynthesisBlockNoUp": "superresolution",
    "SuperresolutionHybrid8XDC": "superresolution", "SuperresolutionHybrid8X": "superresolution",
    "SuperresolutionHybrid4X": "superresolution", "SuperresolutionHybrid2X": "superresolution",
}  # everything else: networks_stylegan2
NON_PERSISTENT = {
    "OSGDecoder": "training.triplane.OSGDecoder",
    "Sequential": "torch.nn.modules.container.Sequential",
    "Softplus": "torch.nn.modules.activation.Softplus",
}
SKIPPED_ATTRIBUTES = {"training", "init_kwargs", "backend"}
NUMPY_ATTRIBUTES = {"weight_gain", "act_gain"}  # numpy float64 in EG3D's pickles
PLAIN = (bool, int, float, str, type(None), dict, list, tuple)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def generate_planes() -> torch.Tensor:
    """EG3D's renderer.generate_planes() (docs/eg3d.md 2.2), written out here independently of the loader."""
    return torch.tensor([[[1, 0, 0], [0, 1, 0], [0, 0, 1]],
                         [[1, 0, 0], [0, 0, 1], [0, 1, 0]],
                         [[0, 0, 1], [1, 0, 0], [0, 1, 0]]], dtype=torch.float32)


def _fake_module(module: torch.nn.Module) -> FakeModule:
    class_name = type(module).__name__
    attrs = {}
    for key, value in vars(module).items():
        if key.startswith("_") or key in SKIPPED_ATTRIBUTES:
            continue
        assert isinstance(value, PLAIN), f"{class_name}.{key} is a {type(value).__name__}"
        attrs[key] = np.float64(value) if key in NUMPY_ATTRIBUTES else copy.deepcopy(value)
    params = dict(module._parameters)  # keeps None entries, as a pickled __dict__ does
    buffers = dict(module._buffers)
    children = {name: _fake_module(child) for name, child in module._modules.items()}
    common = dict(attrs=attrs, params=params, buffers=buffers, children=children,
                  non_persistent_buffers=set(module._non_persistent_buffers_set))
    if class_name in NON_PERSISTENT:
        return FakeModule(NON_PERSISTENT[class_name], persistent=False, **common)
    return FakeModule(class_name, module_src=SOURCES[SOURCE_OF_CLASS.get(class_name, "networks_stylegan2")], **common)


def official_tree(model: TriPlaneGenerator) -> FakeModule:
    """Our TriPlaneGenerator as EG3D's pickle holds it: persistent modules under our class names, the
    decoder parts non-persistent, and the official renderer / ray_sampler children added."""
    root = _fake_module(model)
    root.attrs["_last_planes"] = None
    init_kwargs = copy.deepcopy(model.init_kwargs)
    for name in ("mapping_kwargs", "sr_kwargs"):
        init_kwargs[name] = EasyDict(init_kwargs[name])
    root.init_kwargs = init_kwargs
    assert root.attrs["rendering_kwargs"] == model.rendering_kwargs
    assert root.attrs["neural_rendering_resolution"] == model.neural_rendering_resolution
    root.children["decoder"].attrs["hidden_dim"] = 64  # an instance attribute in EG3D
    renderer = FakeModule("training.volumetric_rendering.renderer.ImportanceRenderer", persistent=False,
                          attrs=dict(plane_axes=generate_planes()),
                          children=dict(ray_marcher=FakeModule(
                              "training.volumetric_rendering.ray_marcher.MipRayMarcher2", persistent=False)))
    ray_sampler = FakeModule("training.volumetric_rendering.ray_sampler.RaySampler", persistent=False,
                             attrs=dict(ray_origins_h=None, ray_directions=None, depths=None, ray_origins=None,
                                        ray_directions_h=None))
    # EG3D's order: renderer and ray_sampler are created before the backbone.
    root.children = dict(renderer=renderer, ray_sampler=ray_sampler, **root.children)
    return root


def snapshot_dict(G: FakeModule, G_ema: FakeModule) -> dict:
    D = FakeModule("DualDiscriminator", module_src="# placeholder for training/dual_discriminator.py\n",
                   params=dict(weight=torch.arange(6, dtype=torch.float32).reshape(2, 3)))
    return dict(training_set_kwargs=dict(class_name="training.dataset.ImageFolderDataset", path="cars_128.zip",
                                         use_labels=True, max_size=None, xflip=False, resolution=128,
                                         random_seed=0),
                G=G, D=D, G_ema=G_ema, augment_pipe=None)


def find(tree: FakeModule, dotted: str) -> FakeModule:
    for part in dotted.split(".") if dotted else []:
        tree = tree.children[part]
    return tree


# ------------------------------------------------------------------------------------------------
# Models


def tiny_kwargs(**overrides) -> dict:
    kwargs, _ = official_config("shapenetcars128-64")
    kwargs.update(channel_base=1024, channel_max=32)
    kwargs.update(overrides)
    return kwargs


def make_model(seed: int, neural_rendering_resolution: int = 64, **overrides) -> TriPlaneGenerator:
    model = TriPlaneGenerator(**tiny_kwargs(**overrides))
    model.load_state_dict(random_state(model, seed))
    with torch.no_grad():  # random_state keeps the label std at ones; a trained one is not
        model.dataset_label_std.copy_(torch.rand(model.c_dim, generator=torch.Generator().manual_seed(seed)))
    model.neural_rendering_resolution = neural_rendering_resolution
    return model.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def models():
    """(G, G_ema): different weights; G_ema's rendering_kwargs attribute differs from its constructor
    copy (the attribute must win) and its neural rendering resolution is not the constructor's 64."""
    G = make_model(seed=2)
    G_ema = make_model(seed=1, neural_rendering_resolution=32)
    G_ema.rendering_kwargs = {**G_ema.rendering_kwargs, "depth_resolution": 24, "depth_resolution_importance": 16}
    assert G_ema.init_kwargs["rendering_kwargs"]["depth_resolution"] == 64
    return G, G_ema


@pytest.fixture(scope="module")
def snapshot_bytes(models):
    """layout -> the pickle bytes of a full official snapshot of `models`."""
    cache = {}

    def get(layout="torch1.11", numpy_module="numpy.core.multiarray"):
        if (layout, numpy_module) not in cache:
            G, G_ema = models
            cache[layout, numpy_module] = dumps_snapshot(snapshot_dict(official_tree(G), official_tree(G_ema)),
                                                         layout=layout, numpy_module=numpy_module)
        return cache[layout, numpy_module]

    return get


@pytest.fixture
def snapshot_file(snapshot_bytes, tmp_path):
    path = tmp_path / "network-snapshot-000000.pkl"
    path.write_bytes(snapshot_bytes())
    return path


def write_tree(path, models, edit=None, **kwargs):
    """A snapshot of `models` whose G_ema tree went through `edit(tree)` first."""
    G, G_ema = models
    tree = official_tree(G_ema)
    if edit is not None:
        edit(tree)
    path.write_bytes(dumps_snapshot(snapshot_dict(official_tree(G), tree), **kwargs))
    return path


def load_quietly(source, **kwargs):
    """load() with the expected unknown-source warning swallowed (other warnings stay errors)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", message=".*differs from NVlabs/eg3d", category=UserWarning)
        return load(source, **kwargs)


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for name in sa:
        assert sa[name].dtype == sb[name].dtype, name
        assert torch.equal(sa[name], sb[name]), name


def assert_frozen(model):
    assert isinstance(model, TriPlaneGenerator)
    assert not model.training and not any(m.training for m in model.modules())
    assert not any(p.requires_grad for p in model.parameters())


# ------------------------------------------------------------------------------------------------
# The helper itself


def test_official_tree_has_the_official_shape(models):
    _, G_ema = models
    tree = official_tree(G_ema)
    assert list(tree.children) == ["renderer", "ray_sampler", "backbone", "superresolution", "decoder"]
    assert tree.class_name == "TriPlaneGenerator" and tree.persistent
    assert find(tree, "decoder").class_name == "training.triplane.OSGDecoder"
    assert find(tree, "decoder.net").class_name == "torch.nn.modules.container.Sequential"
    assert find(tree, "decoder.net.1").class_name == "torch.nn.modules.activation.Softplus"
    assert find(tree, "superresolution").class_name == "SuperresolutionHybrid2X"
    assert find(tree, "superresolution.block0").class_name == "SynthesisBlockNoUp"
    assert find(tree, "backbone.synthesis.b8.conv0").class_name == "SynthesisLayer"
    assert type(find(tree, "backbone.mapping.fc0").attrs["weight_gain"]) is np.float64
    assert type(find(tree, "backbone.synthesis.b8.conv0").attrs["act_gain"]) is np.float64
    assert type(tree.init_kwargs["mapping_kwargs"]) is EasyDict
    assert torch.equal(find(tree, "renderer").attrs["plane_axes"], loader.EG3D_PLANE_AXES)


# ------------------------------------------------------------------------------------------------
# Pickle round trips


@pytest.mark.parametrize("layout,numpy_module", [("torch1.11", "numpy.core.multiarray"),
                                                  ("torch2", "numpy._core.multiarray")])
def test_load_official_snapshot(models, snapshot_bytes, tmp_path, layout, numpy_module):
    _, G_ema = models
    path = tmp_path / "snapshot.pkl"
    path.write_bytes(snapshot_bytes(layout, numpy_module))
    with pytest.warns(UserWarning, match="differs from NVlabs/eg3d") as record:
        model = load(path)
    assert len([w for w in record if "differs from NVlabs" in str(w.message)]) == 1  # one warning, not one per module
    assert_same_state(model, G_ema)
    assert_frozen(model)
    # The attributes, not the constructor copy, give rendering_kwargs and the neural rendering resolution.
    assert model.neural_rendering_resolution == 32
    assert model.rendering_kwargs == G_ema.rendering_kwargs
    assert model.rendering_kwargs["depth_resolution"] == 24
    assert model.init_kwargs == {**G_ema.init_kwargs, "rendering_kwargs": G_ema.rendering_kwargs}


def test_load_key_G(models, snapshot_file):
    G, G_ema = models
    model = load_quietly(snapshot_file, key="G")
    assert_same_state(model, G)
    assert not torch.equal(model.backbone.synthesis.b4.const, G_ema.backbone.synthesis.b4.const)
    assert model.neural_rendering_resolution == 64
    assert model.rendering_kwargs == G.rendering_kwargs
    assert_frozen(model)


def test_load_from_file_objects(models, snapshot_bytes):
    _, G_ema = models
    data = snapshot_bytes()
    assert_same_state(load_quietly(io.BytesIO(data)), G_ema)
    # A file object is read from its current position.
    buffer = io.BytesIO(b"some header" + data)
    buffer.seek(len(b"some header"))
    assert_same_state(load_quietly(buffer), G_ema)


def test_loaded_model_renders_like_the_original(models, snapshot_file):
    _, G_ema = models
    loaded = load_quietly(snapshot_file)
    original = copy.deepcopy(G_ema)  # synthesis(neural_rendering_resolution=...) sets the attribute
    c = cameras.frontal_camera("shapenet")
    z = torch.randn(1, original.z_dim, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ws = original.mapping(z, c, truncation_psi=0.7)
        assert torch.equal(loaded.mapping(z, c, truncation_psi=0.7), ws)
        kwargs = dict(noise_mode="const", deterministic=True, neural_rendering_resolution=16)
        expected = original.synthesis(ws, c, **kwargs)["image"]
        image = loaded.synthesis(ws, c, **kwargs)["image"]
    assert image.shape == (1, 3, 128, 128)
    assert torch.isfinite(expected).all() and expected.std() > 0
    assert torch.equal(image, expected)


def test_known_sources_do_not_warn(models, snapshot_file, monkeypatch):
    _, G_ema = models
    monkeypatch.setattr(loader, "KNOWN_SOURCES", {sha256(text): name for name, text in SOURCES.items()})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = load(snapshot_file)
    assert_same_state(model, G_ema)


def test_unknown_source_warning_names_the_module(snapshot_file, monkeypatch):
    known = {sha256(SOURCES["triplane"]): "triplane", sha256(SOURCES["networks_stylegan2"]): "sg2"}
    monkeypatch.setattr(loader, "KNOWN_SOURCES", known)
    with pytest.warns(UserWarning, match=r"superresolution \(SuperresolutionHybrid2X\).*"
                                         + sha256(SOURCES["superresolution"])[:12]):
        load(snapshot_file)


def test_dataset_label_std_is_optional(models, tmp_path):
    _, G_ema = models
    path = write_tree(tmp_path / "s.pkl", models, lambda t: t.buffers.pop("dataset_label_std"))
    model = load_quietly(path)
    assert torch.equal(model.dataset_label_std, torch.ones(G_ema.c_dim))
    expected = {k: v for k, v in G_ema.state_dict().items() if k != "dataset_label_std"}
    for name, tensor in expected.items():
        assert torch.equal(model.state_dict()[name], tensor), name


def test_positional_constructor_arguments(models, tmp_path):
    _, G_ema = models

    def positional(tree):
        tree.init_args = tuple(tree.init_kwargs.pop(k) for k in loader.POSITIONAL)

    model = load_quietly(write_tree(tmp_path / "s.pkl", models, positional))
    assert_same_state(model, G_ema)
    assert model.init_kwargs == {**G_ema.init_kwargs, "rendering_kwargs": G_ema.rendering_kwargs}


def test_renderer_is_optional_and_float64_tensors_are_cast(models, tmp_path):
    _, G_ema = models

    def edit(tree):
        del tree.children["renderer"]
        fc = find(tree, "decoder.net.2")
        fc.params["weight"] = fc.params["weight"].double()

    model = load_quietly(write_tree(tmp_path / "s.pkl", models, edit))
    assert_same_state(model, G_ema)


# ------------------------------------------------------------------------------------------------
# Our format


def test_convert_then_load_is_bit_exact(models, snapshot_file, tmp_path):
    _, G_ema = models
    out = tmp_path / "teacher.safetensors"
    with pytest.warns(UserWarning, match="differs from NVlabs"):
        converted = convert(snapshot_file, out)
    assert_same_state(converted, G_ema)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # our format carries no module sources: no warning
        model = load(out)
    assert_same_state(model, G_ema)
    assert_frozen(model)
    assert model.neural_rendering_resolution == 32
    assert model.rendering_kwargs == G_ema.rendering_kwargs
    assert model.init_kwargs == converted.init_kwargs
    tensors, metadata = load_safetensors(out)
    assert metadata["format"] == "nerfgan_distill.teacher" and metadata["format_version"] == "1"
    assert json.loads(metadata["config"])["neural_rendering_resolution"] == 32
    # save() of the loaded model writes the same bytes again.
    again = tmp_path / "again.safetensors"
    save(model, again)
    assert again.read_bytes() == out.read_bytes()
    # And from a file object.
    assert_same_state(load(io.BytesIO(out.read_bytes())), G_ema)


def test_convert_key_G(models, snapshot_file, tmp_path):
    G, _ = models
    out = tmp_path / "g.safetensors"
    convert_model = load_quietly(snapshot_file, key="G")
    with pytest.warns(UserWarning):
        convert(snapshot_file, out, key="G")
    assert_same_state(load(out), G)
    assert_same_state(load(out), convert_model)


def test_save_load_non_official_config(tmp_path):
    rendering = dict(tiny_kwargs()["rendering_kwargs"],
                     superresolution_module="training.superresolution.SuperresolutionHybrid4X")
    model = make_model(seed=3, neural_rendering_resolution=48, img_resolution=256, rendering_kwargs=rendering,
                       mapping_kwargs={"num_layers": 1}, sr_num_fp16_res=0)
    model.rendering_kwargs = {**model.rendering_kwargs, "box_warp": 1.5}
    path = tmp_path / "custom.safetensors"
    save(model, path)
    loaded = load(path)
    assert type(loaded.superresolution).__name__ == "SuperresolutionHybrid4X"
    assert_same_state(loaded, model)
    assert_frozen(loaded)
    assert loaded.img_resolution == 256 and loaded.neural_rendering_resolution == 48
    assert loaded.rendering_kwargs == model.rendering_kwargs
    assert loaded.init_kwargs == {**model.init_kwargs, "rendering_kwargs": model.rendering_kwargs}
    # The loaded model's constructor copy of rendering_kwargs is the attribute (the file's config said
    # box_warp 1.6 there), so the first re-save normalizes it; from then on save/load is a fixed point.
    assert json.loads(load_safetensors(path)[1]["config"])["init_kwargs"]["rendering_kwargs"]["box_warp"] == 1.6
    again, third = tmp_path / "again.safetensors", tmp_path / "third.safetensors"
    save(loaded, again)
    save(load(again), third)
    assert third.read_bytes() == again.read_bytes()
    model.rendering_kwargs = model.init_kwargs["rendering_kwargs"]  # attribute == constructor copy
    save(model, path)
    save(load(path), again)
    assert again.read_bytes() == path.read_bytes()


def test_save_rejects_other_modules(tmp_path):
    with pytest.raises(TypeError, match="TriPlaneGenerator"):
        save(torch.nn.Linear(2, 2), tmp_path / "x.safetensors")


# ------------------------------------------------------------------------------------------------
# Errors in pickles


def test_missing_key_lists_the_keys(models, tmp_path):
    G, _ = models
    path = tmp_path / "s.pkl"
    snap = snapshot_dict(official_tree(G), None)
    del snap["G_ema"]
    path.write_bytes(dumps_snapshot(snap))
    with pytest.raises(KeyError, match=r"G_ema.*available keys: 'training_set_kwargs', 'G', 'D', 'augment_pipe'"):
        load(path)


@pytest.mark.parametrize("key,found", [("D", "DualDiscriminator"), ("augment_pipe", "NoneType"),
                                       ("training_set_kwargs", "dict")])
def test_root_must_be_a_triplane_generator(snapshot_file, key, found):
    with pytest.raises(TeacherFormatError, match=rf"\['{key}'\] is a {found}, not an EG3D TriPlaneGenerator"):
        load(snapshot_file, key=key)


def test_unknown_constructor_argument(models, tmp_path):
    path = write_tree(tmp_path / "s.pkl", models, lambda t: t.init_kwargs.update(bogus_option=3))
    with pytest.raises(TeacherFormatError, match="constructor arguments not understood: bogus_option"):
        load_quietly(path)


def test_too_many_positional_arguments(models, tmp_path):
    path = write_tree(tmp_path / "s.pkl", models, lambda t: setattr(t, "init_args", (512, 25, 512, 128, 3, 0)))
    with pytest.raises(TeacherFormatError, match="6 positional constructor arguments"):
        load_quietly(path)


def test_unbuildable_constructor_arguments(models, tmp_path):
    def edit(tree):
        tree.init_kwargs["img_channels"] = 4

    with pytest.raises(TeacherFormatError, match="cannot rebuild the generator.*img_channels"):
        load_quietly(write_tree(tmp_path / "s.pkl", models, edit))


@pytest.mark.parametrize("attribute", ["rendering_kwargs", "neural_rendering_resolution"])
def test_missing_generator_attribute(models, tmp_path, attribute):
    path = write_tree(tmp_path / "s.pkl", models, lambda t: t.attrs.pop(attribute))
    with pytest.raises(TeacherFormatError, match=f"no attribute '{attribute}'"):
        load_quietly(path)


def test_tensor_with_wrong_shape(models, tmp_path):
    def edit(tree):
        block = find(tree, "backbone.synthesis.b4")
        block.params["const"] = torch.zeros(32, 4, 5)

    with pytest.raises(TeacherFormatError, match=r"backbone\.synthesis\.b4\.const has shape \[32, 4, 5\], "
                                                 r"expected \[32, 4, 4\]"):
        load_quietly(write_tree(tmp_path / "s.pkl", models, edit))


def test_integer_tensor(models, tmp_path):
    def edit(tree):
        fc = find(tree, "decoder.net.0")
        fc.params["bias"] = torch.zeros(64, dtype=torch.int32)

    with pytest.raises(TeacherFormatError, match=r"decoder\.net\.0\.bias is torch\.int32"):
        load_quietly(write_tree(tmp_path / "s.pkl", models, edit))


def test_extra_tensor(models, tmp_path):
    path = write_tree(tmp_path / "s.pkl", models,
                      lambda t: find(t, "backbone.mapping").buffers.update(extra_stat=torch.zeros(3)))
    with pytest.raises(TeacherFormatError, match=r"missing: none; not understood: backbone\.mapping\.extra_stat"):
        load_quietly(path)


def test_missing_tensor(models, tmp_path):
    path = write_tree(tmp_path / "s.pkl", models, lambda t: find(t, "decoder.net.2").params.pop("bias"))
    with pytest.raises(TeacherFormatError, match=r"missing: decoder\.net\.2\.bias; not understood: none"):
        load_quietly(path)


def test_non_persistent_buffer_is_not_a_tensor_of_the_state(models, tmp_path):
    # A buffer in _non_persistent_buffers_set is not part of state_dict(): it must not count as extra.
    def edit(tree):
        layer = find(tree, "backbone.synthesis.b4.conv1")
        layer.buffers["scratch"] = torch.zeros(2)
        layer.non_persistent_buffers = {"scratch"}

    model = load_quietly(write_tree(tmp_path / "s.pkl", models, edit))
    assert_same_state(model, models[1])


@pytest.mark.parametrize("module,attribute,value,shown", [
    ("backbone.synthesis.b8.conv0", "up", 1, "1"),
    ("superresolution.block0", "use_fp16", False, "False"),
    ("superresolution.block1.conv1", "conv_clamp", None, "None"),
    ("backbone.mapping", "num_ws", 99, "99"),
    ("superresolution", "sr_antialias", False, "False"),
    ("backbone.mapping.fc0", "weight_gain", np.float64(0.5), "0.5"),
    ("backbone.synthesis.b16.torgb.affine", "in_features", 513, "513"),
    ("", "z_dim", 256, "256"),
])
def test_layout_attribute_mismatch(models, tmp_path, module, attribute, value, shown):
    path = write_tree(tmp_path / "s.pkl", models, lambda t: find(t, module).attrs.update({attribute: value}))
    name = re.escape(module or "<root>")
    with pytest.raises(TeacherFormatError, match=rf"{name}\.{attribute} is {shown} in the pickle but"):
        load_quietly(path)


def test_float_attributes_compare_with_a_tolerance(models, tmp_path):
    def edit(tree):
        fc = find(tree, "backbone.mapping.fc0")
        fc.attrs["weight_gain"] = np.float64(np.nextafter(fc.attrs["weight_gain"], 1.0))

    assert_same_state(load_quietly(write_tree(tmp_path / "s.pkl", models, edit)), models[1])


@pytest.mark.parametrize("axes", [torch.eye(3).expand(3, 3, 3).clone(), generate_planes()[:2],
                                  generate_planes()[[0, 2, 1]], "not a tensor"])
def test_plane_axes_must_be_eg3ds(models, tmp_path, axes):
    path = write_tree(tmp_path / "s.pkl", models, lambda t: find(t, "renderer").attrs.update(plane_axes=axes))
    with pytest.raises(TeacherFormatError, match=r"renderer\.plane_axes differs from EG3D's generate_planes"):
        load_quietly(path)


def test_unknown_sub_module(models, tmp_path):
    def edit(tree):
        find(tree, "backbone").children["extra"] = FakeModule("FullyConnectedLayer", module_src=SOURCES["triplane"])

    with pytest.raises(TeacherFormatError, match=r"sub-module 'backbone\.extra' \(FullyConnectedLayer\) is not part"):
        load_quietly(write_tree(tmp_path / "s.pkl", models, edit))


def test_unknown_non_persistent_class_is_refused(models, tmp_path):
    def edit(tree):
        find(tree, "decoder.net").children["1"] = FakeModule("torch.nn.modules.activation.ReLU", persistent=False)

    with pytest.raises(UnsafePickleError, match="torch.nn.modules.activation.ReLU"):
        load_quietly(write_tree(tmp_path / "s.pkl", models, edit))


def test_truncated_pickle(snapshot_bytes, tmp_path):
    path = tmp_path / "truncated.pkl"
    path.write_bytes(snapshot_bytes()[: len(snapshot_bytes()) // 2])
    with pytest.raises(Eg3dPickleError, match="truncated"):
        load(path)


@pytest.mark.parametrize("module,name", [("os", "system"), ("posix", "system"), ("subprocess", "call")])
def test_malicious_global_is_refused(tmp_path, monkeypatch, module, name):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(call_pickle(module, name, f"touch {marker}"))
    with pytest.raises(UnsafePickleError, match=rf"refusing global '{module}\.{name}'"):
        load(path)
    assert not marker.exists()


def test_module_source_is_never_run(models, tmp_path, monkeypatch):
    """A complete, valid snapshot whose embedded source would create a file: it loads, the file does not appear."""
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "executed"
    evil = f"open({str(marker)!r}, 'w').write('pwned')\nimport os\nos.system('touch {marker}')\n"
    path = write_tree(tmp_path / "s.pkl", models, lambda t: setattr(t, "module_src", evil))
    with pytest.warns(UserWarning, match="differs from NVlabs"):
        model = load(path)
    assert_same_state(model, models[1])
    assert not marker.exists()


def test_persistent_call_with_a_crafted_meta(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "executed"
    meta = dict(type="class", version=6, class_name="TriPlaneGenerator", state={},
                module_src=f"open({str(marker)!r}, 'w').close()\nclass TriPlaneGenerator: pass\n")
    path = tmp_path / "s.pkl"
    path.write_bytes(dumps_snapshot({"G_ema": PersistentCall(meta)}))
    with pytest.warns(UserWarning), pytest.raises(TeacherFormatError, match="no attribute 'rendering_kwargs'"):
        load(path)
    assert not marker.exists()


# ------------------------------------------------------------------------------------------------
# Errors in other files


@pytest.mark.parametrize("content", [b"", b"\x80", b"hello, this is not a network\n", b"\x80\x09" + b"\0" * 30,
                                     b"(dp0\nS'G_ema'\np1\nN."])
def test_neither_pickle_nor_safetensors(tmp_path, content):
    path = tmp_path / "file.bin"
    path.write_bytes(content)
    with pytest.raises(TeacherFormatError, match="neither an EG3D network pickle nor a nerfgan_distill"):
        load(path)


def test_zip_archive(models, tmp_path):
    path = tmp_path / "state.pt"
    torch.save(models[1].state_dict(), path)
    with pytest.raises(TeacherFormatError, match="zip archive"):
        load(path)


def _safetensors_with(path, model, metadata):
    save_safetensors(path, {k: v for k, v in model.state_dict().items()}, metadata)
    return path


def _metadata(model, **changes):
    config = {"init_kwargs": model.init_kwargs, "rendering_kwargs": model.rendering_kwargs,
              "neural_rendering_resolution": model.neural_rendering_resolution}
    metadata = {"format": "nerfgan_distill.teacher", "format_version": "1", "config": json.dumps(config)}
    metadata.update(changes)
    return {k: v for k, v in metadata.items() if v is not None}


def test_safetensors_metadata_matches_save(models, tmp_path):
    # The files of the error tests below differ from save()'s only where they say.
    _, G_ema = models
    ours = _safetensors_with(tmp_path / "a.safetensors", G_ema, _metadata(G_ema))
    save(G_ema, tmp_path / "b.safetensors")
    assert ours.read_bytes() == (tmp_path / "b.safetensors").read_bytes()


@pytest.mark.parametrize("changes,message", [
    (dict(format=None), "metadata 'format' is None"),
    (dict(format="something.else"), "metadata 'format' is 'something.else'"),
    (dict(format_version="2"), "format version '2' is not understood"),
    (dict(format_version=None), "format version None"),
    (dict(config=None), "config metadata is malformed"),
    (dict(config="{not json"), "config metadata is malformed"),
    (dict(config="[]"), "config metadata is malformed"),
    (dict(config=json.dumps({"init_kwargs": {}, "rendering_kwargs": {}})), "config metadata is malformed"),
])
def test_safetensors_bad_metadata(models, tmp_path, changes, message):
    path = _safetensors_with(tmp_path / "x.safetensors", models[1], _metadata(models[1], **changes))
    with pytest.raises(TeacherFormatError, match=message):
        load(path)


def test_safetensors_without_metadata(models, tmp_path):
    path = _safetensors_with(tmp_path / "x.safetensors", models[1], None)
    with pytest.raises(TeacherFormatError, match="metadata 'format' is None"):
        load(path)


def _config(model, **init_changes):
    init = {**model.init_kwargs, **init_changes}
    return json.dumps({"init_kwargs": init, "rendering_kwargs": model.rendering_kwargs,
                       "neural_rendering_resolution": model.neural_rendering_resolution})


@pytest.mark.parametrize("init_changes,message", [
    (dict(bogus_option=1), "constructor arguments not understood: bogus_option"),
    (dict(img_channels=4), "cannot rebuild the generator"),
    (dict(img_resolution=512), "cannot rebuild the generator"),
    (dict(channel_base="big"), "cannot rebuild the generator"),
])
def test_safetensors_bad_config(models, tmp_path, init_changes, message):
    metadata = _metadata(models[1], config=_config(models[1], **init_changes))
    path = _safetensors_with(tmp_path / "x.safetensors", models[1], metadata)
    with pytest.raises(TeacherFormatError, match=message):
        load(path)


def test_safetensors_tensors_must_match(models, tmp_path):
    _, G_ema = models
    tensors = dict(G_ema.state_dict())
    tensors.pop("decoder.net.0.bias")
    tensors["decoder.net.0.extra"] = torch.zeros(1)
    path = tmp_path / "x.safetensors"
    save_safetensors(path, tensors, _metadata(G_ema))
    with pytest.raises(TeacherFormatError, match=r"missing: decoder\.net\.0\.bias; not understood: decoder\.net\.0\.extra"):
        load(path)


@pytest.mark.parametrize("damage", ["truncated", "braces"])
def test_damaged_safetensors_gives_a_clear_error(models, tmp_path, damage):
    path = tmp_path / "x.safetensors"
    if damage == "truncated":
        save(models[1], path)
        path.write_bytes(path.read_bytes()[:-100])
    else:  # byte 8 is '{', so it is sniffed as .safetensors
        path.write_bytes(b"{" * 20)
    with pytest.raises(TeacherFormatError, match=rf"{re.escape(str(path))}: (damaged .safetensors data|header length)"):
        load(path)


# ------------------------------------------------------------------------------------------------
# Configs and layouts that cannot be rebuilt


@pytest.mark.parametrize("init_changes", [dict(channel_max=-1), dict(c_dim=-5), dict(w_dim=0)])
def test_impossible_sizes_in_the_config(models, tmp_path, init_changes):
    metadata = _metadata(models[1], config=_config(models[1], **init_changes))
    path = _safetensors_with(tmp_path / "x.safetensors", models[1], metadata)
    with pytest.raises(TeacherFormatError):
        load(path)


def test_tensor_valued_layout_attribute(models, tmp_path):
    path = write_tree(tmp_path / "s.pkl", models,
                      lambda t: find(t, "backbone.synthesis.b8.conv0").attrs.update(up=torch.ones(2)))
    with pytest.raises(TeacherFormatError, match=r"backbone\.synthesis\.b8\.conv0\.up"):
        load_quietly(path)


def test_sub_module_of_another_class(models, tmp_path):
    path = write_tree(tmp_path / "s.pkl", models,
                      lambda t: setattr(find(t, "backbone.synthesis.b8.conv0"), "class_name", "ToRGBLayer"))
    with pytest.raises(TeacherFormatError, match=r"backbone\.synthesis\.b8\.conv0"):
        load_quietly(path)


# ------------------------------------------------------------------------------------------------
# The command line


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "nerfgan_distill.cli", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_cli_convert(models, snapshot_file, tmp_path):
    out = tmp_path / "teacher.safetensors"
    result = run_cli("convert", snapshot_file, out)
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stdout
    assert "Traceback" not in result.stderr
    assert_same_state(load(out), models[1])


def test_cli_errors_are_one_line(tmp_path):
    missing = run_cli("convert", tmp_path / "missing.pkl", tmp_path / "out.safetensors")
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(call_pickle("os", "system", f"touch {marker}"))
    refused = run_cli("convert", evil, tmp_path / "out.safetensors")
    for result, text in [(missing, "missing.pkl"), (refused, "refusing global 'os.system'")]:
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert lines[0].startswith("nerfgan-distill convert: ") and text in lines[0]
    assert not marker.exists()
    assert not (tmp_path / "out.safetensors").exists()


def test_cli_damaged_safetensors_is_one_line(tmp_path):
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(b"{" * 20)
    result = run_cli("convert", damaged, tmp_path / "out.safetensors")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
