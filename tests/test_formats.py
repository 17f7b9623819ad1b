"""Tests of nerfgan_distill.formats: our .safetensors model files (through the safetensors
package), their checks on damaged or foreign files, canonical headers and atomic writes."""
import io
import json
import os
import struct

import pytest
import torch

from nerfgan_distill import formats, teacher
from nerfgan_distill.formats import ModelFileError, peek_format, read_model_file, write_model_file

TEACHER = "nerfgan_distill.teacher"
OURS = {"format": TEACHER, "format_version": "1", "config": "{}"}
F32_2 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
USED_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.bool]


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


def raw_file(path, header, data=b"", *, metadata=OURS, pad=True, length=None):
    """Write a file from a header (dict: our metadata is added; or raw bytes) and a data buffer,
    bypassing the safetensors package."""
    if isinstance(header, dict):
        header = {"__metadata__": metadata, **header} if metadata is not None else header
        header = json.dumps(header).encode()
    if pad:
        header += b" " * (-len(header) % 8)
    path.write_bytes(struct.pack("<Q", len(header) if length is None else length) + header + data)
    return path


def header_of(path):
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n])


def read_error(path, match):
    """read_model_file(path) must raise ModelFileError naming the file and matching `match`."""
    with pytest.raises(ModelFileError, match=match) as e:
        read_model_file(path)
    assert str(path) in str(e.value)
    return e.value


# ------------------------------------------------------------------------------------------------
# Round trips, canonical bytes, format checks


@pytest.mark.parametrize("dtype", USED_DTYPES)
@pytest.mark.parametrize("shape", [(), (0,), (3, 0, 2), (5, 7)])
def test_round_trip_bit_exact(tmp_path, dtype, shape):
    t = random_bits(dtype, shape, seed=len(shape))
    path = tmp_path / "t.safetensors"
    write_model_file(path, TEACHER, "1", {"a": [1, 2]}, {"x": t, "y": t.clone()}, {"source": "unit test"})
    file = read_model_file(path, expect=TEACHER)
    assert (file.format, file.format_version, file.config) == (TEACHER, "1", {"a": [1, 2]})
    assert file.metadata["source"] == "unit test" and sorted(file.tensors) == ["x", "y"]
    assert same_bits(file.tensors["x"], t) and same_bits(file.tensors["y"], t)
    assert header_of(path)["x"]["dtype"] == formats.DTYPES[dtype]


def test_non_contiguous_tied_and_grad_inputs(tmp_path):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    tied = torch.ones(3)
    t = {"t": base.t(), "s": base[::2, 1::2], "e": torch.tensor([7.0]).expand(3, 2),
         "g": torch.ones(2, requires_grad=True), "tied_a": tied, "tied_b": tied}
    path = tmp_path / "v.safetensors"
    write_model_file(path, TEACHER, "1", {}, t)
    tensors = read_model_file(path).tensors
    for k, v in t.items():
        assert torch.equal(tensors[k], v.detach()) and tensors[k].is_contiguous() and not tensors[k].requires_grad


def test_canonical_header_gives_identical_bytes(tmp_path):
    a = {"b.weight": torch.ones(3, dtype=torch.bool), "a.bias": torch.arange(5, dtype=torch.int64),
         "c": torch.zeros(2, 2, dtype=torch.float16)}
    meta = {"source": "EG3D ffhq512-128.pkl", "ünïcode": "✓", "z": "last"}
    p1, p2, p3 = (tmp_path / f"{i}.safetensors" for i in range(3))
    write_model_file(p1, TEACHER, "1", {"x": 1, "y": 2}, a, meta)
    write_model_file(p2, TEACHER, "1", {"x": 1, "y": 2}, dict(reversed(list(a.items()))),
                     dict(reversed(list(meta.items()))))
    assert p1.read_bytes() == p2.read_bytes()  # insertion order does not matter
    write_model_file(p3, TEACHER, "1", {"x": 1, "y": 3}, a, meta)
    assert p3.read_bytes() != p1.read_bytes()  # ... but content does
    data = p1.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    assert n % 8 == 0  # tensor data stays 8-byte aligned
    text = data[8:8 + n].decode("utf-8").rstrip(" ")
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    assert read_model_file(p1).metadata["ünïcode"] == "✓"


