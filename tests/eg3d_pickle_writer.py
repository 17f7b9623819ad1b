"""Write EG3D snapshots in the official pickle format, without the official code (a test helper).

The official training loop ``pickle.dump``s ``{'training_set_kwargs', 'G', 'D', 'G_ema', 'augment_pipe'}``
(docs/eg3d.md, 6.1-6.4). This writer reproduces the stream's shape:

* persistent modules reduce to ``torch_utils.persistence._reconstruct_persistent_obj(meta)`` with
  ``meta = {'type': 'class', 'version': 6, 'module_src', 'class_name', 'state'}`` and no BUILD;
* non-persistent modules are NEWOBJ of a global of the official module name, then BUILD of ``__dict__``
  (``torch.nn.modules.*`` names use the real torch classes);
* tensors and Parameters are real torch objects, pickled by torch's own reducers;
* :class:`EasyDict` pickles as ``dnnlib.util.EasyDict``; numpy scalars stay numpy scalars, under the
  numpy 1.x module name ``numpy.core.multiarray`` by default, as in the official files.

Pickle only emits a global after importing it, so the official module names are registered in
``sys.modules`` as small fake modules for the duration of the dump and removed afterwards.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import os
import pickle
import sys
import types
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import torch


class EasyDict(dict):
    """Emulates ``dnnlib.util.EasyDict``: a dict with attribute access, pickled under that name."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self[name] = value

    def __delattr__(self, name):
        del self[name]


EasyDict.__module__ = "dnnlib.util"


def _reconstruct_persistent_obj(meta):  # only its name goes into the pickle
    raise RuntimeError("the test writer's _reconstruct_persistent_obj is never meant to be called")


_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"


@dataclass(eq=False)
class FakeModule:
    """An ``nn.Module`` as the official pickle sees it.

    ``class_name`` is a bare name for persistent classes ('SynthesisLayer') and a qualified name for
    non-persistent ones ('training.triplane.OSGDecoder').
    """

    class_name: str
    persistent: bool = True
    module_src: str = "# source"
    init_args: tuple = ()
    init_kwargs: dict = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    buffers: dict = field(default_factory=dict)
    children: dict = field(default_factory=dict)
    non_persistent_buffers: set = field(default_factory=set)


class PersistentCall:
    """Pickles as ``_reconstruct_persistent_obj(meta)``, exactly like the official persistent
    ``Decorator.__reduce__`` (FakeModules use it; tests can pass a crafted ``meta``)."""

    def __init__(self, meta):
        self.meta = meta

    def __reduce__(self):
        return (_reconstruct_persistent_obj, (self.meta,), None)


_HOOKS = {
    # Hook dicts in a Module.__dict__, by torch version (docs/eg3d.md 6.3); torch 1.11 uses OrderedDicts.
    "torch1.11": ["_backward_hooks", "_is_full_backward_hook", "_forward_hooks", "_forward_pre_hooks",
                  "_state_dict_hooks", "_load_state_dict_pre_hooks"],
    "torch2": ["_backward_pre_hooks", "_backward_hooks", "_is_full_backward_hook", "_forward_hooks",
               "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks",
               "_forward_pre_hooks_with_kwargs", "_state_dict_hooks", "_state_dict_pre_hooks",
               "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks"],
}


class _Converter:
    """Turns FakeModules into objects that pickle like the official ones."""

    def __init__(self, layout: str):
        if layout not in _HOOKS:
            raise ValueError(f"layout must be one of {sorted(_HOOKS)}, got {layout!r}")
        self.layout = layout
        self.memo: dict[int, object] = {}
        self.sources: dict[str, str] = {}
        self.fake_modules: dict[str, dict] = {}  # module name -> {attribute: object}

    def value(self, v):
        if isinstance(v, FakeModule):
            return self.module(v)
        if isinstance(v, EasyDict):
            return EasyDict({k: self.value(x) for k, x in v.items()})
        if type(v) in (dict, OrderedDict):
            return type(v)((k, self.value(x)) for k, x in v.items())
        if type(v) in (list, tuple):
            return type(v)(self.value(x) for x in v)
        return v

    def module(self, fm: FakeModule):
        if id(fm) in self.memo:
            return self.memo[id(fm)]
        mapping = OrderedDict if self.layout == "torch1.11" else dict
        state = {"training": False}
        state["_parameters"] = mapping(
            (k, None if t is None else torch.nn.Parameter(t.detach(), requires_grad=False))
            for k, t in fm.params.items())
        state["_buffers"] = mapping((k, None if t is None else t.detach()) for k, t in fm.buffers.items())
        state["_non_persistent_buffers_set"] = set(fm.non_persistent_buffers)
        for hook in _HOOKS[self.layout]:
            state[hook] = None if hook == "_is_full_backward_hook" else OrderedDict()
        state["_modules"] = mapping((k, self.value(c)) for k, c in fm.children.items())
        state.update((k, self.value(v)) for k, v in fm.attrs.items())
        if fm.persistent:
            # The Decorator stores these after the original __init__, so they come last.
            state["_init_args"] = tuple(self.value(a) for a in fm.init_args)
            state["_init_kwargs"] = self.value(dict(fm.init_kwargs))
            src = self.sources.setdefault(fm.module_src, fm.module_src)  # one object: pickled once
            out = PersistentCall(dict(type="class", version=6, module_src=src,
                                          class_name=fm.class_name, state=state))
        else:
            out = self._instance(fm.class_name, state)
        self.memo[id(fm)] = out
        return out

    def _instance(self, qualified: str, state: dict):
        module_name, _, name = qualified.rpartition(".")
        if not module_name:
            raise ValueError(f"non-persistent FakeModule needs a qualified class name, got {qualified!r}")
        if module_name.startswith("torch."):
            cls = getattr(importlib.import_module(module_name), name)
        else:
            attrs = self.fake_modules.setdefault(module_name, {})
            if name not in attrs:
                attrs[name] = type(name, (), {"__module__": module_name, "__qualname__": name})
            cls = attrs[name]
        obj = cls.__new__(cls)
        obj.__dict__.update(state)  # pickles as NEWOBJ(cls) + BUILD(state)
        return obj


