"""Our model and data files: .safetensors (the `safetensors` package) with a JSON config in
the metadata, and atomic writes for every file that matters.

Every file we write carries metadata 'format' (what it holds: a teacher, a student, a
training checkpoint, a data shard), 'format_version' and 'config' (JSON). Readers check the
format before they build anything, so a student given as a teacher (or a checkpoint given as
a student) gets a clear error naming what the file is.
"""
from __future__ import annotations

import contextlib
import json
import os
import struct
import tempfile
from dataclasses import dataclass
from typing import BinaryIO, Callable, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load as _load_tensors
from safetensors.torch import save as _save_tensors

__all__ = ["ModelFileError", "ModelFile", "write_model_file", "read_model_file", "atomic_write", "atomic_file", "KINDS",
           "DTYPES", "describe_format", "load_state", "safetensors_bytes", "peek_format", "peek_metadata"]

Source = Union[str, os.PathLike, BinaryIO]

# Human names of our formats, for error messages ("... is a nerfgan_distill student file").
KINDS = {
    "nerfgan_distill.teacher": "teacher",
    "nerfgan_distill.student": "student",
    "nerfgan_distill.checkpoint": "training checkpoint",
    "nerfgan_distill.shard": "data shard",
}
_MAX_HEADER = 100 * 1024 * 1024  # the safetensors package's own limit
# The dtypes our files hold. The package reads more (float8, complex, uint16-64, sub-byte floats),
# but nothing here writes them, and some it cannot even hand to torch (F4 raises KeyError).
DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
          torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
          torch.bool: "BOOL"}
# What the package may raise on a damaged buffer it has begun to read (KeyError: a dtype torch lacks).
_PACKAGE_ERRORS = (SafetensorError, ValueError, RuntimeError, KeyError, TypeError, OverflowError)


class ModelFileError(ValueError):
    """A file is not one of ours, is damaged, or holds another kind of content (the message says which)."""


@dataclass
class ModelFile:
    format: str
    format_version: str
    config: dict
    tensors: dict
    metadata: dict


def describe_format(fmt) -> str:
    return f"a nerfgan_distill {KINDS[fmt]} file" if fmt in KINDS else f"a file of format {fmt!r}"


@contextlib.contextmanager
def atomic_file(path: Union[str, os.PathLike], suffix: str = ".tmp"):
    """Yield a temporary file name beside `path` (ending in `suffix`, for writers that pick a
    container by name); when the block succeeds the file is renamed over `path`, when it fails
    it is removed: readers (and a crash, or a full disk) see the old file or the whole new one."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=suffix, dir=directory)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes owner-only files; give the usual permissions
        os.close(fd)
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write(path: Union[str, os.PathLike], write: Callable[[BinaryIO], None]) -> None:
    """Write a file through `write(f)`, fsynced, atomically (see atomic_file)."""
    with atomic_file(path) as tmp:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_model_file(path: Union[str, os.PathLike], fmt: str, version: str, config: dict,
                     tensors: dict, metadata: dict | None = None) -> None:
    """Write `tensors` (moved to CPU, made contiguous) and the JSON `config` atomically."""
    _check_tensors_to_write(tensors)
    meta = {"format": fmt, "format_version": version, "config": json.dumps(config)}
    for key, value in (metadata or {}).items():
        if not isinstance(value, str):
            raise TypeError(f"write_model_file: metadata {key!r} must be a string, got {type(value).__name__}")
        meta[key] = value
    data = safetensors_bytes(tensors, meta)
    atomic_write(path, lambda f: f.write(data))


def _check_tensors_to_write(tensors) -> None:
    """Refuse what the package would write but our reader (or the format) cannot take back."""
    if not isinstance(tensors, dict) or not all(isinstance(t, torch.Tensor) for t in tensors.values()):
        raise TypeError("write_model_file: tensors must be a dict of str to torch.Tensor")
    for name, tensor in tensors.items():
        # "__metadata__" would collide with the metadata entry of the header.
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise ValueError(f"write_model_file: invalid tensor name {name!r}")
        if tensor.layout != torch.strided:
            raise ValueError(f"write_model_file: tensor {name!r} is {tensor.layout}; only dense tensors "
                             f"can be written (call .to_dense())")
        if tensor.dtype not in DTYPES:
            raise TypeError(f"write_model_file: tensor {name!r} has dtype {tensor.dtype}, which nerfgan_distill "
                            f"files do not hold ({', '.join(sorted(DTYPES.values()))})")


def _unshared(tensors: dict) -> dict:
    """CPU, contiguous, detached copies where needed; a tensor whose storage an earlier one
    uses (tied weights) is cloned, as the package refuses tensors that share memory."""
    out, seen = {}, set()
    for name, tensor in tensors.items():
        tensor = tensor.detach().to("cpu").contiguous()
        pointer = tensor.untyped_storage().data_ptr()
        if pointer in seen:
            tensor = tensor.clone()
        seen.add(pointer)
        out[name] = tensor
    return out


def safetensors_bytes(tensors: dict, metadata: dict) -> bytes:
    """A .safetensors file's bytes, its JSON header's keys sorted: the package writes metadata
    in hash order, and equal content should give equal bytes (checksums, resume comparisons)."""
    data = _save_tensors(_unshared(tensors), metadata=metadata)
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # keeps the tensor data 8-byte aligned, as the package does
    return struct.pack("<Q", len(text)) + text + data[8 + n:]


def read_model_file(source: Source, expect: str | None = None, versions: tuple = ("1",)) -> ModelFile:
    """Read one of our files. With `expect`, a file of another format raises ModelFileError
    naming what it is. A damaged or foreign file raises ModelFileError too."""
    where = source_name(source)
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            data = f.read()
    else:
        data = source.read()
    header = _header(data, where)
    metadata = _metadata(header, where)
    fmt = metadata.get("format")
    if fmt not in KINDS:
        raise ModelFileError(f"{where}: a .safetensors file, but not one written by nerfgan_distill "
                             f"(metadata 'format' is {fmt!r})")
    if expect is not None and fmt != expect:
        raise ModelFileError(f"{where} is {describe_format(fmt)}, not {describe_format(expect)}")
    version = metadata.get("format_version")
    if version not in versions:
        raise ModelFileError(f"{where}: format version {version!r} is not understood (this version reads "
                             f"{', '.join(versions)})")
    try:
        config = json.loads(metadata["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"{where}: the config metadata is malformed ({type(e).__name__}: {e})") from e
    if not isinstance(config, dict):
        raise ModelFileError(f"{where}: the config metadata is malformed (not a JSON object)")
    _check_dtypes(header, where)
    try:
        tensors = _load_tensors(data)
    except _PACKAGE_ERRORS as e:
        raise ModelFileError(f"{where}: damaged .safetensors data ({type(e).__name__}: {e})") from e
    _check_bool_values(tensors, where)
    return ModelFile(fmt, version, config, tensors, metadata)


def load_state(model: torch.nn.Module, tensors: dict, where: str, error: type = ModelFileError,
               optional=frozenset()) -> None:
    """Load a file's `tensors` into `model`, refusing missing (except `optional`), unknown,
    misshapen or non-float entries with `error`; values are cast to the model's dtypes."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors) - set(optional))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise error(f"{where}: tensors do not match the architecture; missing: "
                    f"{', '.join(missing[:8]) or 'none'}{' ...' if len(missing) > 8 else ''}; "
                    f"not understood: {', '.join(unexpected[:8]) or 'none'}"
                    f"{' ...' if len(unexpected) > 8 else ''}")
    for name, tensor in tensors.items():
        if tensor.shape != expected[name].shape:
            raise error(f"{where}: {name} has shape {list(tensor.shape)}, expected {list(expected[name].shape)}")
        if not tensor.is_floating_point():
            raise error(f"{where}: {name} is {tensor.dtype}, expected a float tensor")
    model.load_state_dict({**expected, **{k: t.to(expected[k].dtype) for k, t in tensors.items()}})


