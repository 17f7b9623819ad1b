"""Tests of our .safetensors reader/writer (nerfgan_distill.teacher.safetensors_io)."""
import io
import json
import os
import struct

import pytest
import torch

from nerfgan_distill.teacher import safetensors_io as st
from nerfgan_distill.teacher.safetensors_io import SafetensorsError, load_safetensors, save_safetensors

DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
          "BOOL": torch.bool}


def random_bits(dtype, shape, seed=0):
    """Random bit patterns of a dtype: NaNs with payloads, infinities, -0.0 and subnormals included."""
    g = torch.Generator().manual_seed(seed)
    n = 1
    for d in shape:
        n *= d
    if dtype == torch.bool:
        return (torch.randint(0, 2, (n,), generator=g) == 1).reshape(shape)
    size = torch.empty((), dtype=dtype).element_size()
    raw = torch.randint(0, 256, (n * size,), dtype=torch.uint8, generator=g)
    return raw.view(dtype).reshape(shape) if n else torch.empty(shape, dtype=dtype)


def same_bits(a, b):
    return (a.dtype == b.dtype and a.shape == b.shape
            and torch.equal(a.contiguous().reshape(-1).view(torch.uint8), b.contiguous().reshape(-1).view(torch.uint8)))


def raw_file(path, header, data=b"", *, pad=True, length=None):
    """Write a file from a header (dict, or raw bytes) and a data buffer, bypassing save_safetensors."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text) if length is None else length) + text + data)
    return path


# ------------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("code", list(DTYPES))
@pytest.mark.parametrize("shape", [(), (1,), (0,), (3, 0, 2), (5, 7), (2, 3, 4)])
def test_round_trip_bit_exact(tmp_path, code, shape):
    dtype = DTYPES[code]
    t = random_bits(dtype, shape, seed=len(shape))
    path = tmp_path / "t.safetensors"
    save_safetensors(path, {"x": t, "y": t.clone()})
    tensors, meta = load_safetensors(path)
    assert meta == {} and list(tensors) == ["x", "y"]
    assert same_bits(tensors["x"], t) and same_bits(tensors["y"], t)
    header = json.loads(path.read_bytes()[8:8 + struct.unpack("<Q", path.read_bytes()[:8])[0]])
    assert header["x"]["dtype"] == code and header["x"]["shape"] == list(shape)


def test_special_float_values(tmp_path):
    specials = {
        "f32": torch.tensor([-0.0, 0.0, float("inf"), float("-inf"), 1e-45]).to(torch.float32),
        "f32_nan_payload": torch.tensor([0x7FC00001, 0x7F800001, -0x00400001, 0x7FFFFFFF], dtype=torch.int32).view(torch.float32),
        "f16_nan_payload": torch.tensor([0x7E01, -0x0001, 0x7C01], dtype=torch.int16).view(torch.float16),
        "bf16_nan_payload": torch.tensor([0x7FC1, -0x0002, 0x0001], dtype=torch.int16).view(torch.bfloat16),
        "f64_nan_payload": torch.tensor([0x7FF0000000000001, -1], dtype=torch.int64).view(torch.float64),
        "neg_zero_scalar": torch.tensor(-0.0, dtype=torch.float64),
    }
    path = tmp_path / "s.safetensors"
    save_safetensors(path, specials)
    tensors, _ = load_safetensors(path)
    for k, v in specials.items():
        assert same_bits(tensors[k], v), k


def test_metadata_order_alignment_and_determinism(tmp_path):
    a = {"b.weight": torch.ones(3, dtype=torch.uint8), "a.bias": torch.arange(5, dtype=torch.int64),
         "c": torch.zeros(2, 2, dtype=torch.float16)}
    b = dict(reversed(list(a.items())))
    meta = {"format": "pt", "source": "EG3D ffhq512-128.pkl", "ünïcode": "✓"}
    p1, p2 = tmp_path / "1.safetensors", tmp_path / "2.safetensors"
    save_safetensors(p1, a, meta)
    save_safetensors(p2, b, dict(reversed(list(meta.items()))))
    assert p1.read_bytes() == p2.read_bytes()  # insertion order does not matter
    data = p1.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    assert n % 8 == 0 and len(data) == 8 + n + 3 + 40 + 8
    header = json.loads(data[8:8 + n].decode("utf-8"))
    names = [k for k in header if k != "__metadata__"]
    assert names == sorted(names)
    assert [header[k]["data_offsets"] for k in names] == [[0, 40], [40, 43], [43, 51]]
    tensors, got_meta = load_safetensors(p1)
    assert got_meta == meta and list(tensors) == sorted(a)
    for k in a:
        assert same_bits(tensors[k], a[k])


def test_exact_bytes_of_a_small_file(tmp_path):
    path = tmp_path / "small.safetensors"
    save_safetensors(path, {"test": torch.zeros(2, 2)})
    header = b'{"test":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}'
    header += b" " * (-len(header) % 8)
    assert path.read_bytes() == struct.pack("<Q", len(header)) + header + b"\0" * 16


def test_non_contiguous_and_non_cpu_inputs(tmp_path):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    t = {"t": base.t(), "s": base[::2, 1::2], "e": torch.tensor([7.0]).expand(3, 2), "g": torch.ones(2, requires_grad=True)}
    path = tmp_path / "v.safetensors"
    save_safetensors(path, t)
    tensors, _ = load_safetensors(path, device="cpu")
    for k, v in t.items():
        assert torch.equal(tensors[k], v.detach()) and tensors[k].is_contiguous() and not tensors[k].requires_grad


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "w.safetensors"
    save_safetensors(path, {"x": torch.ones(2)})
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(st.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        save_safetensors(path, {"x": torch.zeros(1000)})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["w.safetensors"]  # the temporary file was removed
    monkeypatch.undo()
    save_safetensors(path, {"y": torch.zeros(3)})  # replaces an existing file
    assert list(load_safetensors(path)[0]) == ["y"] and os.listdir(tmp_path) == ["w.safetensors"]


@pytest.mark.parametrize("tensors,metadata,error,match", [
    ({"x": torch.zeros(2, dtype=torch.complex64)}, None, SafetensorsError, "unsupported dtype"),
    ({"x": torch.zeros(2, dtype=torch.uint16)}, None, SafetensorsError, "unsupported dtype"),
    ({"x": [1, 2]}, None, TypeError, "not a tensor"),
    ({"": torch.zeros(1)}, None, SafetensorsError, "invalid tensor name"),
    ({"__metadata__": torch.zeros(1)}, None, SafetensorsError, "invalid tensor name"),
    ({1: torch.zeros(1)}, None, SafetensorsError, "invalid tensor name"),
    ({"x": torch.zeros(1)}, {"k": 1}, TypeError, "metadata"),
    ({"x": torch.zeros(1)}, ["k"], TypeError, "metadata"),
    ([torch.zeros(1)], None, TypeError, "dict"),
    ({"x": torch.zeros(2).to_sparse()}, None, SafetensorsError, "dense"),
])
def test_save_rejects_bad_input(tmp_path, tensors, metadata, error, match):
    path = tmp_path / "bad.safetensors"
    with pytest.raises(error, match=match):
        save_safetensors(path, tensors, metadata)
    assert not path.exists() and os.listdir(tmp_path) == []


# ------------------------------------------------------------------------------------------------
# Corrupted files: every case is a SafetensorsError naming the file (and the entry when there is one)

F32_2 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}


@pytest.mark.parametrize("header,data,match", [
    (b"", b"", "not valid UTF-8 JSON"),
    (b"\xff\xfe{}", b"", "not valid UTF-8 JSON"),
    (b"{\"a\": ", b"", "not valid UTF-8 JSON"),
    (b"[1, 2]", b"", "must be a JSON object"),
    (b"[" * 100000 + b"]" * 100000, b"", "JSON"),
    (b'{"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "x": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}',
     b"\0" * 16, "duplicate key 'x'"),
    ({"x": {"dtype": "F8", "shape": [2], "data_offsets": [0, 2]}}, b"\0" * 2, "'x': unknown dtype"),
    ({"x": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8, "'x': shape"),
    ({"x": {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}}, b"\0" * 8, "'x': shape"),
    ({"x": {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}}, b"\0" * 4, "'x': shape"),
    ({"x": {"dtype": "F32", "shape": 2, "data_offsets": [0, 8]}}, b"\0" * 8, "'x': shape"),
    ({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 16]}}, b"\0" * 8, "'x': data_offsets"),
    ({"x": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, b"\0" * 8, "'x': data_offsets"),
    ({"x": {"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}}, b"\0" * 8, "'x': data_offsets"),
    ({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0]}}, b"\0" * 8, "'x': data_offsets"),
    ({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4, "'x': data_offsets span 4 bytes"),
    ({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 12]}}, b"\0" * 12, "'x': data_offsets span 12 bytes"),
    ({"x": {"dtype": "F32", "shape": [2]}}, b"\0" * 8, "'x': entry must have"),
    ({"x": dict(F32_2, extra=1)}, b"\0" * 8, "'x': entry must have"),
    ({"x": [1, 2]}, b"", "'x': entry must have"),
    ({"x": F32_2, "y": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12, "'y'.*overlaps"),
    ({"x": F32_2, "y": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, "overlaps"),
    ({"x": F32_2, "y": {"dtype": "F32", "shape": [1], "data_offsets": [12, 16]}}, b"\0" * 16, "'y'.*gap at byte 8"),
    ({"x": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12, "'x'.*gap at byte 0"),
    ({"x": F32_2}, b"\0" * 12, "trailing data or a truncated file"),
    ({"x": F32_2, "__metadata__": {"a": 1}}, b"\0" * 8, "__metadata__"),
    ({"x": F32_2, "__metadata__": ["a"]}, b"\0" * 8, "__metadata__"),
    ({"x": {"dtype": "BOOL", "shape": [2], "data_offsets": [0, 2]}}, b"\x01\x07", "'x': BOOL data"),
])
def test_corrupted_headers(tmp_path, header, data, match):
    path = raw_file(tmp_path / "corrupt.safetensors", header, data)
    with pytest.raises(SafetensorsError, match=match) as e:
        load_safetensors(path)
    assert str(path) in str(e.value)


def test_header_length_bounds(tmp_path):
    path = tmp_path / "len.safetensors"
    path.write_bytes(b"\x01\x02\x03")
    with pytest.raises(SafetensorsError, match="too short"):
        load_safetensors(path)
    path.write_bytes(b"")
    with pytest.raises(SafetensorsError, match="too short"):
        load_safetensors(path)
    raw_file(path, {"x": F32_2}, b"\0" * 8, length=10 ** 6)
    with pytest.raises(SafetensorsError, match="exceeds the file size"):
        load_safetensors(path)
    raw_file(path, {}, b"", length=2 ** 64 - 1)
    with pytest.raises(SafetensorsError, match="exceeds the 100 MB limit"):
        load_safetensors(path)
    with open(path, "wb") as f:  # a (sparse) file bigger than the limit, so only the limit can trip
        f.write(struct.pack("<Q", 100 * 1024 * 1024 + 8))
        f.truncate(8 + 100 * 1024 * 1024 + 64)
    with pytest.raises(SafetensorsError, match="100 MB"):
        load_safetensors(path)


def test_truncated_files(tmp_path):
    good = tmp_path / "good.safetensors"
    save_safetensors(good, {"a": random_bits(torch.float32, (5, 3)), "b": random_bits(torch.int8, (7,))}, {"k": "v"})
    data = good.read_bytes()
    cut = tmp_path / "cut.safetensors"
    for n in list(range(0, 20)) + [len(data) // 2, len(data) - 8, len(data) - 1]:
        cut.write_bytes(data[:n])
        with pytest.raises(SafetensorsError, match="cut.safetensors"):
            load_safetensors(cut)
    cut.write_bytes(data + b"\0")
    with pytest.raises(SafetensorsError, match="trailing data"):
        load_safetensors(cut)


def test_unpadded_and_empty_files_load(tmp_path):
    # Other writers may not pad the header; an empty header object is a valid (empty) file.
    path = raw_file(tmp_path / "np.safetensors", {"x": F32_2, "__metadata__": {"a": "b"}},
                    struct.pack("<2f", 1.5, -2.0), pad=False)
    tensors, meta = load_safetensors(path)
    assert torch.equal(tensors["x"], torch.tensor([1.5, -2.0])) and meta == {"a": "b"}
    empty = tmp_path / "empty.safetensors"
    save_safetensors(empty, {})
    assert load_safetensors(empty) == ({}, {})


def test_random_garbage_never_crashes(tmp_path):
    good = tmp_path / "good.safetensors"
    save_safetensors(good, {"a": random_bits(torch.float32, (5, 3)), "b": random_bits(torch.bool, (7,))})
    data = good.read_bytes()
    g = torch.Generator().manual_seed(0)
    bad = tmp_path / "bad.safetensors"
    for _ in range(200):
        mutated = bytearray(data)
        for pos in torch.randint(0, len(data), (2,), generator=g).tolist():
            mutated[pos] ^= int(torch.randint(1, 256, (1,), generator=g))
        bad.write_bytes(bytes(mutated))
        try:
            load_safetensors(bad)  # a flip inside tensor data leaves a valid file
        except SafetensorsError:
            pass


def test_load_from_file_objects(tmp_path):
    t = {"a": random_bits(torch.float64, (3, 2)), "b": random_bits(torch.bool, (4,))}
    path = tmp_path / "f.safetensors"
    save_safetensors(path, t, {"k": "v"})
    with open(path, "rb") as f:
        tensors, meta = load_safetensors(f)
    assert meta == {"k": "v"} and all(same_bits(tensors[k], t[k]) for k in t)
    # An in-memory file, read from its current position (e.g. after a caller sniffed a prefix).
    buf = io.BytesIO(b"prefix" + path.read_bytes())
    buf.seek(6)
    tensors, _ = load_safetensors(buf)
    assert all(same_bits(tensors[k], t[k]) for k in t)
    buf = io.BytesIO(path.read_bytes()[:-1])
    with pytest.raises(SafetensorsError, match="<file object>"):
        load_safetensors(buf)
    with pytest.raises(TypeError, match="source"):
        load_safetensors(12)
