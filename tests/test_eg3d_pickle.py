"""Tests of the restricted EG3D pickle reader (nerfgan_distill.network_pickle).

The snapshots come from tests/eg3d_pickle_writer.py (official stream layout, real torch tensor
pickles); hostile and damaged streams are crafted here. The security tests check that nothing in
a pickle is imported or run: a marker file that the payload would create must not exist afterwards.
"""
import hashlib
import io
import os
import pickle
import pickletools
import struct
import sys
import warnings
from collections import OrderedDict

import numpy as np
import pytest
import torch

from eg3d_pickle_writer import EasyDict, FakeModule, PersistentCall, call_pickle, dumps_snapshot, write_snapshot
from nerfgan_distill import network_pickle as ep
from nerfgan_distill.network_pickle import Eg3dPickleError, UnsafePickleError

MAGIC = 0x1950A86A20F9469CFC6C


# ------------------------------------------------------------------------------------------------
# Builders


def _layer(g, cin, cout, src):
    return FakeModule("SynthesisLayer", module_src=src, init_args=(cin, cout, 512), init_kwargs=dict(resolution=4),
                      attrs=dict(resolution=4, up=1, use_noise=True, activation="lrelu", conv_clamp=None,
                                 padding=1, act_gain=np.float64(np.sqrt(2)), channels_last=False),
                      params=dict(weight=torch.randn(cout, cin, 3, 3, generator=g), noise_strength=torch.zeros([]),
                                  bias=torch.randn(cout, generator=g)),
                      buffers=dict(resample_filter=torch.ones(4, 4) / 16, noise_const=torch.randn(4, 4, generator=g)),
                      children=dict(affine=FakeModule(
                          "FullyConnectedLayer", module_src=src, init_args=(512, cin), init_kwargs=dict(bias_init=1),
                          attrs=dict(activation="linear", weight_gain=np.float64(1 / np.sqrt(512)), bias_gain=1),
                          params=dict(weight=torch.randn(cin, 512, generator=g), bias=torch.ones(cin)))))


def mini_generator(seed=0):
    """A small TriPlaneGenerator-shaped tree and its expected state_dict."""
    g = torch.Generator().manual_seed(seed)
    sg2 = "# networks_stylegan2.py\nimport torch\n"
    block = FakeModule("SynthesisBlock", module_src=sg2, init_args=(0, 8, 512, 4, 96, False),
                       attrs=dict(use_fp16=False, conv_clamp=256, num_conv=1, num_torgb=1, architecture="skip"),
                       params=dict(const=torch.randn(8, 4, 4, generator=g)),
                       buffers=dict(resample_filter=torch.ones(4, 4) / 16),
                       children=dict(conv1=_layer(g, 8, 8, sg2)))
    mapping = FakeModule("MappingNetwork", module_src=sg2, init_kwargs=dict(z_dim=512, c_dim=25),
                         attrs=dict(num_ws=14, w_avg_beta=0.998),
                         buffers=dict(w_avg=torch.randn(512, generator=g), dataset_label_std=torch.rand(25, generator=g)),
                         children=dict(fc0=FakeModule("FullyConnectedLayer", module_src=sg2,
                                                      params=dict(weight=torch.randn(4, 512, generator=g), bias=None))))
    backbone = FakeModule("Generator", module_src=sg2, init_args=(512, 25, 512),
                          init_kwargs=dict(img_resolution=256, img_channels=96, mapping_kwargs=EasyDict(num_layers=2)),
                          children=dict(synthesis=FakeModule("SynthesisNetwork", module_src=sg2,
                                                             children=dict(b4=block)),
                                        mapping=mapping))
    decoder = FakeModule("training.triplane.OSGDecoder", persistent=False, attrs=dict(hidden_dim=64),
                         children=dict(net=FakeModule("torch.nn.modules.container.Sequential", persistent=False,
                                                      children={
                                                          "0": FakeModule("FullyConnectedLayer", module_src=sg2,
                                                                          params=dict(weight=torch.randn(64, 32, generator=g),
                                                                                      bias=torch.zeros(64))),
                                                          "1": FakeModule("torch.nn.modules.activation.Softplus",
                                                                          persistent=False, attrs=dict(beta=1, threshold=20)),
                                                      })))
    renderer = FakeModule("training.volumetric_rendering.renderer.ImportanceRenderer", persistent=False,
                          attrs=dict(plane_axes=torch.tensor([[[1., 0, 0], [0, 1, 0], [0, 0, 1]]] * 3)),
                          children=dict(ray_marcher=FakeModule(
                              "training.volumetric_rendering.ray_marcher.MipRayMarcher2", persistent=False)))
    ray_sampler = FakeModule("training.volumetric_rendering.ray_sampler.RaySampler", persistent=False,
                             attrs=dict(ray_origins_h=None, ray_directions=None, depths=None, ray_origins=None,
                                        ray_directions_h=None))
    rendering_kwargs = dict(depth_resolution=48, box_warp=1, avg_camera_pivot=[0, 0, 0.2], superresolution_module=
                            "training.superresolution.SuperresolutionHybrid8XDC", c_gen_conditioning_zero=False)
    G = FakeModule("TriPlaneGenerator", module_src="# triplane.py\n", init_kwargs=dict(z_dim=512, rendering_kwargs=rendering_kwargs),
                   attrs=dict(z_dim=512, rendering_kwargs=rendering_kwargs, neural_rendering_resolution=64,
                              _last_planes=None, mapping_kwargs=EasyDict(num_layers=2)),
                   buffers=dict(scratch=torch.ones(3)), non_persistent_buffers={"scratch"},
                   children=dict(backbone=backbone, renderer=renderer, ray_sampler=ray_sampler, decoder=decoder,
                                 superresolution=None))
    b4, conv1 = block, block.children["conv1"]
    expected = {
        "backbone.synthesis.b4.const": b4.params["const"],
        "backbone.synthesis.b4.resample_filter": b4.buffers["resample_filter"],
        "backbone.synthesis.b4.conv1.weight": conv1.params["weight"],
        "backbone.synthesis.b4.conv1.noise_strength": conv1.params["noise_strength"],
        "backbone.synthesis.b4.conv1.bias": conv1.params["bias"],
        "backbone.synthesis.b4.conv1.resample_filter": conv1.buffers["resample_filter"],
        "backbone.synthesis.b4.conv1.noise_const": conv1.buffers["noise_const"],
        "backbone.synthesis.b4.conv1.affine.weight": conv1.children["affine"].params["weight"],
        "backbone.synthesis.b4.conv1.affine.bias": conv1.children["affine"].params["bias"],
        "backbone.mapping.w_avg": mapping.buffers["w_avg"],
        "backbone.mapping.dataset_label_std": mapping.buffers["dataset_label_std"],
        "backbone.mapping.fc0.weight": mapping.children["fc0"].params["weight"],
        "decoder.net.0.weight": decoder.children["net"].children["0"].params["weight"],
        "decoder.net.0.bias": decoder.children["net"].children["0"].params["bias"],
    }
    return G, expected


