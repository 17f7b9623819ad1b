"""Read official EG3D and StyleGAN2/3 network pickles without executing anything in them.

An official snapshot (``network-snapshot-*.pkl``) is a plain ``pickle.dump`` of a dict whose modules are
"persistent" objects: each carries the full source text of its Python module and is rebuilt by
``torch_utils.persistence._reconstruct_persistent_obj``, which ``exec``s that source. Loading it with
``pickle`` therefore runs arbitrary code. This module uses a restricted unpickler instead:

* only the globals of ``_ALLOWED`` resolve, each to an inert replacement written here; any other global
  raises :class:`UnsafePickleError` before anything of it is imported or called;
* persistent objects become :class:`PersistentRecord` (class name, source hash, ``__dict__`` state);
  the non-persistent classes EG3D uses become :class:`ObjectRecord`;
* storages (``torch.storage._load_from_bytes``) are parsed by hand, with a second restricted unpickler,
  and tensors are built as bounds-checked, contiguous CPU copies;
* numpy scalars become Python numbers, small numeric numpy arrays (StyleGAN3 keeps sizes in them) stay
  numpy arrays, ``dnnlib.util.EasyDict`` becomes :class:`EasyDict`.

See docs/eg3d.md, section 6, for the format.
"""
from __future__ import annotations

import hashlib
import io
import math
import os
import pickle
import struct
import sys
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterable

import numpy as np
import torch

__all__ = [
    "Eg3dPickleError", "UnsafePickleError", "PersistentRecord", "ObjectRecord", "EasyDict",
    "read_snapshot", "load_pickle", "module_tensors", "find_module", "iter_modules",
]


class Eg3dPickleError(ValueError):
    """The file is not a well-formed EG3D pickle (corrupted, truncated or of an unexpected layout)."""


class UnsafePickleError(Eg3dPickleError, pickle.UnpicklingError):
    """The pickle references a global that is not on the allow-list; nothing of it was imported or run.

    Also an :class:`Eg3dPickleError`, so one ``except`` catches every "cannot read this file" case."""


# ---------------------------------------------------------------------------------------------------
# Records that stand in for modules


@dataclass(eq=False)
class PersistentRecord:
    """A persistent EG3D object (``@persistence.persistent_class``), kept as data.

    ``state`` is the object's ``__dict__``: for an ``nn.Module`` it holds ``_parameters``, ``_buffers``,
    ``_modules`` and the plain attributes. ``module_src`` is the pickled source text, never executed.
    """

    class_name: str
    module_src_sha256: str
    state: dict = field(repr=False)
    module_src: str = field(default="", repr=False)

    @property
    def type_name(self) -> str:
        return self.class_name

    @property
    def init_args(self) -> tuple:
        return tuple(self.state.get("_init_args", ()))

    @property
    def init_kwargs(self) -> dict:
        return dict(self.state.get("_init_kwargs", {}))


class ObjectRecord:
    """An instance of an allow-listed non-persistent class (``training.triplane.OSGDecoder``,
    ``torch.nn.modules.container.Sequential``, ...), kept as its qualified name and ``__dict__``.

    The unpickler creates one subclass per qualified name (NEWOBJ needs a type); ``qualified_name``
    is set on that subclass and ``state`` by the BUILD opcode.
    """

    qualified_name: str = "?"
    state: dict | None = None

    def _build(self, state):
        if self.state is not None:
            raise Eg3dPickleError(f"{self.qualified_name}: state set twice")
        if not isinstance(state, dict):
            raise Eg3dPickleError(f"{self.qualified_name}: expected a dict state, got {type(state).__name__}")
        self.state = state

    @property
    def type_name(self) -> str:
        return self.qualified_name

    def __repr__(self) -> str:
        keys = sorted(self.state) if isinstance(self.state, dict) else None
        return f"ObjectRecord({self.qualified_name!r}, state keys={keys})"


class EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict``: a dict that also allows attribute reads."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