def test_expect_names_both_kinds(tmp_path):
    path = tmp_path / "s.safetensors"
    write_model_file(path, "nerfgan_distill.student", "1", {}, {"x": torch.zeros(1)})
    with pytest.raises(ModelFileError, match="is a nerfgan_distill student file, not a nerfgan_distill "
                                             "teacher file") as e:
        read_model_file(path, expect=TEACHER)
    assert str(path) in str(e.value)
    assert read_model_file(path, expect="nerfgan_distill.student").format == "nerfgan_distill.student"
    # teacher.load reports the same mistake
    with pytest.raises(ModelFileError, match="student file, not a nerfgan_distill teacher file"):
        teacher.load(path)


def test_version_and_config_checks(tmp_path):
    path = tmp_path / "v.safetensors"
    raw_file(path, {"x": F32_2}, b"\0" * 8, metadata={**OURS, "format_version": "9"})
    read_error(path, "format version '9' is not understood")
    assert read_model_file(path, versions=("1", "9")).format_version == "9"
    for config, match in [("{", "config metadata is malformed"), ("[1]", "not a JSON object")]:
        raw_file(path, {"x": F32_2}, b"\0" * 8, metadata={**OURS, "config": config})
        read_error(path, match)
    raw_file(path, {"x": F32_2}, b"\0" * 8, metadata={k: v for k, v in OURS.items() if k != "config"})
    read_error(path, "config metadata is malformed")


@pytest.mark.parametrize("metadata", [None, {}, {"format": "pt"}])
def test_a_file_that_is_not_ours(tmp_path, metadata):
    path = raw_file(tmp_path / "foreign.safetensors", {"x": F32_2}, b"\0" * 8, metadata=metadata)
    read_error(path, "not one written by nerfgan_distill")
    with pytest.raises(ModelFileError, match="foreign.safetensors"):
        teacher.load(path)


def test_peek_format(tmp_path):
    path = tmp_path / "c.safetensors"
    write_model_file(path, "nerfgan_distill.checkpoint", "1", {}, {"x": torch.zeros(1000)})
    assert peek_format(path) == "nerfgan_distill.checkpoint"
    buf = io.BytesIO(b"prefix" + path.read_bytes())
    buf.seek(6)
    assert peek_format(buf) == "nerfgan_distill.checkpoint" and buf.tell() == 6  # position restored
    assert read_model_file(buf).format == "nerfgan_distill.checkpoint"  # reads from that position
    assert peek_format(raw_file(tmp_path / "none.safetensors", {"x": F32_2}, b"\0" * 8, metadata=None)) is None
    # only the header is read: a file cut inside its tensor data still peeks
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:-100])
    assert peek_format(cut) == "nerfgan_distill.checkpoint"
    cut.write_bytes(b"\x01\x02")
    with pytest.raises(ModelFileError, match="cut.safetensors.*too short"):
        peek_format(cut)


# ------------------------------------------------------------------------------------------------
# Atomic writes and bad arguments


def test_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "w.safetensors"
    write_model_file(path, TEACHER, "1", {}, {"x": torch.ones(2)})
    before = path.read_bytes()

    def broken(*args):
        raise OSError("disk full")

    for target in ("replace", "fsync"):  # fails after the rename is due, and in the middle of the write
        with monkeypatch.context() as m:
            m.setattr(formats.os, target, broken)
            with pytest.raises(OSError, match="disk full"):
                write_model_file(path, TEACHER, "1", {}, {"x": torch.zeros(1000)})
        assert path.read_bytes() == before
        assert os.listdir(tmp_path) == ["w.safetensors"]  # the temporary file was removed
    write_model_file(path, TEACHER, "1", {}, {"y": torch.zeros(3)})  # replaces an existing file
    assert list(read_model_file(path).tensors) == ["y"] and os.listdir(tmp_path) == ["w.safetensors"]


@pytest.mark.parametrize("tensors,metadata,error,match", [
    ({"x": torch.zeros(2, dtype=torch.complex64)}, None, TypeError, "'x' has dtype torch.complex64"),
    ({"x": torch.zeros(2, dtype=torch.uint16)}, None, TypeError, "'x' has dtype torch.uint16"),
    ({"x": [1, 2]}, None, TypeError, "dict of str to torch.Tensor"),
    ([torch.zeros(1)], None, TypeError, "dict of str to torch.Tensor"),
    ({"": torch.zeros(1)}, None, ValueError, "invalid tensor name ''"),
    ({"__metadata__": torch.zeros(1)}, None, ValueError, "invalid tensor name '__metadata__'"),
    ({1: torch.zeros(1)}, None, ValueError, "invalid tensor name 1"),
    ({"x": torch.zeros(1)}, {"k": 1}, TypeError, "metadata 'k' must be a string"),
    ({"x": torch.zeros(2).to_sparse()}, None, ValueError, "'x' is torch.sparse_coo; only dense"),
])
def test_write_rejects_bad_input(tmp_path, tensors, metadata, error, match):
    path = tmp_path / "bad.safetensors"
    with pytest.raises(error, match=match):
        write_model_file(path, TEACHER, "1", {}, tensors, metadata)
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------------------------------
# Damaged files: every case is a ModelFileError naming the file, never another exception