def mini_snapshot(seed=0):
    G, expected = mini_generator(seed)
    G_ema, _ = mini_generator(seed)
    D = FakeModule("DualDiscriminator", module_src="# dual_discriminator.py\n",
                   buffers=dict(resample_filter=torch.ones(4, 4)),
                   children=dict(b256=FakeModule("DiscriminatorBlock", module_src="# networks_stylegan2.py\nimport torch\n",
                                                 params=dict(weight=torch.randn(3, 3)))))
    augment = FakeModule("AugmentPipe", module_src="# augment.py\n", attrs=dict(xflip=0.0, rotate90=1.0),
                         buffers=dict(p=torch.zeros([]), Hz_geom=torch.randn(12)))
    snap = dict(training_set_kwargs=dict(class_name="training.dataset.ImageFolderDataset", path="ffhq.zip",
                                         use_labels=True, max_size=None, xflip=False, resolution=512, random_seed=0),
                G=G, D=D, G_ema=G_ema, augment_pipe=augment)
    return snap, expected


class Call:
    """Pickles as func(*args) [+ BUILD(state)]; the function is referenced by name only."""

    def __init__(self, func, args, state=None):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


def legacy_blob(storage_type="FloatStorage", data=b"\0" * 8, numel=2, *, location="cuda:0", key="140233405370624",
                pid_len=6, view=None, magic=MAGIC, version=1001, little_endian=True, keys=None, count=None,
                extra=b"", storage_class=None, roots=1):
    """A legacy torch.save of one storage, laid out as torch 1.11 wrote it (docs/eg3d.md 6.4)."""
    out = io.BytesIO()
    for obj in (magic, version, dict(protocol_version=1001, little_endian=little_endian,
                                     type_sizes=dict(short=2, int=4, long=8))):
        pickle.dump(obj, out, protocol=2)
    cls = storage_class if storage_class is not None else getattr(torch, storage_type)
    pid = ("storage", cls, key, location, numel, view)[:pid_len]
    sentinel = object()

    class P(pickle.Pickler):
        def persistent_id(self, obj):
            return pid if obj is sentinel else None

    P(out, protocol=2).dump(sentinel if roots == 1 else [sentinel] * roots)
    pickle.dump([key] if keys is None else keys, out, protocol=2)
    out.write(struct.pack("<q", numel if count is None else count) + data + extra)
    return out.getvalue()


