"""Malformed, truncated and hostile GGUF files: each must raise a subclass of
orcd.OrcdError whose message says where the problem is (byte offset, key or
tensor name), quickly, without crashing or allocating what the file claims."""
import os
import random
import struct
import time

import gguf
import numpy as np
import pytest

import orcd

VT = gguf.GGUFValueType
F32, F16, Q8_0 = 0, 1, 8
U64_MAX = 2**64 - 1
# A guard against hangs and huge allocations, not a benchmark.
TIME_LIMIT_S = 1.0


# --- building files byte by byte -------------------------------------------------

def gguf_string(s):
    data = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(data)) + data


def header(version=3, n_tensors=0, n_kv=0, magic=b"GGUF"):
    return magic + struct.pack("<IQQ", version, n_tensors, n_kv)


def kv(key, vtype, payload):
    return gguf_string(key) + struct.pack("<I", vtype) + payload


def kv_u32(key, value):
    return kv(key, VT.UINT32, struct.pack("<I", value))


def tensor_info(name, dims, type_id, offset):
    return gguf_string(name) + struct.pack(f"<I{len(dims)}QIQ", len(dims), *dims, type_id, offset)


def padded(data, alignment=32):
    return data + b"\0" * (-len(data) % alignment)


class Sections:
    """A small valid file, built piece by piece, remembering where each field starts."""

    def __init__(self):
        self.data = b""
        self.boundaries = []

    def add(self, *pieces):
        for piece in pieces:
            self.boundaries.append(len(self.data))
            self.data += piece
        return self


def small_file_with_boundaries():
    s = Sections()
    s.add(b"GGUF", struct.pack("<I", 3), struct.pack("<Q", 2), struct.pack("<Q", 4))
    s.add(gguf_string("general.architecture"), struct.pack("<I", VT.STRING), gguf_string("llama"))
    s.add(gguf_string("general.alignment"), struct.pack("<I", VT.UINT32), struct.pack("<I", 32))
    s.add(gguf_string("tokenizer.ggml.tokens"), struct.pack("<I", VT.ARRAY), struct.pack("<IQ", VT.STRING, 2),
          gguf_string("hello"), gguf_string("world"))
    s.add(gguf_string("test.nested"), struct.pack("<I", VT.ARRAY), struct.pack("<IQ", VT.ARRAY, 1),
          struct.pack("<IQ", VT.INT16, 2), struct.pack("<hh", -1, 1))
    s.add(gguf_string("a.weight"), struct.pack("<I", 2), struct.pack("<QQ", 4, 2), struct.pack("<I", F32),
          struct.pack("<Q", 0))
    s.add(gguf_string("b.weight"), struct.pack("<I", 1), struct.pack("<Q", 32), struct.pack("<I", Q8_0),
          struct.pack("<Q", 32))
    header_end = len(s.data)
    s.add(b"\0" * (-header_end % 32))
    s.add(b"\x11" * 32, b"\x22" * 34)
    return s


# --- the check every case goes through -------------------------------------------

def expect_error(path, error_class, *message_parts):
    """Opening path raises error_class (an OrcdError) in under TIME_LIMIT_S, naming every part."""
    assert issubclass(error_class, orcd.OrcdError)
    start = time.monotonic()
    with pytest.raises(error_class) as raised:
        orcd.GGUFFile(str(path))
    elapsed = time.monotonic() - start
    assert elapsed < TIME_LIMIT_S, f"took {elapsed:.2f} s"
    message = str(raised.value)
    for part in message_parts:
        assert str(part) in message, f"{part!r} not in {message!r}"
    return message


def open_or_error(path):
    """Opens path and walks everything, or raises OrcdError; both are fine, anything else is not."""
    start = time.monotonic()
    try:
        with orcd.GGUFFile(str(path)) as f:
            dict(f.metadata)
            for t in f.tensors:
                assert t.data.nbytes == t.nbytes
        result = "ok"
    except orcd.OrcdError:
        result = "error"
    assert time.monotonic() - start < TIME_LIMIT_S
    return result