# ---------------------------------------------------------------------------------------------------
# Inert placeholders used while the stream is parsed

class _Storage:
    """A decoded storage: a flat CPU tensor of its dtype."""

    def __init__(self, flat: torch.Tensor):
        self.flat = flat


class _TensorStub:
    """A built tensor, kept wrapped until the end of the load.

    Why: a real tensor on the unpickler's stack could receive SETITEM opcodes (``tensor[k] = v``)
    or, without our BUILD filter, ``torch.Tensor.__setstate__`` (``set_`` on crafted arguments).
    The wrapper supports neither and is swapped for its tensor once the whole stream has been read.
    """

    __hash__ = None  # keeps stubs out of sets, so the final walk finds every one

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor


class _DType:
    """Stand-in for ``numpy.dtype(spec, align, copy)`` limited to plain numeric dtypes."""

    _SPECS = {"b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8"}

    def __init__(self, spec, align=False, copy=True):
        if not isinstance(spec, str) or spec not in self._SPECS:
            raise Eg3dPickleError(f"numpy dtype {spec!r} is not allowed (only plain numeric dtypes)")
        self.spec = spec
        self.byteorder = "="

    def _build(self, state):
        # numpy's dtype state: (version, byteorder, subarray, names, fields, elsize, alignment, flags[, ...]).
        if (not isinstance(state, tuple) or len(state) < 5 or state[1] not in ("<", ">", "=", "|")
                or any(s is not None for s in state[2:5])):
            raise Eg3dPickleError(f"numpy dtype {self.spec!r}: unexpected state {state!r:.200}")
        self.byteorder = state[1]

    def numpy(self) -> np.dtype:
        order = "=" if self.byteorder == "|" else self.byteorder
        return np.dtype(self.spec).newbyteorder(order)


class _ArrayStub:
    """A numpy array being rebuilt (``_reconstruct(ndarray, (0,), b'b')`` then BUILD of its state),
    kept wrapped until the end of the load like a tensor. StyleGAN3's layers keep sizes and sampling
    rates as small ndarrays; only plain numeric dtypes and small arrays are accepted."""

    __hash__ = None
    MAX_ELEMENTS = 1 << 16

    def __init__(self, where: str):
        self.where, self.array = where, None

    def _build(self, state):
        if (not isinstance(state, tuple) or len(state) != 5 or state[0] != 1 or not isinstance(state[2], _DType)
                or not isinstance(state[4], bytes) or not isinstance(state[3], bool)):
            raise Eg3dPickleError(f"{self.where}: numpy array with an unexpected state {state!r:.200}")
        shape, dtype, data = _int_tuple(state[1], f"{self.where}: numpy array shape"), state[2].numpy(), state[4]
        count = math.prod(shape)
        if count > self.MAX_ELEMENTS or len(data) != count * dtype.itemsize:
            raise Eg3dPickleError(f"{self.where}: numpy array of shape {shape} and dtype {dtype} "
                                  f"with {len(data)} bytes (at most {self.MAX_ELEMENTS} elements allowed)")
        order = "F" if state[3] else "C"
        self.array = np.frombuffer(data, dtype=dtype).reshape(shape, order=order).copy()


class _NdarrayType:
    """Stand-in for the ``numpy.ndarray`` global; only ``_reconstruct`` accepts it."""


# ---------------------------------------------------------------------------------------------------
# Unpickler base

# Why the pure-Python unpickler and not the C one: the C unpickler sizes its memo array from the
# index in a (LONG_)BINPUT opcode, so one corrupted byte can make it allocate and zero gigabytes
# (seen in test_flipped_bytes_never_crash); the Python one keeps the memo in a dict.
_PyUnpickler = pickle._Unpickler