@contextlib.contextmanager
def _registered(modules: dict[str, dict]):
    """Put fake modules (and their missing parents) into sys.modules; restore everything after."""
    saved = {}
    try:
        for full_name, attrs in modules.items():
            parts = full_name.split(".")
            for i in range(1, len(parts) + 1):
                name = ".".join(parts[:i])
                if name in saved or (name in sys.modules and name != full_name):
                    continue
                saved[name] = sys.modules.get(name)
                sys.modules[name] = types.ModuleType(name)
            sys.modules[full_name].__dict__.update(attrs)
        yield
    finally:
        for name, original in saved.items():
            if original is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = original


class _Pickler(pickle.Pickler):
    def __init__(self, file, protocol, scalar_fn):
        super().__init__(file, protocol=protocol)
        self.scalar_fn = scalar_fn

    def reducer_override(self, obj):
        if self.scalar_fn is not None and isinstance(obj, np.generic):
            _, args = obj.__reduce__()[:2]  # (scalar, (dtype, bytes)): keep the args, rename the function
            return (self.scalar_fn, args)
        return NotImplemented


def dumps_snapshot(snapshot: dict, protocol: int = 4, numpy_module: str = "numpy.core.multiarray",
                   layout: str = "torch1.11") -> bytes:
    """The pickle bytes of ``snapshot`` (values may be FakeModule, EasyDict, dicts, tensors, None...).

    ``numpy_module``: 'numpy.core.multiarray' (numpy 1.x, official files) or 'numpy._core.multiarray'.
    ``layout``: 'torch1.11' (OrderedDicts, official files) or 'torch2' (dicts, more hook keys).
    """
    conv = _Converter(layout)
    root = conv.value(snapshot)
    modules = dict(conv.fake_modules)
    modules["torch_utils.persistence"] = {"_reconstruct_persistent_obj": _reconstruct_persistent_obj}
    modules["dnnlib.util"] = {"EasyDict": EasyDict}
    scalar_fn = None
    if numpy_module != np.float64(0).__reduce__()[0].__module__:
        def scalar(*args):
            raise RuntimeError("never called")
        scalar.__module__, scalar.__qualname__ = numpy_module, "scalar"
        scalar_fn = scalar
        modules[numpy_module] = {"scalar": scalar}
    buf = io.BytesIO()
    with _registered(modules):
        _Pickler(buf, protocol, scalar_fn).dump(root)
    return buf.getvalue()


def write_snapshot(file, snapshot: dict, protocol: int = 4, **kwargs) -> None:
    """Write ``snapshot`` to a path or binary file object; see :func:`dumps_snapshot`."""
    data = dumps_snapshot(snapshot, protocol=protocol, **kwargs)
    if isinstance(file, (str, os.PathLike)):
        with open(file, "wb") as f:
            f.write(data)
    else:
        file.write(data)


def call_pickle(module: str, name: str, *args, protocol: int = 2) -> bytes:
    """A pickle that calls ``module.name(*args)`` when loaded by ``pickle.loads`` (for security tests:
    the function is referenced by name only, nothing is imported here)."""
    body = pickle.dumps(args, protocol=protocol)
    assert body.startswith(b"\x80") and body.endswith(b".")
    header = b"\x80" + bytes([protocol])
    body = body[2:-1]
    if protocol >= 4:  # drop the FRAME of the args so the stream stays well-formed
        body = body[9:] if body[:1] == b"\x95" else body
    return header + b"c" + f"{module}\n{name}\n".encode() + body + b"R."