@pytest.mark.parametrize("header,data,match", [
    (b"", b"", "not valid UTF-8 JSON"),
    (b"\xff\xfe{}", b"", "not valid UTF-8 JSON"),
    (b"{\"a\": ", b"", "not valid UTF-8 JSON"),
    (b"[1, 2]", b"", "must be a JSON object"),
    (b"[" * 100000 + b"]" * 100000, b"", "JSON"),
    (b'{"x": {"dtype": "F32", "shape": [NaN], "data_offsets": [0, 8]}}', b"\0" * 8, "not one written by"),
    # The package keeps the last of two entries for one name: refused, as the first would vanish.
    (b'{"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "x": {"dtype": "I32", "shape": [2], '
     b'"data_offsets": [0, 8]}}', b"\0" * 8, "duplicate key 'x'"),
])
def test_bad_header_text(tmp_path, header, data, match):
    read_error(raw_file(tmp_path / "corrupt.safetensors", header, data), match)


@pytest.mark.parametrize("entries,data", [
    ({"x": {"dtype": "F8", "shape": [2], "data_offsets": [0, 2]}}, b"\0" * 2),
    ({"x": {"dtype": 32, "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8),
    ({"x": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8),
    ({"x": {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}}, b"\0" * 8),
    ({"x": {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}}, b"\0" * 4),
    ({"x": {"dtype": "F32", "shape": 2, "data_offsets": [0, 8]}}, b"\0" * 8),
    ({"x": {"dtype": "F32", "shape": [2 ** 62, 4], "data_offsets": [0, 8]}}, b"\0" * 8),
    ({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 16]}}, b"\0" * 8),  # past the buffer
    ({"x": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, b"\0" * 8),
    ({"x": {"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}}, b"\0" * 8),
    ({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0]}}, b"\0" * 8),
    ({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4),  # span too short
    ({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 12]}}, b"\0" * 12),  # span too long
    ({"x": {"dtype": "F32", "shape": [2]}}, b"\0" * 8),
    ({"x": [1, 2]}, b""),
    ({"x": F32_2, "y": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12),  # overlap
    ({"x": F32_2, "y": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8),  # same bytes
    ({"x": F32_2, "y": {"dtype": "F32", "shape": [1], "data_offsets": [12, 16]}}, b"\0" * 16),  # gap
    ({"x": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12),  # gap at byte 0
    ({"x": F32_2}, b"\0" * 12),  # trailing data
])
def test_bad_tensor_entries(tmp_path, entries, data):
    # The package validates these; formats turns its error into a ModelFileError.
    read_error(raw_file(tmp_path / "corrupt.safetensors", entries, data), "corrupt.safetensors")


# The package reads these dtypes, but our files never hold them (F4 even raises KeyError inside it).
@pytest.mark.parametrize("dtype,shape,size", [("F8_E4M3", [2], 2), ("C64", [2], 16), ("U16", [2], 4),
                                              ("U64", [1], 8), ("F4", [32], 16), ("F8_E8M0", [16], 16)])
def test_dtypes_we_do_not_write(tmp_path, dtype, shape, size):
    path = raw_file(tmp_path / "dtype.safetensors", {"x": {"dtype": dtype, "shape": shape, "data_offsets": [0, size]}},
                    b"\0" * size)
    read_error(path, f"tensor 'x' has dtype {dtype}, which nerfgan_distill files do not hold")


def test_bool_bytes_other_than_0_and_1(tmp_path):
    # The package accepts them; torch leaves such bools undefined, so they would be silent garbage.
    entry = {"dtype": "BOOL", "shape": [2], "data_offsets": [0, 2]}
    read_error(raw_file(tmp_path / "b.safetensors", {"x": entry}, b"\x01\x07"), "'x': BOOL data")
    assert read_model_file(raw_file(tmp_path / "b.safetensors", {"x": entry}, b"\x01\x00")).tensors["x"].tolist() \
        == [True, False]


# Accepted by the package and left so, because what loads is exactly what the file says:
# unknown keys in an entry are ignored, an unpadded header is valid, and a tensor named ""
# is just a name (teacher.load then reports it as an unexpected tensor).
@pytest.mark.parametrize("entries", [{"x": dict(F32_2, extra=1)}, {"": F32_2}])
def test_oddities_the_package_reads_faithfully(tmp_path, entries):
    path = raw_file(tmp_path / "odd.safetensors", entries, struct.pack("<2f", 1.5, -2.0), pad=False)
    (tensor,) = read_model_file(path).tensors.values()
    assert torch.equal(tensor, torch.tensor([1.5, -2.0]))


@pytest.mark.parametrize("metadata", [{**OURS, "a": 1}, {**OURS, "a": None}, ["format"], "x"])
def test_non_string_metadata(tmp_path, metadata):
    path = raw_file(tmp_path / "meta.safetensors", {"x": F32_2}, b"\0" * 8, metadata=metadata)
    read_error(path, "__metadata__ must be an object of string values")
    with pytest.raises(ModelFileError, match="meta.safetensors"):
        peek_format(path)
    raw_file(path, {"__metadata__": None, "x": F32_2}, b"\0" * 8, metadata=None)
    read_error(path, "__metadata__ must be an object of string values")


def test_header_length_bounds(tmp_path):
    path = tmp_path / "len.safetensors"
    for content in (b"", b"\x01\x02\x03"):
        path.write_bytes(content)
        read_error(path, "too short")
    raw_file(path, {"x": F32_2}, b"\0" * 8, length=10 ** 6)
    read_error(path, "exceeds the file size")
    raw_file(path, {}, b"", length=2 ** 64 - 1)
    read_error(path, "exceeds the 100 MB limit")
    with open(path, "wb") as f:  # a (sparse) file bigger than the limit, so only the limit can trip
        f.write(struct.pack("<Q", 100 * 1024 * 1024 + 8))
        f.truncate(8 + 100 * 1024 * 1024 + 64)
    read_error(path, "100 MB")


@pytest.fixture()
def good_file(tmp_path):
    path = tmp_path / "good.safetensors"
    write_model_file(path, TEACHER, "1", {"k": "v"}, {"a": random_bits(torch.float32, (5, 3)),
                                                      "b": random_bits(torch.bool, (7,))})
    return path


def test_truncated_and_extended_files(tmp_path, good_file):
    data = good_file.read_bytes()
    cut = tmp_path / "cut.safetensors"
    for n in list(range(0, 20)) + [len(data) // 2, len(data) - 8, len(data) - 1]:
        cut.write_bytes(data[:n])
        read_error(cut, "cut.safetensors")
    cut.write_bytes(data + b"\0")
    read_error(cut, "damaged")
    with pytest.raises(ModelFileError, match="<file object>"):
        read_model_file(io.BytesIO(data[:-1]))
    with pytest.raises(ModelFileError, match="cut.safetensors"):
        teacher.load(cut)


def test_random_damage_never_crashes(tmp_path, good_file):
    data = good_file.read_bytes()
    g = torch.Generator().manual_seed(0)
    bad = tmp_path / "bad.safetensors"
    refused = 0
    for _ in range(300):
        mutated = bytearray(data)
        for pos in torch.randint(0, len(data), (2,), generator=g).tolist():
            mutated[pos] ^= int(torch.randint(1, 256, (1,), generator=g))
        bad.write_bytes(bytes(mutated))
        try:
            read_model_file(bad)  # a flip inside float tensor data leaves a valid file
        except ModelFileError as e:
            assert str(bad) in str(e)
            refused += 1
    assert refused > 100  # most flips land in the header or the bool bytes


def test_teacher_load_of_damaged_files(tmp_path):
    model = teacher.TriPlaneGenerator(**teacher.tiny_config()[0])
    model.load_state_dict(teacher.random_state(model, seed=0))
    path = tmp_path / "g.safetensors"
    teacher.save(model, path)
    data = bytearray(path.read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    # a header still well-formed JSON but with one tensor's offsets pushed past the buffer
    header = json.loads(data[8:8 + n])
    name = next(k for k in header if k != "__metadata__")
    header[name]["data_offsets"][1] += 4
    broken = raw_file(tmp_path / "broken.safetensors", json.dumps(header).encode(), bytes(data[8 + n:]))
    with pytest.raises(ModelFileError, match="broken.safetensors") as e:
        teacher.load(broken)
    assert isinstance(e.value, ValueError)
