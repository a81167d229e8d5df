"""orcd._core.dequantize against gguf's numpy dequantisation: bit-exact on random blocks."""
import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as Q  # noqa: E402

import orcd  # noqa: E402
from orcd import _core  # noqa: E402

TYPES = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
         "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS"]

# Byte offsets of the fp16 scale fields of each block (d, dmin, m): random
# bytes there could be NaN or inf, which the reference would propagate too,
# but finite scales make every element a meaningful comparison.
SCALE_OFFSETS = {
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
    "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
    "IQ4_NL": [0], "IQ4_XS": [0],
}


def random_finite_halves(rng, n):
    h = rng.integers(0, 1 << 16, size=n, dtype=np.uint16)
    exponent_all_ones = (h & 0x7C00) == 0x7C00
    return np.where(exponent_all_ones, h & 0xBFFF, h).astype(np.uint16)  # clear one exponent bit


def random_tensor(type_name, rows, row_length, rng):
    qtype = Q[type_name]
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    n_blocks = rows * row_length // block_size
    if type_name == "F16":
        return random_finite_halves(rng, n_blocks).view(np.uint8).reshape(rows, -1)
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for offset in SCALE_OFFSETS.get(type_name, []):
        raw[:, offset:offset + 2] = random_finite_halves(rng, n_blocks).view(np.uint8).reshape(-1, 2)
    return raw.reshape(rows, -1)


def block_size(type_name):
    return gguf.GGML_QUANT_SIZES[Q[type_name]][0]


@pytest.mark.parametrize("type_name", TYPES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dequantize_bit_exact_with_gguf(type_name, seed):
    rng = np.random.default_rng(seed)
    rows, row_length = 7, 3 * max(block_size(type_name), 32)
    raw = random_tensor(type_name, rows, row_length, rng)
    expected = gguf.quants.dequantize(raw, Q[type_name]).astype(np.float32)
    got = _core.dequantize(raw, type_name, (rows, row_length))
    assert got.dtype == np.float32 and got.shape == (rows, row_length)
    # Compare bit patterns: exact, and NaN payloads (F32/BF16 random bytes) count too.
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))


@pytest.mark.parametrize("type_name", TYPES)
def test_dequantize_many_blocks_in_one_row(type_name):
    rng = np.random.default_rng(42)
    row_length = 64 * max(block_size(type_name), 32)
    raw = random_tensor(type_name, 1, row_length, rng)
    expected = gguf.quants.dequantize(raw, Q[type_name]).reshape(-1)
    got = _core.dequantize(raw.reshape(-1), type_name, (row_length,))
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))


def test_dequantize_three_dimensional_shape():
    rng = np.random.default_rng(3)
    raw = random_tensor("Q8_0", 2 * 3, 64, rng)
    got = _core.dequantize(raw, "Q8_0", (2, 3, 64))
    expected = gguf.quants.dequantize(raw, Q.Q8_0).reshape(2, 3, 64)
    np.testing.assert_array_equal(got, expected)


def test_dequantize_accepts_unaligned_view():
    rng = np.random.default_rng(4)
    raw = random_tensor("Q4_K", 1, 256, rng).reshape(-1)
    buffer = np.zeros(raw.size + 1, dtype=np.uint8)
    buffer[1:] = raw
    got = _core.dequantize(buffer[1:], "Q4_K", (256,))
    np.testing.assert_array_equal(got, gguf.quants.dequantize(raw, Q.Q4_K))


def test_unknown_type_name_is_invalid_argument():
    with pytest.raises(orcd.InvalidArgumentError, match="NOPE"):
        _core.dequantize(np.zeros(18, np.uint8), "NOPE", (32,))


def test_known_but_unhandled_type_is_unsupported():
    with pytest.raises(orcd.UnsupportedError, match="IQ2_XXS"):
        _core.dequantize(np.zeros(66, np.uint8), "IQ2_XXS", (256,))


def test_raw_size_must_match_shape():
    with pytest.raises(orcd.InvalidArgumentError, match="bytes"):
        _core.dequantize(np.zeros(17, np.uint8), "Q4_0", (32,))
    with pytest.raises(orcd.InvalidArgumentError):
        _core.dequantize(np.zeros(36, np.uint8), "Q4_0", (32,))


def test_row_must_be_whole_blocks():
    with pytest.raises(orcd.InvalidArgumentError, match="block"):
        _core.dequantize(np.zeros(18, np.uint8), "Q4_0", (16,))


def test_negative_dimension_is_invalid_argument():
    with pytest.raises(orcd.InvalidArgumentError):
        _core.dequantize(np.zeros(0, np.uint8), "F32", (-1, 4))