class _SafeUnpickler(_PyUnpickler):
    """Adds a BUILD filter: the default BUILD calls ``__setstate__`` of, or sets attributes on, whatever
    object is on the stack (a tensor, one of our functions...). Here it only reaches the ``_build``
    method of the types in ``build_types``."""

    build_types: tuple = ()
    where = "<pickle>"

    def _load_build(self):
        state = self.stack.pop()
        inst = self.stack[-1]
        if not isinstance(inst, self.build_types):
            raise Eg3dPickleError(f"{self.where}: unexpected BUILD opcode on a {type(inst).__name__}")
        inst._build(state)

    dispatch = {**_PyUnpickler.dispatch, pickle.BUILD[0]: _load_build}


# ---------------------------------------------------------------------------------------------------
# Storages: the legacy (non-zip) torch.save of one storage, inside _load_from_bytes(b)

_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class _StorageType:
    def __init__(self, name: str):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


class _LegacyUnpickler(_SafeUnpickler):
    """Unpickler for the small pickles inside a legacy storage blob: only ``torch.*Storage`` globals."""

    def __init__(self, file, where: str):
        super().__init__(file)
        self.where = where
        self.storages = []

    def find_class(self, module, name):
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsafePickleError(f"{self.where}: refusing global {module}.{name} inside a storage blob")

    def persistent_load(self, pid):
        # ('storage', storage type, key, location, numel[, view_metadata]); the location is ignored
        # because official snapshots may say 'cuda:0' for tensors that were moved by a forward pass.
        if (not isinstance(pid, tuple) or len(pid) not in (5, 6) or pid[0] != "storage"
                or not isinstance(pid[1], _StorageType) or not isinstance(pid[2], str)
                or not isinstance(pid[4], int) or pid[4] < 0):
            raise Eg3dPickleError(f"{self.where}: unexpected storage id {pid!r:.200}")
        if len(pid) == 6 and pid[5] is not None:
            raise Eg3dPickleError(f"{self.where}: storage views (view_metadata) are not supported")
        record = (pid[2], pid[1].dtype, pid[4])
        self.storages.append(record)
        return record


def _parse_storage_blob(blob: bytes, where: str) -> _Storage:
    if not isinstance(blob, (bytes, bytearray)):
        raise Eg3dPickleError(f"{where}: storage blob must be bytes, got {type(blob).__name__}")
    f = io.BytesIO(blob)

    def load():
        return _LegacyUnpickler(f, where).load()

    if load() != _MAGIC_NUMBER:
        raise Eg3dPickleError(f"{where}: storage blob has a wrong magic number")
    if load() != _LEGACY_PROTOCOL:
        raise Eg3dPickleError(f"{where}: storage blob has an unknown protocol version")
    sys_info = load()
    if not isinstance(sys_info, dict) or sys_info.get("little_endian") is not True:
        raise Eg3dPickleError(f"{where}: storage blob is not little-endian or lacks sys_info")
    root_unpickler = _LegacyUnpickler(f, where)
    root = root_unpickler.load()
    if len(root_unpickler.storages) != 1 or root is not root_unpickler.storages[0]:
        raise Eg3dPickleError(f"{where}: storage blob must hold exactly one storage")
    key, dtype, numel = root
    if load() != [key]:
        raise Eg3dPickleError(f"{where}: storage blob key list does not match its storage")
    count_bytes = f.read(8)
    if len(count_bytes) != 8:
        raise Eg3dPickleError(f"{where}: storage blob truncated before the element count")
    (count,) = struct.unpack("<q", count_bytes)
    itemsize = torch.empty((), dtype=dtype).element_size()
    remaining = len(blob) - f.tell()
    if count != numel or count * itemsize != remaining:
        raise Eg3dPickleError(f"{where}: storage blob holds {remaining} data bytes; expected {numel} "
                              f"elements of {itemsize} bytes (stored count {count})")
    if count == 0:
        return _Storage(torch.empty(0, dtype=dtype))
    raw = bytearray(memoryview(blob)[f.tell():])  # our own writable copy, made once
    if dtype == torch.bool and max(raw) > 1:  # anything but 0/1 in a bool tensor is undefined behaviour
        raise Eg3dPickleError(f"{where}: bool storage holds bytes other than 0 and 1")
    return _Storage(torch.frombuffer(raw, dtype=dtype))