@pytest.fixture
def write(tmp_path):
    def write_bytes(data, name="bad.gguf"):
        path = tmp_path / name
        path.write_bytes(data)
        return path
    return write_bytes


def test_small_file_is_valid(write):
    # The base of the truncation tests must itself be valid, or they prove nothing.
    s = small_file_with_boundaries()
    with orcd.GGUFFile(str(write(s.data))) as f:
        assert [t.name for t in f.tensors] == ["a.weight", "b.weight"]
        assert f.metadata["tokenizer.ggml.tokens"] == ["hello", "world"]


# --- truncation ----------------------------------------------------------------------

def truncation_points():
    s = small_file_with_boundaries()
    cuts = set(s.boundaries[1:]) | {b + 1 for b in s.boundaries} | {len(s.data) - 1}
    return sorted(c for c in cuts if 0 < c < len(s.data))


@pytest.mark.parametrize("cut", truncation_points())
def test_truncation_at_every_section_boundary(write, cut):
    s = small_file_with_boundaries()
    path = write(s.data[:cut])
    message = expect_error(path, orcd.InvalidFileError, path)
    header_end = s.boundaries[-3]  # where the padding before the tensor data starts
    if cut < 4:
        assert "magic" in message
    elif cut < header_end:
        assert "at byte" in message, message
        assert any(m in message for m in ("truncated", "past the end", "more than the file can hold")), message
    else:  # the header is whole; a tensor's data is cut
        assert "past the end" in message and ("'a.weight'" in message or "'b.weight'" in message), message


def test_empty_file(write):
    path = write(b"")
    expect_error(path, orcd.InvalidFileError, path, "empty")