def tensor_call(blob, offset, size, stride, *more, state=None):
    return Call(torch._utils._rebuild_tensor_v2,
                (Call(torch.storage._load_from_bytes, (blob,)), offset, size, stride, False, OrderedDict(), *more),
                state)


def load(obj, protocol=4):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TypedStorage deprecation warnings from torch's own reducers
        data = pickle.dumps(obj, protocol=protocol)
    return ep.load_pickle(io.BytesIO(data))


def globals_in(data: bytes):
    found, strings = [], []
    for op, arg, _ in pickletools.genops(data):
        if op.name == "GLOBAL":
            found.append(tuple(arg.split(" ", 1)))
        elif op.name == "STACK_GLOBAL":
            found.append(tuple(strings[-2:]))
        if isinstance(arg, str):
            strings.append(arg)
    return found


# ------------------------------------------------------------------------------------------------
# Reading well-formed snapshots


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("layout", ["torch1.11", "torch2"])
@pytest.mark.parametrize("numpy_module", ["numpy.core.multiarray", "numpy._core.multiarray"])
def test_snapshot_round_trip(tmp_path, protocol, layout, numpy_module):
    snap, expected = mini_snapshot()
    path = tmp_path / "network-snapshot-000000.pkl"
    write_snapshot(path, snap, protocol=protocol, layout=layout, numpy_module=numpy_module)
    data = path.read_bytes()
    assert ("torch_utils.persistence", "_reconstruct_persistent_obj") in globals_in(data)
    assert (numpy_module, "scalar") in globals_in(data)

    out = ep.read_snapshot(path)
    assert list(out) == ["training_set_kwargs", "G", "D", "G_ema", "augment_pipe"]
    assert out["training_set_kwargs"] == snap["training_set_kwargs"]
    for key in ("G", "G_ema"):
        tensors = ep.module_tensors(out[key])
        assert list(tensors) == list(expected)
        for name, ref in expected.items():
            got = tensors[name]
            assert got.dtype == ref.dtype and got.shape == ref.shape and got.device.type == "cpu", name
            assert torch.equal(got, ref), name
            assert got.is_contiguous() and not got.requires_grad and type(got) is torch.Tensor
    assert set(ep.module_tensors(out["D"])) == {"resample_filter", "b256.weight"}
    assert set(ep.module_tensors(out["augment_pipe"])) == {"p", "Hz_geom"}


def test_records_attributes_and_helpers():
    snap, _ = mini_snapshot()
    G = ep.read_snapshot(io.BytesIO(dumps_snapshot(snap)), keys=["G_ema"])["G_ema"]
    assert isinstance(G, ep.PersistentRecord) and G.class_name == "TriPlaneGenerator"
    assert G.module_src == "# triplane.py\n"
    assert G.module_src_sha256 == hashlib.sha256(b"# triplane.py\n").hexdigest()
    assert G.state["neural_rendering_resolution"] == 64
    assert G.state["rendering_kwargs"]["avg_camera_pivot"] == [0, 0, 0.2]
    assert G.init_args == () and G.init_kwargs["z_dim"] == 512
    mk = G.state["mapping_kwargs"]
    assert isinstance(mk, ep.EasyDict) and isinstance(mk, dict) and mk.num_layers == 2

    backbone = ep.find_module(G, "backbone")
    assert backbone.init_args == (512, 25, 512)
    assert backbone.init_kwargs["mapping_kwargs"] == {"num_layers": 2}
    layer = ep.find_module(G, "backbone.synthesis.b4.conv1")
    assert layer.class_name == "SynthesisLayer"
    act_gain = layer.state["act_gain"]
    assert type(act_gain) is float and act_gain == float(np.float64(np.sqrt(2)))
    assert ep.find_module(G, "") is G

    renderer = ep.find_module(G, "renderer")
    assert isinstance(renderer, ep.ObjectRecord)
    assert renderer.qualified_name == "training.volumetric_rendering.renderer.ImportanceRenderer"
    assert torch.equal(renderer.state["plane_axes"], torch.tensor([[[1., 0, 0], [0, 1, 0], [0, 0, 1]]] * 3))
    assert ep.find_module(G, "decoder.net.1").state["beta"] == 1
    assert ep.find_module(G, "ray_sampler").state["depths"] is None
    names = [name for name, _ in ep.iter_modules(G)]
    assert names[:3] == ["", "backbone", "backbone.synthesis"] and "decoder.net.0" in names

    with pytest.raises(KeyError, match="'nope'.*'synthesis'"):
        ep.find_module(G, "backbone.nope")
    with pytest.raises(KeyError, match="superresolution"):  # a None child is not a module
        ep.find_module(G, "superresolution")
    # Non-persistent buffers are left out, like state_dict() does.
    assert "scratch" not in ep.module_tensors(G) and "scratch" in G.state["_buffers"]
    assert set(ep.module_tensors(layer, prefix="x")) == {
        "x.weight", "x.noise_strength", "x.bias", "x.resample_filter", "x.noise_const", "x.affine.weight", "x.affine.bias"}
    with pytest.raises(TypeError, match="record"):
        ep.module_tensors({"a": 1})