# ---------------------------------------------------------------------------------------------------
# The restricted unpickler

# Non-persistent classes EG3D pickles by reference (NEWOBJ + BUILD of their __dict__).
_OBJECT_CLASSES = {
    "training.triplane.OSGDecoder",
    "training.volumetric_rendering.renderer.ImportanceRenderer",
    "training.volumetric_rendering.ray_sampler.RaySampler",
    "training.volumetric_rendering.ray_marcher.MipRayMarcher2",
    "torch.nn.modules.container.Sequential",
    "torch.nn.modules.activation.Softplus",
}

_ALLOWED = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): "_reconstruct_persistent_obj",
    ("torch._utils", "_rebuild_tensor_v2"): "_rebuild_tensor_v2",
    ("torch._utils", "_rebuild_parameter"): "_rebuild_parameter",
    ("torch._utils", "_rebuild_parameter_with_state"): "_rebuild_parameter_with_state",
    ("torch.storage", "_load_from_bytes"): "_load_from_bytes",
    ("collections", "OrderedDict"): "_ordered_dict",
    ("builtins", "set"): "_set", ("__builtin__", "set"): "_set",  # protocol <= 3 sets
    ("builtins", "frozenset"): "_frozenset", ("__builtin__", "frozenset"): "_frozenset",
    ("_codecs", "encode"): "_codecs_encode",  # protocol 2 writes bytes as _codecs.encode(str, 'latin1')
    ("numpy.core.multiarray", "scalar"): "_numpy_scalar",  # numpy 1.x
    ("numpy._core.multiarray", "scalar"): "_numpy_scalar",  # numpy 2.x
    ("numpy", "dtype"): "_numpy_dtype",
    ("numpy", "ndarray"): "_numpy_ndarray",
    ("numpy.core.multiarray", "_reconstruct"): "_numpy_reconstruct",  # numpy arrays (StyleGAN3)
    ("numpy._core.multiarray", "_reconstruct"): "_numpy_reconstruct",
}


