"""orcd.GGUFFile agrees with gguf.GGUFReader (the reference implementation of
the format) on the real default model and on files written with gguf.GGUFWriter
that cover every value type, both versions and several alignments."""
import gc
import math
import struct

import gguf
import numpy as np
import pytest

import orcd

VT = gguf.GGUFValueType

# numpy dtype of each numeric GGUF element type, as both readers should report it.
NUMPY_DTYPES = {
    VT.UINT8: np.uint8, VT.INT8: np.int8, VT.UINT16: np.uint16, VT.INT16: np.int16,
    VT.UINT32: np.uint32, VT.INT32: np.int32, VT.UINT64: np.uint64, VT.INT64: np.int64,
    VT.FLOAT32: np.float32, VT.FLOAT64: np.float64, VT.BOOL: np.bool_,
}


def reference_value(field):
    """The Python value orcd should give for a GGUFReader field (arrays of arrays excepted:
    GGUFReader flattens them, so tests check those against what was written)."""
    if field.types[0] != VT.ARRAY:
        return field.contents()
    assert len(field.types) == 2, f"{field.name}: nested arrays are compared with the written values"
    elem_type = field.types[1]
    if elem_type == VT.STRING:
        return field.contents()
    return np.concatenate([field.parts[i] for i in field.data]).astype(NUMPY_DTYPES[elem_type])


def assert_same_value(actual, expected, where):
    """Equal value and equal Python/numpy type; floats compared bit for bit."""
    if isinstance(expected, np.ndarray):
        assert isinstance(actual, np.ndarray), f"{where}: expected a numpy array, got {type(actual).__name__}"
        assert actual.dtype == expected.dtype, f"{where}: dtype {actual.dtype} != {expected.dtype}"
        assert actual.shape == expected.shape, f"{where}: shape {actual.shape} != {expected.shape}"
        assert actual.tobytes() == expected.tobytes(), f"{where}: array contents differ"
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{where}: expected a list, got {type(actual).__name__}"
        assert len(actual) == len(expected), f"{where}: length {len(actual)} != {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_same_value(a, e, f"{where}[{i}]")
    elif isinstance(expected, float):
        assert type(actual) is float, f"{where}: expected a float, got {type(actual).__name__}"
        assert struct.pack("<d", actual) == struct.pack("<d", expected), f"{where}: {actual!r} != {expected!r}"
    else:
        assert type(actual) is type(expected), f"{where}: type {type(actual).__name__} != {type(expected).__name__}"
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


def metadata_fields(reader):
    """GGUFReader's fields minus the header pseudo-fields (GGUF.version, ...)."""
    return {name: field for name, field in reader.fields.items() if not name.startswith("GGUF.")}


def reference_tensor_bytes(reader_tensor):
    return np.asarray(reader_tensor.data).reshape(-1).view(np.uint8)


def assert_agrees_with_reader(f, reader, nested_written=None):
    """Every header value, metadata key/value and tensor of f equals GGUFReader's."""
    nested_written = nested_written or {}
    assert f.version == int(reader.fields["GGUF.version"].parts[0][0])
    assert f.alignment == int(reader.alignment)
    assert f.data_offset == reader.data_offset

    fields = metadata_fields(reader)
    metadata = f.metadata
    assert list(metadata) == list(fields), "metadata keys differ or are in another order"
    for key, field in fields.items():
        expected = nested_written[key] if key in nested_written else reference_value(field)
        assert_same_value(metadata[key], expected, key)

    tensors = f.tensors
    assert [t.name for t in tensors] == [t.name for t in reader.tensors]
    for t, ref in zip(tensors, reader.tensors):
        assert t.type == ref.tensor_type.name, t.name
        assert t.shape == tuple(int(d) for d in ref.shape), t.name
        assert t.n_elements == int(ref.n_elements), t.name
        assert t.offset == ref.data_offset, t.name
        assert t.nbytes == int(ref.n_bytes), t.name
        assert f.tensor(t.name).offset == t.offset
        assert np.array_equal(t.data, reference_tensor_bytes(ref)), f"{t.name}: data differs"


# --- the real default model ----------------------------------------------------


@pytest.fixture(scope="module")
def default_model(default_model_path):
    """(path, GGUFReader) of the default model; GGUFReader takes seconds, so it is parsed once."""
    return default_model_path, gguf.GGUFReader(default_model_path)


def test_default_model_agrees_with_gguf_reader(default_model):
    path, reader = default_model
    with orcd.GGUFFile(path) as f:
        assert f.version == 3
        assert len(f.tensors) == len(reader.tensors) > 0
        assert_agrees_with_reader(f, reader)


def test_default_model_vocabulary_types(default_model):
    # The vocabulary is the largest metadata: a list of str, numbers as numpy arrays.
    path, reader = default_model
    with orcd.GGUFFile(path) as f:
        tokens = f.metadata["tokenizer.ggml.tokens"]
        assert isinstance(tokens, list) and len(tokens) == len(reader.fields["tokenizer.ggml.tokens"].data) > 1000
        assert all(type(t) is str for t in tokens)
        assert f.metadata["tokenizer.ggml.token_type"].dtype == np.int32