def peek_format(source: Source) -> str | None:
    """The 'format' metadata of a .safetensors file (None if it has none); reads only the header."""
    return peek_metadata(source).get("format")


def peek_metadata(source: Source) -> dict:
    """The __metadata__ of a .safetensors file (string values); reads only the header."""
    where = source_name(source)
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            head = f.read(8)
            size = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
            data = head + f.read(min(size, _MAX_HEADER))
    else:
        position = source.tell()
        data = source.read(8)
        size = struct.unpack("<Q", data)[0] if len(data) == 8 else 0
        data += source.read(min(size, _MAX_HEADER))
        source.seek(position)
    return _metadata(_header(data, where), where)


def _header(data: bytes, where: str) -> dict:
    """The JSON header, after checking its length and syntax (the tensor entries and data are
    validated by the safetensors package when it loads them)."""
    if len(data) < 8:
        raise ModelFileError(f"{where}: file of {len(data)} bytes is too short for a .safetensors header")
    (n,) = struct.unpack("<Q", data[:8])
    implausible = n > _MAX_HEADER or n > len(data) - 8
    if implausible and (data[:2] == b"PK" or (data[0] == 0x80 and 2 <= data[1] <= 5)):
        kind = "a zip archive (torch.save?)" if data[:2] == b"PK" else "a pickle"
        raise ModelFileError(f"{where}: not a .safetensors file but {kind}")
    if n > _MAX_HEADER or n > len(data) - 8:
        raise ModelFileError(f"{where}: header length {n} exceeds "
                             f"{'the 100 MB limit' if n > _MAX_HEADER else 'the file size'}")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"), object_pairs_hook=_no_duplicates)
    except _DuplicateKey as e:
        raise ModelFileError(f"{where}: header has duplicate key {e.args[0]!r}") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ModelFileError(f"{where}: header is not valid UTF-8 JSON ({e})") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{where}: header must be a JSON object")
    return header


class _DuplicateKey(Exception):
    pass


def _no_duplicates(pairs: list) -> dict:
    """A JSON object that refuses repeated keys: the package keeps the last of two entries for
    one tensor, so a second entry would silently replace the first."""
    out = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _metadata(header: dict, where: str) -> dict:
    """The header's __metadata__ (an object of strings, as the format requires)."""
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ModelFileError(f"{where}: __metadata__ must be an object of string values")
    return metadata


def _check_dtypes(header: dict, where: str) -> None:
    """Every tensor entry names one of our dtypes (malformed entries are left to the package)."""
    allowed = set(DTYPES.values())
    for name, entry in header.items():
        dtype = entry.get("dtype") if name != "__metadata__" and isinstance(entry, dict) else None
        if isinstance(dtype, str) and dtype not in allowed:
            raise ModelFileError(f"{where}: tensor {name!r} has dtype {dtype}, which nerfgan_distill files "
                                 f"do not hold ({', '.join(sorted(allowed))})")


def _check_bool_values(tensors: dict, where: str) -> None:
    """BOOL bytes must be 0 or 1: torch leaves any other byte value undefined behaviour."""
    for name, tensor in tensors.items():
        if tensor.dtype == torch.bool and tensor.numel() and int(tensor.view(torch.uint8).max()) > 1:
            raise ModelFileError(f"{where}: tensor {name!r}: BOOL data holds bytes other than 0 and 1")


def source_name(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    name = getattr(source, "name", None)
    return str(name) if name is not None else "<file object>"