class _RestrictedUnpickler(_SafeUnpickler):
    """``find_class`` hands out methods of this object or per-load record classes; nothing is imported."""

    build_types = (ObjectRecord, _DType, _ArrayStub)

    def __init__(self, file, where: str):
        super().__init__(file)
        self.where = where
        self._object_classes: dict[str, type] = {}
        self._src_hashes: dict[int, tuple[str, str]] = {}
        self._storage_count = 0

    def find_class(self, module, name):
        qualified = f"{module}.{name}"
        method = _ALLOWED.get((module, name))
        if method is not None:
            return getattr(self, method)
        if qualified == "dnnlib.util.EasyDict":
            return EasyDict
        if qualified in _OBJECT_CLASSES:
            if qualified not in self._object_classes:
                self._object_classes[qualified] = type(name, (ObjectRecord,), {"qualified_name": qualified})
            return self._object_classes[qualified]
        raise UnsafePickleError(f"{self.where}: refusing global {qualified!r}: it is not on the "
                                "allow-list of network_pickle, so nothing of it was imported or run")

    def persistent_load(self, pid):
        raise Eg3dPickleError(f"{self.where}: unexpected persistent id in the main pickle")

    # -- replacements for the allowed globals ------------------------------------------------------

    def _reconstruct_persistent_obj(self, meta):
        if not isinstance(meta, dict):
            raise Eg3dPickleError(f"{self.where}: persistent object meta must be a dict")
        if meta.get("type") != "class" or meta.get("version") != 6:
            raise Eg3dPickleError(f"{self.where}: unsupported persistent object type/version "
                                  f"{meta.get('type')!r}/{meta.get('version')!r} (expected 'class'/6)")
        src, class_name, state = meta.get("module_src"), meta.get("class_name"), meta.get("state")
        if not isinstance(src, str) or not isinstance(class_name, str) or not isinstance(state, dict):
            raise Eg3dPickleError(f"{self.where}: persistent object meta lacks module_src/class_name/state")
        cached = self._src_hashes.get(id(src))  # the same source string is shared through the memo
        if cached is None or cached[0] is not src:
            cached = (src, hashlib.sha256(src.encode("utf-8", "surrogatepass")).hexdigest())
            self._src_hashes[id(src)] = cached
        return PersistentRecord(class_name, cached[1], state, src)

    def _load_from_bytes(self, blob):
        self._storage_count += 1
        return _parse_storage_blob(blob, f"{self.where}: storage #{self._storage_count}")

    def _rebuild_tensor_v2(self, storage, offset, size, stride, requires_grad, hooks, metadata=None):
        where = f"{self.where}: tensor"
        if not isinstance(storage, _Storage):
            raise Eg3dPickleError(f"{where}: storage argument is a {type(storage).__name__}")
        size, stride = _int_tuple(size, f"{where} size"), _int_tuple(stride, f"{where} stride")
        offset = _int_tuple((offset,), f"{where} storage offset")[0]
        if len(size) != len(stride):
            raise Eg3dPickleError(f"{where}: size {size} and stride {stride} differ in length")
        n, numel = storage.flat.numel(), math.prod(size)
        if numel > max(n, 1 << 24):  # stride-0 views could otherwise ask for any amount of memory
            raise Eg3dPickleError(f"{where}: view of {numel} elements over a storage of {n}")
        if numel == 0:
            if offset > n:
                raise Eg3dPickleError(f"{where}: storage offset {offset} beyond storage of {n} elements")
            tensor = torch.empty(size, dtype=storage.flat.dtype)
        else:
            last = offset + sum((s - 1) * st for s, st in zip(size, stride))
            if last >= n:
                raise Eg3dPickleError(f"{where}: view (offset {offset}, size {size}, stride {stride}) "
                                      f"reads past its storage of {n} elements")
            view = storage.flat.as_strided(size, stride, offset)
            # The usual case, a contiguous tensor over its whole storage, keeps the storage's private
            # buffer; anything else is copied out, so no tensor holds on to memory it does not show.
            whole = offset == 0 and numel == n and view.is_contiguous()
            tensor = view if whole else view.clone(memory_format=torch.contiguous_format)
        if metadata:  # torch 2.x appends {'neg': bool, 'conj': bool} when such a bit is set
            if not isinstance(metadata, dict) or set(metadata) - {"neg", "conj"} or metadata.get("conj"):
                raise Eg3dPickleError(f"{where}: unsupported tensor metadata {metadata!r:.200}")
            if metadata.get("neg"):  # a negative view stores -x
                tensor = -tensor
        return _TensorStub(tensor)

    def _rebuild_parameter(self, data, requires_grad, hooks):
        if not isinstance(data, _TensorStub):
            raise Eg3dPickleError(f"{self.where}: parameter data is a {type(data).__name__}, not a tensor")
        return data

    def _rebuild_parameter_with_state(self, data, requires_grad, hooks, state):
        return self._rebuild_parameter(data, requires_grad, hooks)  # Python attributes on a Parameter

    def _ordered_dict(self, *args):
        if args and not isinstance(args[0], (list, tuple, dict)):
            raise Eg3dPickleError(f"{self.where}: OrderedDict from a {type(args[0]).__name__}")
        return OrderedDict(*args)

    def _set(self, items=()):
        return set(_plain_iterable(items, self.where))

    def _frozenset(self, items=()):
        return frozenset(_plain_iterable(items, self.where))

    def _codecs_encode(self, text, encoding):
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
            raise Eg3dPickleError(f"{self.where}: _codecs.encode only allowed for (str, 'latin1')")
        return text.encode("latin1")

    def _numpy_dtype(self, spec, align=False, copy=True):
        return _DType(spec, align, copy)

    _numpy_ndarray = _NdarrayType

    def _numpy_reconstruct(self, cls, shape, typecode):
        if cls is not _NdarrayType or shape != (0,) or typecode != b"b":
            raise Eg3dPickleError(f"{self.where}: numpy _reconstruct only of a plain ndarray")
        return _ArrayStub(self.where)

    def _numpy_scalar(self, dtype, data=None):
        if not isinstance(dtype, _DType) or not isinstance(data, bytes):
            raise Eg3dPickleError(f"{self.where}: numpy scalar needs a numeric dtype and bytes")
        npdtype = dtype.numpy()
        if len(data) != npdtype.itemsize:
            raise Eg3dPickleError(f"{self.where}: numpy scalar of {npdtype} has {len(data)} bytes")
        return np.frombuffer(data, dtype=npdtype)[0].item()  # Python bool/int/float