def test_shared_module_source_is_memoized():
    snap, _ = mini_snapshot()
    data = dumps_snapshot(snap)
    assert data.count(b"# networks_stylegan2.py") == 1  # one copy of each source, like the official files
    out = ep.read_snapshot(io.BytesIO(data))
    a = ep.find_module(out["G"], "backbone.synthesis.b4.conv1")
    b = ep.find_module(out["D"], "b256")
    assert a.module_src_sha256 == b.module_src_sha256


def test_real_torch_modules_match_state_dict():
    # Sequential and Softplus pickled by torch 2.13 itself (dict-based _parameters, torch 2 hook keys).
    seq = torch.nn.Sequential(torch.nn.Softplus(beta=2), torch.nn.Sequential(torch.nn.Softplus()))
    seq.register_parameter("w", torch.nn.Parameter(torch.randn(3, 2)))
    seq.register_buffer("b", torch.arange(5))
    seq.register_buffer("tmp", torch.ones(2), persistent=False)
    seq[1].register_parameter("v", torch.nn.Parameter(torch.randn(4).to(torch.float64), requires_grad=False))
    rec = load(seq)
    assert rec.qualified_name == "torch.nn.modules.container.Sequential"
    ours = ep.module_tensors(rec)
    theirs = seq.state_dict()
    assert list(ours) == list(theirs)
    for k in theirs:
        assert torch.equal(ours[k], theirs[k]) and ours[k].dtype == theirs[k].dtype
    assert ep.find_module(rec, "0").state["beta"] == 2


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64,
                                   torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool])
def test_tensor_dtypes_bit_exact(dtype):
    g = torch.Generator().manual_seed(1)
    bits = torch.randint(0, 256, (7 * 8,), dtype=torch.uint8, generator=g)
    if dtype == torch.bool:
        t = bits[:7] % 2 == 1
    else:
        t = bits[: 7 * torch.empty((), dtype=dtype).element_size()].view(dtype)  # NaN payloads included
    got = load({"t": t, "p": torch.nn.Parameter(t.clone(), requires_grad=False)})
    for v in got.values():
        assert v.dtype == dtype and torch.equal(v.view(torch.uint8), t.view(torch.uint8))


def test_tensor_views_and_shapes():
    base = torch.arange(24, dtype=torch.float32)
    cases = {
        "slice": base[5:9],
        "transposed": base.reshape(4, 6).t(),
        "strided": base.reshape(4, 6)[::2, 1::3],
        "expanded": torch.tensor([3.0]).expand(5, 4),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
        "neg_view": torch._neg_view(base[:4]),  # torch 2.x adds a 7th metadata argument
    }
    got = load(cases)
    for name, ref in cases.items():
        ref = ref.resolve_neg()
        assert got[name].shape == ref.shape and got[name].is_contiguous(), name
        assert torch.equal(got[name], ref), name


def test_parameter_with_state():
    p = torch.nn.Parameter(torch.ones(3))
    p.note = "hello"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = pickle.dumps(p)
    assert ("torch._utils", "_rebuild_parameter_with_state") in globals_in(data)
    got = ep.load_pickle(io.BytesIO(data))
    assert type(got) is torch.Tensor and torch.equal(got, torch.ones(3))


def test_torch_2_13_storage_blob_layout_parses():
    # What this torch writes for a storage: check it has the fields the parser expects, then parse it.
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(torch.arange(5, dtype=torch.int16).storage(), buf, _use_new_zipfile_serialization=False)
    blob = buf.getvalue()
    assert pickle.loads(blob) == MAGIC
    storage = ep._parse_storage_blob(blob, "test")
    assert torch.equal(storage.flat, torch.arange(5, dtype=torch.int16))


@pytest.mark.parametrize("pid_len", [5, 6])
def test_torch_1_11_storage_blob_layout(pid_len):
    values = torch.tensor([1.5, -2.0, 3.25], dtype=torch.float32)
    blob = legacy_blob("FloatStorage", values.numpy().tobytes(), 3, location="cuda:0", pid_len=pid_len)
    got = load({"x": tensor_call(blob, 0, (3,), (1,)), "y": tensor_call(blob, 1, (2,), (1,))})
    assert torch.equal(got["x"], values) and torch.equal(got["y"], values[1:])
    blob = legacy_blob("HalfStorage", torch.tensor([1.0, 0.5], dtype=torch.float16).numpy().tobytes(), 2)
    assert torch.equal(load(tensor_call(blob, 0, (2,), (1,))), torch.tensor([1.0, 0.5], dtype=torch.float16))


