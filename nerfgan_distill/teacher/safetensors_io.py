"""Read and write the .safetensors file format (our own implementation, no third-party package).

Layout: an 8-byte little-endian u64 N, N bytes of UTF-8 JSON (padded with spaces), then the data buffer.
The JSON maps each tensor name to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets relative
to the buffer) and may hold ``"__metadata__": {str: str}``. Tensor data is raw little-endian bytes, packed
without gaps. Loading validates everything before it reads a byte of tensor data, so a damaged or
hostile file gives a clear error instead of a bad tensor.
"""
from __future__ import annotations

import json
import math
import os
import struct
import sys
import tempfile

import torch

__all__ = ["SafetensorsError", "save_safetensors", "load_safetensors"]

_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}
_NAMES = {v: k for k, v in _DTYPES.items()}
_MAX_HEADER = 100 * 1024 * 1024  # the reference implementation's limit as well
_METADATA = "__metadata__"


class SafetensorsError(ValueError):
    """A .safetensors file (or the data given to save one) is invalid."""


def _check_host() -> None:
    if sys.byteorder != "little":  # tensor bytes are written/read as the host lays them out
        raise SafetensorsError("safetensors_io needs a little-endian host")


def _tensor_bytes(t: torch.Tensor) -> bytes:
    # Reinterpret as bytes (never convert values) so NaN payloads and -0.0 survive exactly.
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    if flat.numel() == 0:
        return b""
    return flat.view(torch.uint8).numpy().tobytes()


def save_safetensors(path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` (sorted by name) and string ``metadata`` to ``path`` atomically."""
    _check_host()
    path = os.fspath(path)
    if not isinstance(tensors, dict):
        raise TypeError(f"save_safetensors({path!r}): tensors must be a dict, got {type(tensors).__name__}")
    if metadata is not None and (not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())):
        raise TypeError(f"save_safetensors({path!r}): metadata must be a dict of str to str")
    for name, t in tensors.items():
        if not isinstance(name, str) or not name or name == _METADATA:
            raise SafetensorsError(f"save_safetensors({path!r}): invalid tensor name {name!r}")
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"save_safetensors({path!r}): {name!r} is a {type(t).__name__}, not a tensor")
        if t.dtype not in _NAMES:
            raise SafetensorsError(f"save_safetensors({path!r}): {name!r} has unsupported dtype {t.dtype}; "
                                   f"supported: {', '.join(str(d) for d in _NAMES)}")
        if t.layout != torch.strided:
            raise SafetensorsError(f"save_safetensors({path!r}): {name!r} is not a dense (strided) tensor")

    header: dict = {}
    if metadata:
        header[_METADATA] = dict(sorted(metadata.items()))
    chunks, offset = [], 0
    for name in sorted(tensors):
        data = _tensor_bytes(tensors[name])
        header[name] = {"dtype": _NAMES[tensors[name].dtype], "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)  # keeps the buffer 8-byte aligned in the file

    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(text)))
            f.write(text)
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # readers see the old file or the complete new one, never a partial one
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise SafetensorsError(f"duplicate key {k!r} in the header")
        out[k] = v
    return out


def _parse_header(raw: bytes, buffer_len: int, where: str) -> tuple[dict, dict]:
    """Validate the JSON header; returns ({name: (dtype, shape, begin, end)}, metadata)."""
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except SafetensorsError as e:
        raise SafetensorsError(f"{where}: {e}") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise SafetensorsError(f"{where}: header is not valid UTF-8 JSON ({e})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{where}: header must be a JSON object, got {type(header).__name__}")

    metadata = header.pop(_METADATA, {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise SafetensorsError(f"{where}: {_METADATA} must be an object of string values")

    entries = {}
    for name, info in header.items():
        what = f"{where}: tensor {name!r}"
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise SafetensorsError(f"{what}: entry must have exactly dtype, shape and data_offsets")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dtype, str) or dtype not in _DTYPES:
            raise SafetensorsError(f"{what}: unknown dtype {dtype!r}; supported: {', '.join(_DTYPES)}")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise SafetensorsError(f"{what}: shape must be a list of non-negative integers, got {shape!r}")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(type(o) is int for o in offsets)
                or not 0 <= offsets[0] <= offsets[1] <= buffer_len):
            raise SafetensorsError(f"{what}: data_offsets {offsets!r} outside the data buffer of "
                                   f"{buffer_len} bytes")
        dt = _DTYPES[dtype]
        expected = math.prod(shape) * torch.empty((), dtype=dt).element_size()
        if offsets[1] - offsets[0] != expected:
            raise SafetensorsError(f"{what}: data_offsets span {offsets[1] - offsets[0]} bytes but "
                                   f"{dtype}{shape} needs {expected}")
        entries[name] = (dt, shape, offsets[0], offsets[1])

    # The format requires the tensors to tile the buffer exactly: no overlaps, no gaps, no extra bytes.
    position = 0
    for name, (_, _, begin, end) in sorted(entries.items(), key=lambda kv: (kv[1][2], kv[1][3])):
        if begin != position:
            kind = "overlaps the previous tensor" if begin < position else f"leaves a gap at byte {position}"
            raise SafetensorsError(f"{where}: tensor {name!r} (data_offsets [{begin}, {end}]) {kind}")
        position = end
    if position != buffer_len:
        raise SafetensorsError(f"{where}: data buffer has {buffer_len} bytes but the tensors cover "
                               f"{position} (trailing data or a truncated file)")
    return entries, metadata


def load_safetensors(source, device="cpu") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Load a .safetensors file; returns ({name: tensor}, metadata), tensors in header order.

    ``source`` is a path or a seekable binary file object (read from its current position to its end).
    """
    _check_host()
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            return _load(f, os.fspath(source), device)
    if not (hasattr(source, "read") and hasattr(source, "seek")):
        raise TypeError(f"load_safetensors: source must be a path or a seekable binary file object, "
                        f"got {type(source).__name__}")
    name = getattr(source, "name", None)
    return _load(source, str(name) if name is not None else "<file object>", device)


def _load(f, where: str, device) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    base = f.tell()
    file_size = f.seek(0, os.SEEK_END) - base
    f.seek(base)
    if file_size < 8:
        raise SafetensorsError(f"{where}: file of {file_size} bytes is too short for a header length")
    (n,) = struct.unpack("<Q", f.read(8))
    if n > _MAX_HEADER or n > file_size - 8:
        raise SafetensorsError(f"{where}: header length {n} exceeds "
                               f"{'the 100 MB limit' if n > _MAX_HEADER else 'the file size'}")
    raw = f.read(n)
    if len(raw) != n:
        raise SafetensorsError(f"{where}: file truncated inside the header")
    entries, metadata = _parse_header(raw, file_size - 8 - n, where)
    tensors = {}
    for name, (dtype, shape, begin, end) in entries.items():
        if begin == end:
            tensors[name] = torch.empty(shape, dtype=dtype, device=device)
            continue
        data = bytearray(end - begin)  # a fresh, aligned buffer; bytes are reinterpreted, never converted
        f.seek(base + 8 + n + begin)
        if f.readinto(data) != len(data):
            raise SafetensorsError(f"{where}: file truncated inside tensor {name!r}")
        t = torch.frombuffer(data, dtype=torch.uint8)
        if dtype == torch.bool and int(t.max()) > 1:
            raise SafetensorsError(f"{where}: tensor {name!r}: BOOL data holds bytes other than 0 and 1")
        tensors[name] = t.view(dtype).reshape(shape).to(device)
    return tensors, dict(metadata)