def test_tensor_data_is_a_zero_copy_view_of_one_mapping(default_model):
    path, _ = default_model
    with orcd.GGUFFile(path) as f:
        a, b = f.tensors[0], f.tensors[-1]
        view_a, view_b = a.data, b.data
        assert not view_a.flags.owndata and not view_b.flags.owndata
        # Both views point into one mapping of the whole file, at the tensors' file offsets.
        assert view_b.ctypes.data - view_a.ctypes.data == b.offset - a.offset
        assert f.tensor(a.name).data.ctypes.data == view_a.ctypes.data
        assert view_a.dtype == np.uint8 and view_a.shape == (a.nbytes,)


def test_tensor_data_is_read_only(default_model):
    path, _ = default_model
    with orcd.GGUFFile(path) as f:
        view = f.tensors[0].data
        assert not view.flags.writeable
        with pytest.raises(ValueError):
            view[0] = 1
        with pytest.raises(ValueError):
            view.setflags(write=True)


def test_tensor_data_keeps_the_mapping_alive_after_close(default_model):
    path, reader = default_model
    f = orcd.GGUFFile(path)
    name = f.tensors[-1].name
    view = f.tensor(name).data
    f.close()
    with pytest.raises(orcd.ClosedError):
        f.metadata
    with pytest.raises(orcd.ClosedError):
        f.tensors
    del f
    gc.collect()
    expected = reference_tensor_bytes(next(t for t in reader.tensors if t.name == name))
    assert np.array_equal(view, expected)


def test_context_manager_closes(default_model):
    path, _ = default_model
    with orcd.GGUFFile(path) as f:
        assert f.tensors
    with pytest.raises(orcd.ClosedError):
        f.tensor("token_embd.weight")


def test_unknown_tensor_name_is_an_invalid_argument(default_model):
    path, _ = default_model
    with orcd.GGUFFile(path) as f:
        with pytest.raises(orcd.InvalidArgumentError, match="no_such.weight"):
            f.tensor("no_such.weight")


# --- files written with gguf.GGUFWriter ---------------------------------------

# (key, value type, value, element type for arrays)
EVERY_SCALAR = [
    ("test.u8", VT.UINT8, 255), ("test.i8", VT.INT8, -128),
    ("test.u16", VT.UINT16, 65535), ("test.i16", VT.INT16, -32768),
    ("test.u32", VT.UINT32, 2**32 - 1), ("test.i32", VT.INT32, -2**31),
    ("test.u64", VT.UINT64, 2**64 - 1), ("test.i64", VT.INT64, -2**63),
    ("test.f32", VT.FLOAT32, -1.5e-7), ("test.f64", VT.FLOAT64, 0.1),
    ("test.f64_inf", VT.FLOAT64, -math.inf),
    ("test.bool_true", VT.BOOL, True), ("test.bool_false", VT.BOOL, False),
    ("test.string", VT.STRING, "h\u00e9llo \u4e16\u754c \U0001f600"),
    ("test.string_empty", VT.STRING, ""),
]
EVERY_ARRAY = [
    ("test.array.u8", VT.UINT8, [0, 1, 255]), ("test.array.i8", VT.INT8, [-128, 0, 127]),
    ("test.array.u16", VT.UINT16, [0, 65535]), ("test.array.i16", VT.INT16, [-32768, 32767]),
    ("test.array.u32", VT.UINT32, [0, 2**32 - 1]), ("test.array.i32", VT.INT32, [-2**31, 2**31 - 1]),
    ("test.array.u64", VT.UINT64, [0, 2**64 - 1]), ("test.array.i64", VT.INT64, [-2**63, 2**63 - 1]),
    ("test.array.f32", VT.FLOAT32, [0.5, -1.5e-7, math.inf]), ("test.array.f64", VT.FLOAT64, [0.1, -2.0]),
    ("test.array.bool", VT.BOOL, [True, False, True]),
    ("test.array.string", VT.STRING, ["a", "", "\u00e9t\u00e9", "x" * 300]),
    ("test.array.one", VT.INT32, [7]),
]
# Arrays of arrays, with what orcd should return for each (GGUFReader cannot say).
NESTED_ARRAYS = {
    "test.array.nested_ints": ([[1, 2, 3], [4]], [np.array([1, 2, 3], np.int32), np.array([4], np.int32)]),
    "test.array.nested_strings": ([["a", "bc"], ["d"]], [["a", "bc"], ["d"]]),
    "test.array.nested_mixed": ([[0.5], ["s"], [True, False]],
                                [np.array([0.5], np.float32), ["s"], np.array([True, False])]),
    "test.array.nested_twice": ([[[1], [2, 3]], [[4]]],
                                [[np.array([1], np.int32), np.array([2, 3], np.int32)], [np.array([4], np.int32)]]),
}