def _int_tuple(value, what: str) -> tuple:
    if (not isinstance(value, (tuple, list))
            or not all(type(v) is int and v >= 0 for v in value)):  # bools excluded on purpose
        raise Eg3dPickleError(f"{what} must be non-negative ints, got {value!r:.200}")
    return tuple(value)


def _plain_iterable(items, where: str) -> Iterable:
    if not isinstance(items, (list, tuple, set, frozenset)):
        raise Eg3dPickleError(f"{where}: set from a {type(items).__name__}")
    return items


# ---------------------------------------------------------------------------------------------------
# Swap the tensor stubs for tensors once the stream is read


def _unwrap(obj, memo: dict, active: set):
    """Replace every _TensorStub by its tensor, in place for mutable containers. Tuples are rebuilt;
    a cycle through a tuple is refused (pickles of real modules have none)."""
    key = id(obj)
    if key in memo:
        if key in active and isinstance(obj, tuple):
            raise Eg3dPickleError("recursive structure through a tuple")
        return memo[key]
    if isinstance(obj, _TensorStub):
        memo[key] = obj.tensor
        return obj.tensor
    if isinstance(obj, _ArrayStub):
        if obj.array is None:
            raise Eg3dPickleError(f"{obj.where}: numpy array without its state")
        memo[key] = obj.array
        return obj.array
    if isinstance(obj, (str, bytes, bytearray, int, float, complex, type(None), torch.Tensor)):
        return obj
    memo[key] = obj
    active.add(key)
    if isinstance(obj, dict):
        for k, v in list(obj.items()):
            obj[k] = _unwrap(v, memo, active)
    elif isinstance(obj, list):
        obj[:] = [_unwrap(v, memo, active) for v in obj]
    elif isinstance(obj, tuple):
        memo[key] = tuple(_unwrap(v, memo, active) for v in obj)
    elif isinstance(obj, (PersistentRecord, ObjectRecord)):
        if obj.state is None:
            raise Eg3dPickleError(f"{obj.type_name}: object without a state")
        _unwrap(obj.state, memo, active)
    elif isinstance(obj, (set, frozenset)):
        pass  # stubs are unhashable, so sets never hold one
    else:
        raise Eg3dPickleError(f"unexpected object of type {type(obj).__name__} in the pickle")
    active.discard(key)
    return memo[key]


# ---------------------------------------------------------------------------------------------------
# Public API

_LOAD_ERRORS = (EOFError, pickle.UnpicklingError, struct.error, ValueError, TypeError, KeyError,
                IndexError, AttributeError, OverflowError, MemoryError, RecursionError, RuntimeError)


def load_pickle(source: str | os.PathLike | BinaryIO) -> Any:
    """Load any pickle under the EG3D allow-list; returns the root object with records for modules."""
    if sys.byteorder != "little":
        raise Eg3dPickleError("network_pickle needs a little-endian host")
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            return _load(f, _source_name(source))
    if not hasattr(source, "read"):
        raise TypeError(f"source must be a path or a binary file object, got {type(source).__name__}")
    return _load(source, _source_name(source))