@pytest.mark.parametrize("numpy_module", ["numpy.core.multiarray", "numpy._core.multiarray"])
def test_numpy_scalars_become_python_numbers(numpy_module):
    values = dict(f8=np.float64(0.1), f4=np.float32(1.25), f2=np.float16(-2), i8=np.int64(-7), u1=np.uint8(200),
                  b=np.bool_(True))
    got = ep.load_pickle(io.BytesIO(dumps_snapshot(values, numpy_module=numpy_module)))
    assert got == {k: v.item() for k, v in values.items()}
    assert [type(v) for v in got.values()] == [float, float, float, int, int, bool]


def test_file_object_and_keys(tmp_path):
    snap, _ = mini_snapshot()
    data = dumps_snapshot(snap)
    out = ep.read_snapshot(io.BytesIO(data), keys=["G_ema", "training_set_kwargs"])
    assert list(out) == ["G_ema", "training_set_kwargs"]
    path = tmp_path / "snap.pkl"
    path.write_bytes(data)
    with open(path, "rb") as f:
        assert ep.read_snapshot(f, keys="augment_pipe")["augment_pipe"].class_name == "AugmentPipe"
    with pytest.raises(KeyError) as e:
        ep.read_snapshot(path, keys=["G_ema", "G_avg"])
    msg = str(e.value)
    assert "G_avg" in msg and str(path) in msg and "'G_ema', 'augment_pipe'" in msg
    with pytest.raises(TypeError, match="source"):
        ep.read_snapshot(12345)


# ------------------------------------------------------------------------------------------------
# Security: nothing from the pickle is imported or run


DANGEROUS = [("os", "system"), ("posix", "system"), ("nt", "system"), ("builtins", "eval"), ("builtins", "exec"),
             ("__builtin__", "eval"), ("subprocess", "Popen"), ("subprocess", "check_output"),
             ("builtins", "getattr"), ("builtins", "__import__"), ("importlib", "import_module"), ("torch", "load"),
             ("torch.serialization", "load"), ("pickle", "loads"), ("builtins", "open"), ("shutil", "rmtree"),
             ("torch_utils.persistence", "_src_to_module"), ("copyreg", "_reconstructor"),
             ("torch._utils", "_rebuild_device_tensor_from_cpu_tensor"), ("torch._tensor", "_rebuild_from_type_v2"),
             ("numpy", "load"), ("dnnlib.util", "call_func_by_name")]


@pytest.mark.parametrize("module,name", DANGEROUS)
@pytest.mark.parametrize("protocol", [2, 4])
def test_dangerous_globals_are_refused(tmp_path, module, name, protocol):
    marker = tmp_path / "pwned"
    data = call_pickle(module, name, f"touch {marker}", protocol=protocol)
    assert (module, name) in globals_in(data)  # the payload really references it
    path = tmp_path / "evil.pkl"
    path.write_bytes(data)
    with pytest.raises(UnsafePickleError, match=f"{module}.{name}") as e:
        ep.read_snapshot(path)
    assert str(path) in str(e.value)
    assert isinstance(e.value, pickle.UnpicklingError) and isinstance(e.value, Eg3dPickleError)
    assert not marker.exists()


@pytest.mark.parametrize("array", [np.broadcast_to(np.asarray(36), [2]), np.asarray([[1.5, 2.0], [3.0, 4.0]], order="F"),
                                   np.arange(6, dtype=np.uint8).reshape(2, 3)], ids=["broadcast", "fortran", "uint8"])
@pytest.mark.parametrize("protocol", [2, 4])
def test_small_numpy_arrays_are_read_as_arrays(array, protocol):
    # StyleGAN3's layers keep their sizes and sampling rates as numpy arrays.
    got = ep.load_pickle(io.BytesIO(pickle.dumps({"size": array}, protocol=protocol)))["size"]
    assert isinstance(got, np.ndarray) and got.dtype == array.dtype and np.array_equal(got, array)