def random_tensors(seed=0):
    """(name, raw bytes as GGUFWriter wants them, ggml type): plain and quantised, 1 to 4 dims."""
    rng = np.random.default_rng(seed)
    QT = gguf.GGMLQuantizationType
    return [
        ("t.f32", rng.standard_normal((3, 5)).astype(np.float32), None),
        ("t.f16", rng.standard_normal((7,)).astype(np.float16), None),
        ("t.i32", rng.integers(-9, 9, (2, 3, 4)).astype(np.int32), None),
        ("t.f32_4d", rng.standard_normal((2, 1, 3, 4)).astype(np.float32), None),
        ("t.q8_0", rng.integers(0, 256, (2, 34 * 2), dtype=np.uint8), QT.Q8_0),
        ("t.q4_k", rng.integers(0, 256, (3, 144), dtype=np.uint8), QT.Q4_K),
        ("t.q6_k", rng.integers(0, 256, (1, 210), dtype=np.uint8), QT.Q6_K),
    ]


def write_gguf(path, alignment=None, kv=True, tensors=True):
    writer = gguf.GGUFWriter(str(path), arch="test")
    if alignment is not None:
        writer.add_custom_alignment(alignment)
    if kv:
        for key, vtype, value in EVERY_SCALAR:
            writer.add_key_value(key, value, vtype)
        for key, elem_type, value in EVERY_ARRAY:
            writer.add_key_value(key, value, VT.ARRAY, sub_type=elem_type)
        for key, (written, _) in NESTED_ARRAYS.items():
            writer.add_array(key, written)
    if tensors:
        for name, data, raw_dtype in random_tensors():
            writer.add_tensor(name, data, raw_dtype=raw_dtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


NESTED_EXPECTED = {key: expected for key, (_, expected) in NESTED_ARRAYS.items()}


@pytest.mark.parametrize("alignment", [None, 1, 8, 64])
def test_writer_file_agrees_with_gguf_reader(tmp_path, alignment):
    path = write_gguf(tmp_path / "every_type.gguf", alignment=alignment)
    reader = gguf.GGUFReader(str(path))
    with orcd.GGUFFile(str(path)) as f:
        assert f.alignment == (alignment or 32)
        assert all(t.offset % f.alignment == 0 for t in f.tensors)
        assert_agrees_with_reader(f, reader, NESTED_EXPECTED)


def test_writer_values_round_trip(tmp_path):
    # Independent of GGUFReader: what was written is what orcd reads.
    path = write_gguf(tmp_path / "every_type.gguf")
    with orcd.GGUFFile(str(path)) as f:
        md = f.metadata
        assert md["general.architecture"] == "test"
        for key, vtype, value in EVERY_SCALAR:
            expected = float(np.float32(value)) if vtype == VT.FLOAT32 else value
            assert_same_value(md[key], expected, key)
        for key, elem_type, value in EVERY_ARRAY:
            expected = value if elem_type == VT.STRING else np.array(value, dtype=NUMPY_DTYPES[elem_type])
            assert_same_value(md[key], expected, key)
        for key, expected in NESTED_EXPECTED.items():
            assert_same_value(md[key], expected, key)
        for name, data, _ in random_tensors():
            t = f.tensor(name)
            assert t.data.tobytes() == data.tobytes(), name
        assert f.tensor("t.i32").shape == (4, 3, 2)  # innermost first
        assert f.tensor("t.q4_k").shape == (256, 3)
        assert f.tensor("t.q4_k").type == "Q4_K"


@pytest.mark.parametrize("version", [2, 3])
def test_versions_2_and_3(tmp_path, version):
    # Versions 2 and 3 share one layout; GGUFWriter writes 3, so 2 is made by patching the field.
    path = write_gguf(tmp_path / f"v{version}.gguf")
    data = bytearray(path.read_bytes())
    assert struct.unpack_from("<I", data, 4)[0] == 3
    struct.pack_into("<I", data, 4, version)
    path.write_bytes(bytes(data))
    reader = gguf.GGUFReader(str(path))
    with orcd.GGUFFile(str(path)) as f:
        assert f.version == version
        assert_agrees_with_reader(f, reader, NESTED_EXPECTED)


@pytest.mark.parametrize("kv,tensors", [(False, False), (True, False), (False, True)])
def test_files_without_metadata_or_tensors(tmp_path, kv, tensors):
    path = write_gguf(tmp_path / "partial.gguf", kv=kv, tensors=tensors)
    reader = gguf.GGUFReader(str(path))
    with orcd.GGUFFile(str(path)) as f:
        assert_agrees_with_reader(f, reader, NESTED_EXPECTED)
        assert bool(f.tensors) == tensors


def test_empty_array(tmp_path):
    # GGUFWriter refuses empty arrays, but the format allows them: written by hand.
    key = b"test.empty"
    data = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", len(key)) + key
    data += struct.pack("<IIQ", VT.ARRAY, VT.UINT16, 0)
    path = tmp_path / "empty_array.gguf"
    path.write_bytes(data)
    with orcd.GGUFFile(str(path)) as f:
        assert_same_value(f.metadata["test.empty"], np.zeros(0, np.uint16), "test.empty")
