"""The paper's ST3 backbone: StyleGAN3's synthesis network (networks.stylegan3), which the
student uses with backbone='stylegan3' (presets 'tiny-st3', 'eg3d-512-st3'), and
load_synthesis: the synthesis weights of an official StyleGAN3 pickle, read without running it."""
from __future__ import annotations

import inspect
import os
from typing import BinaryIO, Union

from .. import network_pickle
from ..formats import ModelFileError, load_state
from ..networks.stylegan3 import LayerSpec, SynthesisInput, SynthesisLayer, SynthesisNetwork, layer_schedule

__all__ = ["SynthesisNetwork", "SynthesisLayer", "SynthesisInput", "LayerSpec", "layer_schedule",
           "load_synthesis", "StyleGAN3FormatError"]

POSITIONAL = ("w_dim", "img_resolution", "img_channels")
# Keywords our SynthesisNetwork understands: its own and those it passes to every layer.
NETWORK_KWARGS = set(inspect.signature(SynthesisNetwork).parameters) - {"layer_kwargs"}
LAYER_KWARGS = {"conv_kernel", "filter_size", "lrelu_upsampling", "use_radial_filters", "conv_clamp",
                "magnitude_ema_beta"}
BUILD_ERRORS = (TypeError, ValueError, RuntimeError, ArithmeticError)


class StyleGAN3FormatError(ModelFileError):
    """The pickle is readable but is not an official StyleGAN3 generator we can rebuild."""


def load_synthesis(source: Union[str, os.PathLike, BinaryIO], key: str = "G_ema") -> SynthesisNetwork:
    """The synthesis network of an official StyleGAN3 snapshot (entry `key`), with its weights,
    filters and magnitude EMAs, in eval mode. The pickle is read by network_pickle's allow-list
    unpickler: its embedded source is never run."""
    where = f"{network_pickle._source_name(source)}['{key}']"
    generator = network_pickle.read_snapshot(source, keys=[key])[key]
    if not isinstance(generator, network_pickle.PersistentRecord) or generator.class_name != "Generator":
        found = getattr(generator, "type_name", type(generator).__name__)
        raise StyleGAN3FormatError(f"{where} is a {found}, not a StyleGAN3 Generator")
    try:
        record = network_pickle.find_module(generator, "synthesis")
    except KeyError as e:
        raise StyleGAN3FormatError(f"{where}: {e.args[0]}") from None
    # StyleGAN2's synthesis has the same class name: its arguments and tensors then do not match.
    if not isinstance(record, network_pickle.PersistentRecord) or record.class_name != "SynthesisNetwork":
        raise StyleGAN3FormatError(f"{where}.synthesis is not a StyleGAN3 SynthesisNetwork")
    kwargs = dict(record.init_kwargs)
    if len(record.init_args) > len(POSITIONAL):
        raise StyleGAN3FormatError(f"{where}.synthesis: {len(record.init_args)} positional arguments")
    kwargs.update(zip(POSITIONAL, record.init_args))
    unknown = sorted(set(kwargs) - NETWORK_KWARGS - LAYER_KWARGS)
    if unknown:
        raise StyleGAN3FormatError(f"{where}.synthesis: constructor arguments not understood: {', '.join(unknown)}")
    try:
        net = SynthesisNetwork(**kwargs)
    except BUILD_ERRORS as e:
        raise StyleGAN3FormatError(f"{where}.synthesis: cannot rebuild it from its arguments: {e}") from e
    load_state(net, network_pickle.module_tensors(record), f"{where}.synthesis", StyleGAN3FormatError)
    return net.eval()
