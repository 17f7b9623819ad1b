"""teacher.load / save / convert: official EG3D pickles (read without running their code)
and our .safetensors format (the weights plus the config as JSON metadata)."""
from __future__ import annotations

import os
import warnings
from typing import BinaryIO, Union

import torch

from .. import network_pickle
from .generator import TriPlaneGenerator
from ..formats import ModelFileError, load_state, read_model_file, write_model_file

__all__ = ["load", "save", "convert", "from_snapshot_record", "TeacherFormatError"]

Source = Union[str, os.PathLike, BinaryIO]
FORMAT = "nerfgan_distill.teacher"
FORMAT_VERSION = "1"

# sha256 of the official module sources at NVlabs/eg3d 7cf1fd1, as the pickles embed them
# (inspect.getsource: the file text, with a final newline added where the file lacks one).
KNOWN_SOURCES = {
    "8cfd3ad210f060f74fed85f483d16289086ec29af52ffb12cb40a0fdde24a024": "training/triplane.py",
    "820c206d1ee00189fc493e15979aab19aec35876053cbfb3c743a129e4d4160a": "training/networks_stylegan2.py",
    "59b91db53b335e3e500d4a8821bcad4663ece36b85df276f73ad0b7539179724": "training/superresolution.py",
}
# The constructor keywords of EG3D's TriPlaneGenerator and the backbone ones it passes on
# that we rebuild; anything else in a pickle is a layout we do not know.
GENERATOR_KWARGS = {"z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "sr_num_fp16_res",
                    "mapping_kwargs", "rendering_kwargs", "sr_kwargs", "plane_resolution", "plane_channels"}
BACKBONE_KWARGS = {"channel_base", "channel_max", "num_fp16_res", "conv_clamp", "fused_modconv_default"}
POSITIONAL = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")
# Attributes a record and our rebuilt module must agree on (the layout checksum).
CHECKED_ATTRIBUTES = ("z_dim", "c_dim", "w_dim", "num_ws", "num_layers", "in_channels", "out_channels", "resolution",
                      "up", "padding", "activation", "use_noise", "conv_clamp", "use_fp16", "channels_last",
                      "is_last", "architecture", "img_channels", "input_resolution", "sr_antialias",
                      "in_features", "out_features", "weight_gain", "bias_gain", "act_gain", "beta", "threshold")
# Errors a constructor raises for impossible sizes (negative, zero, wrong types).
BUILD_ERRORS = (TypeError, ValueError, RuntimeError, ArithmeticError)
EG3D_PLANE_AXES = torch.tensor([[[1, 0, 0], [0, 1, 0], [0, 0, 1]],
                                [[1, 0, 0], [0, 0, 1], [0, 1, 0]],
                                [[0, 0, 1], [1, 0, 0], [0, 1, 0]]], dtype=torch.float32)
# EG3D's renderer and ray sampler are stateless modules; ours are functions (ops, rays).
STATELESS_PARTS = {"renderer", "renderer.ray_marcher", "ray_sampler"}
OPTIONAL_TENSORS = {"dataset_label_std"}  # added by the training loop; absent from other checkpoints


class TeacherFormatError(ModelFileError):
    """The file is readable but holds something we do not understand (the message says what)."""


def load(source: Source, device: Union[str, torch.device] = "cpu", key: str = "G_ema") -> TriPlaneGenerator:
    """A frozen TriPlaneGenerator (eval mode, no gradients) from an official EG3D network
    pickle (entry `key`: 'G_ema' or 'G') or our .safetensors file. Pickles are read with an
    allow-list of globals; their embedded source code is never run."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            return load(f, device, key)
    head = source.read(16)
    source.seek(-len(head), os.SEEK_CUR)
    kind = _sniff(head, network_pickle._source_name(source))
    if kind == "pickle":
        snapshot = network_pickle.read_snapshot(source, keys=[key])
        model = from_snapshot_record(snapshot[key], f"{network_pickle._source_name(source)}['{key}']")
    else:
        model = _from_safetensors(source)
    return model.to(device)


def save(model: TriPlaneGenerator, path: Union[str, os.PathLike]) -> None:
    """Write `model` as .safetensors: every state_dict tensor, and the constructor arguments,
    rendering_kwargs and neural rendering resolution as JSON metadata."""
    if not isinstance(model, TriPlaneGenerator):
        raise TypeError(f"save: model must be a TriPlaneGenerator, got {type(model).__name__}")
    config = {"init_kwargs": model.init_kwargs, "rendering_kwargs": model.rendering_kwargs,
              "neural_rendering_resolution": model.neural_rendering_resolution}
    write_model_file(path, FORMAT, FORMAT_VERSION, config, dict(model.state_dict()))


def convert(source: Source, destination: Union[str, os.PathLike], key: str = "G_ema") -> TriPlaneGenerator:
    """Official pickle (or our file) -> our .safetensors; returns the loaded model."""
    model = load(source, key=key)
    save(model, destination)
    return model


# --- pickles -------------------------------------------------------------------------------------

def from_snapshot_record(record, where: str = "G") -> TriPlaneGenerator:
    """Rebuild our generator from the record of an official TriPlaneGenerator."""
    if not isinstance(record, network_pickle.PersistentRecord) or record.class_name != "TriPlaneGenerator":
        found = getattr(record, "type_name", type(record).__name__)
        raise TeacherFormatError(f"{where} is a {found}, not an EG3D TriPlaneGenerator")
    _warn_unknown_sources(record, where)
    kwargs = _constructor_kwargs(record, where)
    state = record.state
    for name in ("rendering_kwargs", "neural_rendering_resolution"):
        if name not in state:
            raise TeacherFormatError(f"{where}: the generator has no attribute {name!r}")
    # The attribute is what forward uses (the constructor copy may be older): see eg3d.md 1.7.
    kwargs["rendering_kwargs"] = _plain(state["rendering_kwargs"])
    model = _build(kwargs, state["neural_rendering_resolution"], where)
    _check_layout(record, model, where)
    _check_plane_axes(record, where)
    _load_tensors(model, network_pickle.module_tensors(record), where)
    return model.eval().requires_grad_(False)


def _build(kwargs: dict, resolution, where: str) -> TriPlaneGenerator:
    """Our generator from a file's constructor arguments and rendering resolution."""
    unknown = sorted(set(kwargs) - GENERATOR_KWARGS - BACKBONE_KWARGS)
    if unknown:
        raise TeacherFormatError(f"{where}: constructor arguments not understood: {', '.join(unknown)}")
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise TeacherFormatError(f"{where}: neural_rendering_resolution must be an int >= 1, got {resolution!r}")
    try:
        model = TriPlaneGenerator(**kwargs)
    except BUILD_ERRORS as e:
        raise TeacherFormatError(f"{where}: cannot rebuild the generator from its arguments: {e}") from e
    model.neural_rendering_resolution = resolution
    return model