def _source_name(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    name = getattr(source, "name", None)
    return str(name) if name is not None else "<file object>"


def _load(f: BinaryIO, where: str) -> Any:
    try:
        root = _RestrictedUnpickler(f, where).load()
        trailing = f.read(1)
        root = _unwrap(root, {}, set())
    except Eg3dPickleError:  # includes UnsafePickleError; both already name the file
        raise
    except _LOAD_ERRORS as e:
        raise Eg3dPickleError(f"{where}: corrupted or truncated pickle ({type(e).__name__}: {e})") from e
    if trailing:
        raise Eg3dPickleError(f"{where}: unexpected data after the end of the pickle")
    return root


def read_snapshot(source: str | os.PathLike | BinaryIO, keys: Iterable[str] | None = None) -> dict:
    """Read an EG3D snapshot (``{'training_set_kwargs', 'G', 'D', 'G_ema', 'augment_pipe'}``).

    The whole file is parsed (it is one sequential pickle), modules come back as records. With
    ``keys``, only those entries are returned, in that order, and each must exist.
    """
    where = _source_name(source)
    root = load_pickle(source)
    if not isinstance(root, dict):
        raise Eg3dPickleError(f"{where}: top level is a {type(root).__name__}, not a dict: not an EG3D snapshot")
    if keys is None:
        return root
    if isinstance(keys, str):
        keys = [keys]
    missing = [k for k in keys if k not in root]
    if missing:
        raise KeyError(f"{where}: snapshot has no {', '.join(map(repr, missing))}; "
                       f"available keys: {', '.join(map(repr, root))}")
    return {k: root[k] for k in keys}


_Record = (PersistentRecord, ObjectRecord)


def _children(record) -> dict:
    modules = record.state.get("_modules", {})
    if not isinstance(modules, dict):
        raise Eg3dPickleError(f"{record.type_name}: _modules is a {type(modules).__name__}")
    return modules


def iter_modules(record, prefix: str = ""):
    """Yield (dotted name, record) for ``record`` and every sub-module, like ``named_modules()``."""
    yield prefix, record
    for name, child in _children(record).items():
        if child is None:
            continue
        if not isinstance(child, _Record):
            raise Eg3dPickleError(f"{prefix or record.type_name}: child {name!r} is a {type(child).__name__}")
        yield from iter_modules(child, f"{prefix}.{name}" if prefix else name)


def module_tensors(record, prefix: str = "") -> dict[str, torch.Tensor]:
    """The ``state_dict()`` of a record: parameters and persistent buffers, with dotted names."""
    if not isinstance(record, _Record):
        raise TypeError(f"record must be a PersistentRecord or ObjectRecord, got {type(record).__name__}")
    out: dict[str, torch.Tensor] = {}
    for path, module in iter_modules(record, prefix):
        skip = module.state.get("_non_persistent_buffers_set") or set()
        for kind in ("_parameters", "_buffers"):
            entries = module.state.get(kind, {})
            if not isinstance(entries, dict):
                raise Eg3dPickleError(f"{path or module.type_name}: {kind} is a {type(entries).__name__}")
            for name, tensor in entries.items():
                if tensor is None or (kind == "_buffers" and name in skip):
                    continue
                if not isinstance(tensor, torch.Tensor):
                    raise Eg3dPickleError(f"{path}.{name}: expected a tensor, got {type(tensor).__name__}")
                out[f"{path}.{name}" if path else name] = tensor
    return out


def find_module(record, dotted_name: str):
    """The sub-module record at ``dotted_name`` (e.g. ``'backbone.synthesis.b4'``); '' is ``record``."""
    current = record
    for i, part in enumerate(dotted_name.split(".") if dotted_name else []):
        children = _children(current)
        if children.get(part) is None:
            done = ".".join(dotted_name.split(".")[:i]) or "<root>"
            raise KeyError(f"{done} has no sub-module {part!r}; it has: {', '.join(map(repr, children))}")
        current = children[part]
    return current