@pytest.mark.parametrize("payload,match", [
    (lambda: np.asarray([1, "a"], dtype=object), "dtype 'O8' is not allowed"),
    (lambda: np.zeros(1 << 17, dtype=np.uint8), "at most 65536 elements"),
    (lambda: np.rec.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f4")]), "refusing global"),
])
def test_numpy_arrays_of_other_kinds_are_refused(payload, match):
    with pytest.raises(Eg3dPickleError, match=match):
        ep.load_pickle(io.BytesIO(pickle.dumps(payload(), protocol=4)))


def test_numpy_reconstruct_of_anything_but_an_ndarray_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    data = call_pickle("numpy.core.multiarray", "_reconstruct", f"touch {marker}", 0, b"b")
    with pytest.raises(Eg3dPickleError, match="_reconstruct only of a plain ndarray"):
        ep.load_pickle(io.BytesIO(data))
    assert not marker.exists()


def test_unknown_module_is_never_imported(tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "evilmod_eg3d_test.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef f(*a): pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    data = call_pickle("evilmod_eg3d_test", "f", "x")
    with pytest.raises(UnsafePickleError, match="evilmod_eg3d_test.f"):
        ep.load_pickle(io.BytesIO(data))
    assert not marker.exists() and "evilmod_eg3d_test" not in sys.modules


def test_dangerous_global_deep_inside_a_snapshot(tmp_path):
    marker = tmp_path / "pwned"
    snap, _ = mini_snapshot()
    snap["G_ema"].children["backbone"].attrs["hook"] = Call(os.system, (f"touch {marker}",))
    with pytest.raises(UnsafePickleError, match="system"):
        ep.read_snapshot(io.BytesIO(dumps_snapshot(snap)))
    assert not marker.exists()


def test_persistent_module_source_is_never_executed(tmp_path):
    marker = tmp_path / "executed"
    src = f"open({str(marker)!r}, 'w').write('pwned')\nimport os\nos.system('touch {marker}')\nclass TriPlaneGenerator: pass\n"
    snap = dict(G_ema=FakeModule("TriPlaneGenerator", module_src=src, params=dict(w=torch.ones(2))))
    out = ep.read_snapshot(io.BytesIO(dumps_snapshot(snap)))
    assert not marker.exists()
    rec = out["G_ema"]
    assert rec.module_src == src and rec.module_src_sha256 == hashlib.sha256(src.encode()).hexdigest()
    assert torch.equal(ep.module_tensors(rec)["w"], torch.ones(2))


def test_unlisted_non_persistent_class_is_refused():
    snap = dict(G=FakeModule("TriPlaneGenerator", children=dict(
        evil=FakeModule("training.networks_stylegan2.Evil", persistent=False))))
    with pytest.raises(UnsafePickleError, match="training.networks_stylegan2.Evil"):
        ep.read_snapshot(io.BytesIO(dumps_snapshot(snap)))


def test_dangerous_global_inside_a_storage_blob(tmp_path):
    marker = tmp_path / "pwned"
    blob = legacy_blob(storage_class=os.system)
    with pytest.raises(UnsafePickleError, match="system"):
        load(tensor_call(blob, 0, (2,), (1,)))
    blob = legacy_blob(storage_class=torch.UntypedStorage)  # not a typed storage: refused too
    with pytest.raises(UnsafePickleError, match="UntypedStorage"):
        load(tensor_call(blob, 0, (2,), (1,)))
    evil = call_pickle("os", "system", f"touch {marker}")
    with pytest.raises(UnsafePickleError, match="os.system"):
        load(Call(torch.storage._load_from_bytes, (evil,)))
    assert not marker.exists()


@pytest.mark.parametrize("dtype", [np.dtype("O"), np.dtype("U3"), np.dtype("V8"), np.dtype([("a", "<f4")]),
                                   np.dtype("c16"), np.dtype("M8[s]")])
def test_numpy_scalar_with_a_non_numeric_dtype_is_refused(dtype):
    scalar = np.float64(0).__reduce__()[0]
    with pytest.raises(Eg3dPickleError, match="numpy dtype"):
        load(Call(scalar, (dtype, b"\0" * max(dtype.itemsize, 1))))


def test_numpy_scalar_bad_payload():
    scalar = np.float64(0).__reduce__()[0]
    with pytest.raises(Eg3dPickleError, match="bytes"):
        load(Call(scalar, (np.dtype("f8"), b"\0" * 3)))
    with pytest.raises(Eg3dPickleError):
        load(Call(scalar, (np.dtype("f8"), "not bytes")))


BLOB = legacy_blob("FloatStorage", np.arange(6, dtype="<f4").tobytes(), 6)


@pytest.mark.parametrize("offset,size,stride", [
    (5, (4,), (1,)),           # runs past the end
    (0, (7,), (1,)),           # larger than the storage
    (0, (2, 3), (4, 1)),       # stride too large
    (6, (1,), (1,)),           # offset at the end
    (7, (0,), (1,)),           # empty view, offset past the end
    (0, (3,), (-1,)),          # negative stride
    (-1, (2,), (1,)),          # negative offset
    (0, (-2,), (1,)),          # negative size
    (0, (2, 2), (1,)),         # size and stride lengths differ
    (0, (True,), (1,)),        # bools are not sizes
    (0, (1 << 40,), (0,)),     # stride-0 view asking for a huge allocation
    (0, "abc", (1,)),
    (0.5, (1,), (1,)),
])
def test_out_of_bounds_or_malformed_views_are_refused(offset, size, stride):
    with pytest.raises(Eg3dPickleError, match="tensor"):
        load(tensor_call(BLOB, offset, size, stride))


@pytest.mark.parametrize("kwargs,match", [
    (dict(magic=1234), "magic"),
    (dict(version=1000), "protocol version"),
    (dict(little_endian=False), "little-endian"),
    (dict(count=5), "expected 6"),
    (dict(extra=b"\0\0\0\0"), "data bytes"),
    (dict(numel=7), "data bytes"),
    (dict(keys=["other"]), "key list"),
    (dict(keys=["140233405370624", "x"]), "key list"),
    (dict(view=("k", 0, 24)), "view"),
    (dict(pid_len=4), "storage id"),
    (dict(roots=2), "exactly one storage"),
    (dict(numel=-1, count=6), "storage id"),
])
def test_malformed_storage_blobs(kwargs, match):
    args = dict(storage_type="FloatStorage", data=np.arange(6, dtype="<f4").tobytes(), numel=6)
    args.update(kwargs)
    blob = legacy_blob(**args)
    with pytest.raises(Eg3dPickleError, match=match):
        load(tensor_call(blob, 0, (6,), (1,)))


def test_storage_blob_truncated_and_bad_bool():
    for cut in (0, 5, 30, len(BLOB) - 30, len(BLOB) - 1):
        with pytest.raises(Eg3dPickleError):
            load(tensor_call(BLOB[:cut], 0, (1,), (1,)))
    blob = legacy_blob("BoolStorage", b"\x01\x02", 2)
    with pytest.raises(Eg3dPickleError, match="bool"):
        load(tensor_call(blob, 0, (2,), (1,)))
    with pytest.raises(Eg3dPickleError, match="storage"):
        load(Call(torch._utils._rebuild_tensor_v2, ("not a storage", 0, (1,), (1,), False, OrderedDict())))


def test_build_on_a_tensor_is_refused():
    # A BUILD opcode on a tensor would call torch.Tensor.__setstate__ (set_) with crafted arguments.
    with pytest.raises(Eg3dPickleError, match="BUILD"):
        load(tensor_call(BLOB, 0, (6,), (1,), state=(1, 0, (100,), (1,))))
    with pytest.raises(Eg3dPickleError, match="BUILD"):
        load(Call(torch._utils._rebuild_parameter, (tensor_call(BLOB, 0, (6,), (1,)), False, OrderedDict()), {"a": 1}))
    # Nor on anything else but the stub records and numpy dtypes: not on containers, not on the
    # replacement functions themselves (the default BUILD would write into their __dict__).
    with pytest.raises(Eg3dPickleError, match="BUILD opcode on a OrderedDict"):
        load(Call(OrderedDict, (), {"x": 1}))
    with pytest.raises(Eg3dPickleError, match="BUILD opcode on a EasyDict"):
        ep.load_pickle(io.BytesIO(dumps_snapshot({"k": Call(EasyDict, (), {"x": 1})})))
    with pytest.raises(Eg3dPickleError, match="BUILD opcode on a set"):
        load(Call(set, ([1],), {"x": 1}))
    with pytest.raises(Eg3dPickleError, match="BUILD"):
        load(Call(torch.storage._load_from_bytes, (BLOB,), {"x": 1}))


def test_object_record_state_is_set_once():
    dec = FakeModule("training.triplane.OSGDecoder", persistent=False)
    data = dumps_snapshot({"d": dec})
    # Duplicate the BUILD: NEWOBJ ... BUILD becomes NEWOBJ ... BUILD, EMPTY_DICT, BUILD.
    ops = [(op.name, pos) for op, _, pos in pickletools.genops(data)]
    build_pos = [pos for name, pos in ops if name == "BUILD"][-1]
    twice = data[:build_pos + 1] + b"}b" + data[build_pos + 1:]
    with pytest.raises(Eg3dPickleError, match="state set twice"):
        ep.load_pickle(io.BytesIO(twice))


def test_records_can_be_deep_copied():
    import copy

    snap, expected = mini_snapshot()
    G = ep.read_snapshot(io.BytesIO(dumps_snapshot(snap)))["G_ema"]
    G2 = copy.deepcopy(G)
    assert G2 is not G and G2.class_name == G.class_name
    assert ep.find_module(G2, "renderer").qualified_name.endswith("ImportanceRenderer")
    assert list(ep.module_tensors(G2)) == list(expected)


def test_tensor_metadata_other_than_neg_is_refused():
    with pytest.raises(Eg3dPickleError, match="metadata"):
        load(tensor_call(BLOB, 0, (6,), (1,), {"conj": True}))
    with pytest.raises(Eg3dPickleError, match="metadata"):
        load(tensor_call(BLOB, 0, (6,), (1,), {"evil": True}))


@pytest.mark.parametrize("meta,match", [
    (dict(type="class", version=5, module_src="", class_name="X", state={}), "version"),
    (dict(type="function", version=6, module_src="", class_name="X", state={}), "type"),
    (dict(type="class", version=6, class_name="X", state={}), "module_src"),
    (dict(type="class", version=6, module_src="", class_name="X", state=[1]), "state"),
    ("not a dict", "meta"),
])
def test_malformed_persistent_meta(meta, match):
    with pytest.raises(Eg3dPickleError, match=match):
        ep.read_snapshot(io.BytesIO(dumps_snapshot({"G": PersistentCall(meta)})))


# ------------------------------------------------------------------------------------------------
# Damaged files


@pytest.fixture(scope="module")
def snapshot_bytes():
    snap, _ = mini_snapshot()
    return dumps_snapshot(snap)


def test_truncated_files(tmp_path, snapshot_bytes):
    n = len(snapshot_bytes)
    cuts = sorted({1, 2, 3, 10, 100, n // 3, n // 2, n - 100, n - 2, n - 1} | set(range(0, n, max(1, n // 60))))
    path = tmp_path / "cut.pkl"
    for cut in cuts:
        path.write_bytes(snapshot_bytes[:cut])
        with pytest.raises(Eg3dPickleError, match=str(path)):
            ep.read_snapshot(path)


@pytest.mark.parametrize("seed", range(12))
def test_random_bytes(tmp_path, seed):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=int(rng.integers(1, 4000)), dtype=np.uint8).tobytes()
    if seed % 2:
        data = b"\x80\x04" + data  # looks like a protocol 4 pickle
    path = tmp_path / "random.pkl"
    path.write_bytes(data)
    with pytest.raises(Eg3dPickleError, match=str(path)):
        ep.read_snapshot(path)


def test_flipped_bytes_never_crash(snapshot_bytes):
    rng = np.random.default_rng(0)
    for _ in range(60):
        data = bytearray(snapshot_bytes)
        for pos in rng.integers(0, len(data), size=3):
            data[pos] ^= int(rng.integers(1, 256))
        try:
            ep.read_snapshot(io.BytesIO(bytes(data)))
        except Eg3dPickleError:
            pass  # a flip inside raw tensor bytes can leave a valid file; anything else must be this error
        except KeyError:
            pytest.fail("KeyError leaked from the loader")


def test_empty_file_and_other_top_levels(tmp_path):
    path = tmp_path / "empty.pkl"
    path.write_bytes(b"")
    with pytest.raises(Eg3dPickleError, match="empty.pkl"):
        ep.read_snapshot(path)
    path.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(Eg3dPickleError, match="list, not a dict"):
        ep.read_snapshot(path)
    path.write_bytes(b"this is not a pickle at all\n")
    with pytest.raises(Eg3dPickleError):
        ep.read_snapshot(path)
    path.write_bytes(pickle.dumps({"G": None}) + b"garbage")
    with pytest.raises(Eg3dPickleError, match="after the end"):
        ep.read_snapshot(path)


def test_deep_nesting_is_an_error_not_a_crash():
    depth = 100_000
    data = b"\x80\x04" + b"]" * depth + b"a" * (depth - 1) + b"."
    with pytest.raises(Eg3dPickleError):
        ep.load_pickle(io.BytesIO(data))


def test_persistent_id_in_main_stream_is_refused():
    class P(pickle.Pickler):
        def persistent_id(self, obj):
            return "x" if obj == "sentinel" else None

    buf = io.BytesIO()
    P(buf, protocol=4).dump({"G": "sentinel"})
    with pytest.raises(Eg3dPickleError, match="persistent id"):
        ep.load_pickle(io.BytesIO(buf.getvalue()))


def test_huge_lengths_and_memo_indices_fail_fast(tmp_path):
    path = tmp_path / "huge.pkl"
    for data in (b"\x80\x04\x8e" + struct.pack("<Q", 2 ** 62) + b"xx.",  # BINBYTES8 of 4 EiB
                 b"\x80\x04B" + struct.pack("<I", 2 ** 32 - 1) + b"xx.",  # BINBYTES of 4 GiB
                 b"\x80\x04\x95" + struct.pack("<Q", 2 ** 40) + b"N."):  # a 1 TiB frame
        path.write_bytes(data)
        with pytest.raises(Eg3dPickleError, match="huge.pkl"):
            ep.read_snapshot(path)
    # A large memo index: the C unpickler would allocate and zero a 50M-entry array for it.
    path.write_bytes(b"\x80\x04N" + b"r" + struct.pack("<I", 50_000_000) + b".")
    with pytest.raises(Eg3dPickleError, match="NoneType, not a dict"):
        ep.read_snapshot(path)