def _constructor_kwargs(record, where: str) -> dict:
    args, kwargs = record.init_args, _plain(record.init_kwargs)
    if len(args) > len(POSITIONAL):
        raise TeacherFormatError(f"{where}: {len(args)} positional constructor arguments, expected at most "
                                 f"{len(POSITIONAL)}")
    kwargs.update(zip(POSITIONAL, args))
    return kwargs


def _plain(value):
    """EasyDicts and tuples of the pickle as plain dicts and lists (JSON-able configs)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _warn_unknown_sources(record, where: str) -> None:
    for name, module in network_pickle.iter_modules(record):
        sha = getattr(module, "module_src_sha256", None)
        if sha is not None and sha not in KNOWN_SOURCES:
            warnings.warn(f"{where}: {name or '<root>'} ({module.class_name}) was pickled from source code that "
                          f"differs from NVlabs/eg3d 7cf1fd1 (sha256 {sha[:12]}); it is rebuilt from the official "
                          f"architecture, so changed behaviour in that code is not reproduced", stacklevel=3)
            return


def _check_layout(record, model: TriPlaneGenerator, where: str) -> None:
    ours = dict(model.named_modules())
    for name, module in network_pickle.iter_modules(record):
        if name in STATELESS_PARTS:
            continue
        if name not in ours:
            raise TeacherFormatError(f"{where}: sub-module {name!r} ({module.type_name}) is not part of the "
                                     f"architecture we rebuild")
        # The class (last component of a qualified name) must be the one we rebuild there.
        if module.type_name.rsplit(".", 1)[-1] != type(ours[name]).__name__:
            raise TeacherFormatError(f"{where}: {name or '<root>'} is a {module.type_name} in the pickle but a "
                                     f"{type(ours[name]).__name__} in the architecture we rebuild")
        for attribute in CHECKED_ATTRIBUTES:
            if attribute in module.state and hasattr(ours[name], attribute):
                theirs, mine = _plain(module.state[attribute]), getattr(ours[name], attribute)
                if isinstance(theirs, torch.Tensor) or (theirs != mine and not (isinstance(mine, float)
                                                                                and _close(theirs, mine))):
                    raise TeacherFormatError(f"{where}: {name or '<root>'}.{attribute} is {theirs!r} in the pickle "
                                             f"but {mine!r} in the architecture we rebuild")


def _close(a, b) -> bool:
    return isinstance(a, (int, float)) and abs(a - b) <= 1e-12 * max(1.0, abs(b))


def _check_plane_axes(record, where: str) -> None:
    try:
        axes = network_pickle.find_module(record, "renderer").state.get("plane_axes")
    except KeyError:
        return  # renderer not stored as a module: nothing to compare
    if axes is not None and not (isinstance(axes, torch.Tensor) and axes.shape == EG3D_PLANE_AXES.shape
                                 and torch.equal(axes.float(), EG3D_PLANE_AXES)):
        raise TeacherFormatError(f"{where}: renderer.plane_axes differs from EG3D's generate_planes(); "
                                 f"this generator uses a projection we do not implement")


def _load_tensors(model: torch.nn.Module, tensors: dict, where: str) -> None:
    load_state(model, tensors, where, TeacherFormatError, optional=OPTIONAL_TENSORS)


# --- our format --------------------------------------------------------------------------------

def _sniff(head: bytes, where: str) -> str:
    # safetensors first: its 8-byte header length may begin like a pickle (0x80, 2..5).
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    if head.startswith(b"PK"):
        raise TeacherFormatError(f"{where}: a zip archive (torch.save?) is not a format we load; give an EG3D "
                                 f"network pickle or a .safetensors file from `nerfgan-distill convert`")
    raise TeacherFormatError(f"{where}: neither an EG3D network pickle nor a nerfgan_distill .safetensors file")


def _from_safetensors(source) -> TriPlaneGenerator:
    where = network_pickle._source_name(source)
    try:
        file = read_model_file(source, expect=FORMAT, versions=(FORMAT_VERSION,))
    except TeacherFormatError:
        raise
    except ModelFileError as e:
        raise TeacherFormatError(str(e)) from e
    try:
        kwargs = dict(file.config["init_kwargs"])
        kwargs["rendering_kwargs"] = file.config["rendering_kwargs"]
        resolution = file.config["neural_rendering_resolution"]
    except (KeyError, TypeError, ValueError) as e:
        raise TeacherFormatError(f"{where}: the config metadata is malformed ({type(e).__name__}: {e})") from e
    model = _build(kwargs, resolution, where)
    _load_tensors(model, file.tensors, where)
    return model.eval().requires_grad_(False)