def writer_file(path, alignment=None):
    writer = gguf.GGUFWriter(str(path), arch="llama")
    if alignment:
        writer.add_custom_alignment(alignment)
    writer.add_uint32("llama.block_count", 2)
    writer.add_array("tokenizer.ggml.tokens", ["a", "bb", "ccc"])
    writer.add_array("tokenizer.ggml.scores", [0.0, -1.0, 2.5])
    writer.add_bool("test.flag", True)
    rng = np.random.default_rng(1)
    writer.add_tensor("token_embd.weight", rng.standard_normal((4, 8)).astype(np.float32))
    writer.add_tensor("blk.0.attn_q.weight", rng.integers(0, 256, (2, 34), dtype=np.uint8),
                      raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    writer.add_tensor("output_norm.weight", rng.standard_normal(8).astype(np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def end_of_tensor_data(path):
    with orcd.GGUFFile(str(path)) as f:
        return max(t.offset + t.nbytes for t in f.tensors)


def test_truncation_at_random_points(tmp_path):
    path = writer_file(tmp_path / "valid.gguf")
    data = path.read_bytes()
    # GGUFWriter pads after the last tensor; a cut in that padding leaves a valid file.
    end = end_of_tensor_data(path)
    rng = random.Random(7)
    for cut in sorted(rng.sample(range(1, end), 200)):
        cut_path = tmp_path / "cut.gguf"
        cut_path.write_bytes(data[:cut])
        expect_error(cut_path, orcd.InvalidFileError, cut_path)


# --- header: magic, version, counts -----------------------------------------------------

@pytest.mark.parametrize("magic", [b"GGML", b"gguf", b"\0\0\0\0", b"FUGG"])
def test_bad_magic(write, magic):
    path = write(header(magic=magic) + b"\0" * 8)
    expect_error(path, orcd.InvalidFileError, "magic", "at byte 0")


@pytest.mark.parametrize("data", [b"G", b"GGU"])
def test_shorter_than_magic(write, data):
    expect_error(write(data), orcd.InvalidFileError, "magic")


@pytest.mark.parametrize("version,message", [
    (1, "version 1 is obsolete"),
    (4, "unknown GGUF version 4"),
    (0, "unknown GGUF version 0"),
    (0xFFFFFFFF, "unknown GGUF version 4294967295"),
    (0x03000000, "big-endian"),  # version 3 written big-endian
    (0x02000000, "big-endian"),
])
def test_bad_version(write, version, message):
    expect_error(write(header(version=version)), orcd.UnsupportedError, message)


@pytest.mark.parametrize("n_tensors,n_kv,where,what", [
    (U64_MAX, 0, 8, f"tensor count {U64_MAX}"),
    (2**63, 0, 8, f"tensor count {2**63}"),
    (2**20 + 1, 0, 8, f"tensor count {2**20 + 1}"),
    (0, U64_MAX, 16, f"metadata count {U64_MAX}"),
    (0, 2**63 + 1, 16, f"metadata count {2**63 + 1}"),
    (0, 5, 16, "metadata count 5"),  # 5 pairs of at least 14 bytes cannot fit in the 64 that follow
])
def test_counts_beyond_the_file(write, n_tensors, n_kv, where, what):
    path = write(header(n_tensors=n_tensors, n_kv=n_kv) + b"\0" * 64)
    expect_error(path, orcd.InvalidFileError, what, f"at byte {where}")


def test_counts_larger_than_what_follows(write):
    # A count the file could hold, but it ends after the first pair.
    body = kv_u32("general." + "k" * 30, 1)
    path = write(header(n_kv=2) + body)
    expect_error(path, orcd.InvalidFileError, "truncated", "metadata key", f"at byte {24 + len(body)}")


# --- metadata -------------------------------------------------------------------------------

KEY_AT = 24  # the first key follows the 24-byte header


@pytest.mark.parametrize("length", [U64_MAX, 2**63, 1000])
def test_key_length_past_the_end(write, length):
    path = write(header(n_kv=1) + struct.pack("<Q", length) + b"abcdefgh" * 4)
    expect_error(path, orcd.InvalidFileError, "metadata key", f"{length} bytes", "past the end", f"at byte {KEY_AT}")


def test_key_longer_than_the_limit(write):
    path = write(header(n_kv=1) + kv_u32("k" * 70000, 1))
    expect_error(path, orcd.InvalidFileError, "metadata key of 70000 bytes", "limit", f"at byte {KEY_AT}")


def test_empty_key(write):
    path = write(header(n_kv=1) + kv_u32("", 1))
    expect_error(path, orcd.InvalidFileError, "empty metadata key", f"at byte {KEY_AT}")


def test_duplicate_key(write):
    first = kv_u32("general.x", 1)
    path = write(header(n_kv=2) + first + kv_u32("general.x", 2))
    expect_error(path, orcd.InvalidFileError, "duplicate metadata key 'general.x'", f"at byte {KEY_AT + len(first)}")


@pytest.mark.parametrize("length", [U64_MAX, 2**62, 9])
def test_string_value_length_past_the_end(write, length):
    prefix = header(n_kv=1) + gguf_string("general.name") + struct.pack("<I", VT.STRING)
    path = write(prefix + struct.pack("<Q", length) + b"12345678")
    expect_error(path, orcd.InvalidFileError, "string value", "past the end", f"at byte {len(prefix)}")


@pytest.mark.parametrize("type_id", [13, 14, 255, 0xFFFFFFFF])
def test_unknown_value_type(write, type_id):
    prefix = header(n_kv=1) + gguf_string("general.odd")
    path = write(prefix + struct.pack("<I", type_id) + b"\0" * 16)
    expect_error(path, orcd.InvalidFileError, "key 'general.odd'", f"unknown value type {type_id}",
                 f"at byte {len(prefix)}")


def test_unknown_array_element_type(write):
    prefix = header(n_kv=1) + gguf_string("test.arr") + struct.pack("<I", VT.ARRAY)
    path = write(prefix + struct.pack("<IQ", 13, 1) + b"\0" * 16)
    expect_error(path, orcd.InvalidFileError, "key 'test.arr'", "unknown array element type 13",
                 f"at byte {len(prefix)}")


@pytest.mark.parametrize("elem_type", [VT.UINT8, VT.UINT64, VT.BOOL, VT.STRING, VT.ARRAY])
@pytest.mark.parametrize("count", [U64_MAX, 2**63, 2**61 + 1, 2**32])
def test_array_count_beyond_the_file(write, elem_type, count):
    # Each count would need more bytes than the file has; checked before anything is reserved.
    prefix = header(n_kv=1) + gguf_string("tokenizer.ggml.tokens") + struct.pack("<II", VT.ARRAY, elem_type)
    path = write(prefix + struct.pack("<Q", count) + b"\0" * 64)
    expect_error(path, orcd.InvalidFileError, "key 'tokenizer.ggml.tokens'", f"array of {count}",
                 "past the end", f"at byte {len(prefix)}")


def test_string_in_array_past_the_end(write):
    prefix = header(n_kv=1) + gguf_string("tokenizer.ggml.tokens") + struct.pack("<IIQ", VT.ARRAY, VT.STRING, 2)
    first = gguf_string("ok")
    path = write(prefix + first + struct.pack("<Q", 2**40) + b"x" * 16)
    expect_error(path, orcd.InvalidFileError, "array string", "past the end", f"at byte {len(prefix) + len(first)}")


def test_arrays_nested_too_deep(write):
    key = "test.deep"
    payload = struct.pack("<IQ", VT.ARRAY, 1) * 20 + struct.pack("<IQ", VT.UINT8, 0)
    path = write(header(n_kv=1) + kv(key, VT.ARRAY, payload))
    expect_error(path, orcd.InvalidFileError, "key 'test.deep'", "nested deeper")


def test_bool_neither_0_nor_1(write):
    prefix = header(n_kv=1) + gguf_string("test.flag") + struct.pack("<I", VT.BOOL)
    path = write(prefix + b"\x02")
    expect_error(path, orcd.InvalidFileError, "key 'test.flag'", "bool value 2", f"at byte {len(prefix)}")


def test_bool_array_element_neither_0_nor_1(write):
    prefix = header(n_kv=1) + gguf_string("test.flags") + struct.pack("<IIQ", VT.ARRAY, VT.BOOL, 4)
    path = write(prefix + b"\x01\x00\xff\x01")
    expect_error(path, orcd.InvalidFileError, "key 'test.flags'", "bool array element 2 is 255",
                 f"at byte {len(prefix) + 2}")


@pytest.mark.parametrize("value", [0, 3, 48, 2**31])
def test_bad_alignment_value(write, value):
    path = write(padded(header(n_kv=1) + kv_u32("general.alignment", value)))
    expect_error(path, orcd.InvalidFileError, path, f"general.alignment {value}", "power of two")


@pytest.mark.parametrize("vtype,payload", [
    (VT.STRING, gguf_string("32")),
    (VT.FLOAT32, struct.pack("<f", 32.0)),
    (VT.INT32, struct.pack("<i", -32)),
])
def test_alignment_of_the_wrong_type(write, vtype, payload):
    path = write(padded(header(n_kv=1) + kv("general.alignment", vtype, payload)))
    expect_error(path, orcd.InvalidFileError, "general.alignment must be an unsigned integer")


def test_names_that_are_not_utf8_in_messages(write):
    # The message quotes the key's raw bytes; they reach Python escaped, as the same error class.
    bad_key = b"general.\xff\xfe"
    first = gguf_string(bad_key) + struct.pack("<II", VT.UINT32, 1)
    path = write(header(n_kv=2) + first + first)
    expect_error(path, orcd.InvalidFileError, "duplicate metadata key 'general.\\xff\\xfe'",
                 f"at byte {KEY_AT + len(first)}")


# --- tensor infos ---------------------------------------------------------------------------

def one_tensor_file(name="blk.0.w", dims=(8,), type_id=F32, offset=0, data_bytes=32):
    info = tensor_info(name, dims, type_id, offset)
    return padded(header(n_tensors=1) + info) + b"\x5a" * data_bytes


def test_one_tensor_file_is_valid(write):
    with orcd.GGUFFile(str(write(one_tensor_file()))) as f:
        assert f.tensor("blk.0.w").shape == (8,)


@pytest.mark.parametrize("n_dims", [5, 8, 2**31, 2**32 - 1])
def test_too_many_dims(write, n_dims):
    prefix = header(n_tensors=1) + gguf_string("blk.0.w")
    path = write(prefix + struct.pack("<I", n_dims) + struct.pack("<Q", 1) * 8 + b"\0" * 64)
    expect_error(path, orcd.InvalidFileError, "tensor 'blk.0.w'", f"n_dims {n_dims}", f"at byte {len(prefix)}")


@pytest.mark.parametrize("dims", [
    (2**32, 2**32),
    (2**63, 2),
    (2**16, 2**16, 2**16, 2**16),
    (U64_MAX, 1),
])
def test_dims_whose_product_overflows(write, dims):
    path = write(one_tensor_file(dims=dims))
    expect_error(path, orcd.InvalidFileError, "tensor 'blk.0.w'", "overflows", "at byte")


def test_byte_size_overflows(write):
    # 2^62 elements fit in int64, 2^62 * 4 bytes do not.
    path = write(one_tensor_file(dims=(2**62,)))
    expect_error(path, orcd.InvalidFileError, "tensor 'blk.0.w'", "byte size overflows")


def test_huge_but_representable_tensor_past_the_end(write):
    path = write(one_tensor_file(dims=(2**40,)))
    expect_error(path, orcd.InvalidFileError, "tensor 'blk.0.w'", "past the end")


@pytest.mark.parametrize("type_id", [4, 5, 31, 36, 1000, 2**32 - 1])
def test_unknown_tensor_type(write, type_id):
    path = write(one_tensor_file(type_id=type_id))
    expect_error(path, orcd.UnsupportedError, path, "tensor 'blk.0.w'", f"unknown ggml type id {type_id}")


def test_row_not_a_whole_number_of_blocks(write):
    path = write(one_tensor_file(dims=(33,), type_id=Q8_0, data_bytes=68))
    expect_error(path, orcd.InvalidFileError, "tensor 'blk.0.w'", "row length 33", "Q8_0 block size 32")


@pytest.mark.parametrize("length", [U64_MAX, 2**40, 2000])
def test_tensor_name_length(write, length):
    path = write(header(n_tensors=1) + struct.pack("<Q", length) + b"n" * 64)
    expect_error(path, orcd.InvalidFileError, "tensor name", f"{length} bytes", "at byte 24")


def test_duplicate_tensor_name(write):
    first = tensor_info("x.weight", (8,), F32, 0)
    path = write(padded(header(n_tensors=2) + first + tensor_info("x.weight", (8,), F32, 32)) + b"\0" * 64)
    expect_error(path, orcd.InvalidFileError, "duplicate tensor name 'x.weight'", f"at byte {24 + len(first)}")


@pytest.mark.parametrize("offset", [32, 64, 2**40, U64_MAX - 31, 2**64 - 2**30])
def test_offset_past_the_end(write, offset):
    path = write(one_tensor_file(offset=offset))
    expect_error(path, orcd.InvalidFileError, path, "tensor 'blk.0.w'", "past the end", hex(offset))


@pytest.mark.parametrize("offset", [1, 4, 31, U64_MAX])
def test_offset_not_aligned(write, offset):
    info_prefix = header(n_tensors=1) + tensor_info("blk.0.w", (8,), F32, 0)[:-8]
    path = write(one_tensor_file(offset=offset))
    expect_error(path, orcd.InvalidFileError, "tensor 'blk.0.w'", hex(offset), "alignment 32",
                 f"at byte {len(info_prefix)}")


@pytest.mark.parametrize("second_offset", [0, 32, 64])
def test_overlapping_tensors(write, second_offset):
    # 'big' holds 96 bytes at offset 0; 'small' starts inside it.
    infos = tensor_info("big", (24,), F32, 0) + tensor_info("small", (8,), F32, second_offset)
    path = write(padded(header(n_tensors=2) + infos) + b"\0" * 128)
    expect_error(path, orcd.InvalidFileError, "'big'", "'small'", "overlap")


# --- not a file at all -------------------------------------------------------------------------

def test_directory(tmp_path):
    expect_error(tmp_path, orcd.InvalidArgumentError, tmp_path, "not a regular file")


def test_missing_file(tmp_path):
    path = tmp_path / "no_such_model.gguf"
    expect_error(path, orcd.InvalidArgumentError, path, "cannot open", "No such file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read files without read permission")
def test_unreadable_file(write):
    path = write(one_tensor_file())
    path.chmod(0)
    expect_error(path, orcd.InvalidArgumentError, path, "Permission denied")


# --- mutations of a valid GGUFWriter file ------------------------------------------------------

@pytest.fixture
def valid_writer_file(tmp_path):
    path = writer_file(tmp_path / "valid.gguf", alignment=64)
    assert open_or_error(path) == "ok"
    return path


def patched(data, offset, fmt, value):
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def test_mutated_alignment(valid_writer_file, write):
    data = valid_writer_file.read_bytes()
    value_at = data.index(gguf_string("general.alignment")) + len(gguf_string("general.alignment")) + 4
    assert struct.unpack_from("<I", data, value_at)[0] == 64
    for value in (0, 3, 96):
        expect_error(write(patched(data, value_at, "<I", value)), orcd.InvalidFileError, f"general.alignment {value}")
    # 16 divides 64, so every offset stays aligned, but the data now starts elsewhere.
    assert open_or_error(write(patched(data, value_at, "<I", 16))) in ("ok", "error")


def test_mutated_counts(valid_writer_file, write):
    data = valid_writer_file.read_bytes()
    n_tensors, n_kv = struct.unpack_from("<QQ", data, 8)
    for value in (n_kv + 1, n_kv + 1000, U64_MAX):
        expect_error(write(patched(data, 16, "<Q", value)), orcd.InvalidFileError, "at byte")
    expect_error(write(patched(data, 8, "<Q", U64_MAX)), orcd.InvalidFileError, "tensor count", "at byte 8")
    # One tensor more: its info is read from the padding, which makes an F32 scalar named ''
    # at offset 0, on top of the first tensor's data.
    expect_error(write(patched(data, 8, "<Q", n_tensors + 1)), orcd.InvalidFileError, "'token_embd.weight'",
                 "overlap")


def test_mutated_tensor_fields(valid_writer_file, write):
    data = valid_writer_file.read_bytes()
    name = gguf_string("blk.0.attn_q.weight")
    n_dims_at = data.index(name) + len(name)
    type_at = n_dims_at + 4 + 2 * 8
    offset_at = type_at + 4
    assert struct.unpack_from("<I", data, type_at)[0] == Q8_0
    expect_error(write(patched(data, type_at, "<I", 99)), orcd.UnsupportedError, "'blk.0.attn_q.weight'", "99")
    expect_error(write(patched(data, n_dims_at, "<I", 5)), orcd.InvalidFileError, "'blk.0.attn_q.weight'", "n_dims 5")
    expect_error(write(patched(data, offset_at, "<Q", 0)), orcd.InvalidFileError, "overlap")
    expect_error(write(patched(data, offset_at, "<Q", 2**50)), orcd.InvalidFileError, "'blk.0.attn_q.weight'",
                 "past the end")


def test_random_byte_mutations_never_crash(valid_writer_file, write):
    data = valid_writer_file.read_bytes()
    rng = random.Random(11)
    outcomes = {"ok": 0, "error": 0}
    for _ in range(1500):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(mutated))
            mutated[at] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)])
        outcomes[open_or_error(write(bytes(mutated)))] += 1
    # Both outcomes occur: mutations in tensor data are harmless, those in the header are not.
    assert outcomes["ok"] > 0 and outcomes["error"] > 0, outcomes
