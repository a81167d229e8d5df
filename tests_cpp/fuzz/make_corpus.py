#!/usr/bin/env python3
"""Writes the seed corpus of the GGUF reader fuzzer: small valid files that
cover every value type, both versions, several alignments and tensor types,
plus a few near-valid files that stop at each kind of check.

Usage: make_corpus.py [OUTPUT_DIR]   (default: the corpus/ folder beside this script)
"""
import pathlib
import struct
import sys

# Value type ids and their struct formats.
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
SCALAR_FORMATS = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
                  BOOL: "<?", U64: "<Q", I64: "<q", F64: "<d"}
F32_TYPE, F16_TYPE, Q8_0_TYPE, Q4_K_TYPE, I8_TYPE = 0, 1, 8, 12, 24


def gguf_string(s):
    data = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(data)) + data


def value_bytes(vtype, value, elem_type=None):
    if vtype in SCALAR_FORMATS:
        return struct.pack(SCALAR_FORMATS[vtype], value)
    if vtype == STRING:
        return gguf_string(value)
    out = struct.pack("<IQ", elem_type, len(value))
    for item in value:
        if elem_type == ARRAY:  # nested: item is (inner element type, values)
            out += value_bytes(ARRAY, item[1], item[0])
        else:
            out += value_bytes(elem_type, item)
    return out


def gguf_file(kvs, tensors, version=3, alignment=32):
    """kvs: [(key, type, value[, elem_type])]; tensors: [(name, dims, type id, nbytes)], laid out in order."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for key, vtype, value, *elem in kvs:
        out += gguf_string(key) + struct.pack("<I", vtype) + value_bytes(vtype, value, *elem)
    offset = 0
    for name, dims, type_id, nbytes in tensors:
        out += gguf_string(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
        out += struct.pack("<IQ", type_id, offset)
        offset += -(-nbytes // alignment) * alignment
    out += b"\0" * (-len(out) % alignment)
    for i, (_, _, _, nbytes) in enumerate(tensors):
        out += bytes((i + j) % 251 for j in range(nbytes)) + b"\0" * (-nbytes % alignment)
    return out


def seeds():
    every_scalar = [("general.architecture", STRING, "llama")] + [
        (f"test.{name}", vtype, value) for name, vtype, value in [
            ("u8", U8, 200), ("i8", I8, -100), ("u16", U16, 60000), ("i16", I16, -30000),
            ("u32", U32, 4000000000), ("i32", I32, -2000000000), ("f32", F32, 1.5), ("bool", BOOL, True),
            ("u64", U64, 2**63 + 5), ("i64", I64, -2**62), ("f64", F64, -0.25)]]
    arrays = [
        ("tokenizer.ggml.tokens", ARRAY, ["<s>", "</s>", "hello", "\u00e9t\u00e9"], STRING),
        ("tokenizer.ggml.scores", ARRAY, [0.0, -1.0, -2.5, 3.0], F32),
        ("tokenizer.ggml.token_type", ARRAY, [1, 3, 1, 1], I32),
        ("test.bools", ARRAY, [True, False, True], BOOL),
        ("test.nested", ARRAY, [(U16, [1, 2]), (U16, [3]), (STRING, ["x", "yz"])], ARRAY),
        ("test.empty", ARRAY, [], U64),
    ]
    small_tensors = [("token_embd.weight", [8, 4], F32_TYPE, 128), ("blk.0.attn_q.weight", [32, 2], Q8_0_TYPE, 68),
                     ("output_norm.weight", [16], F16_TYPE, 32)]
    files = {
        "empty_v3.gguf": gguf_file([], []),
        "empty_v2.gguf": gguf_file([], [], version=2),
        "every_scalar.gguf": gguf_file(every_scalar, []),
        "arrays.gguf": gguf_file(arrays, []),
        "tensors.gguf": gguf_file([("general.architecture", STRING, "llama")], small_tensors),
        "q4_k.gguf": gguf_file([], [("blk.0.ffn_down.weight", [256, 1, 1, 1], Q4_K_TYPE, 144)]),
    }
    for alignment in (1, 8, 64):
        files[f"alignment_{alignment}.gguf"] = gguf_file(
            [("general.alignment", U32, alignment)], small_tensors, alignment=alignment)
    # Scalars (no dims) with one-letter names: the densest tensor table a file can have.
    files["scalar_tensors.gguf"] = gguf_file([("general.alignment", U32, 1)],
                                             [(chr(ord("a") + k), [], I8_TYPE, 1) for k in range(8)], alignment=1)
    # Near-valid: each fails one check late in parsing, so mutations start close to the edges.
    full = files["tensors.gguf"]
    files["truncated_data.gguf"] = full[:-10]
    files["truncated_header.gguf"] = full[:len(full) // 3]
    files["alignment_3.gguf"] = gguf_file([("general.alignment", U32, 3)], small_tensors[:1])
    files["five_dims.gguf"] = gguf_file([], [("t", [1, 1, 1, 1, 4], F32_TYPE, 16)])
    files["unknown_tensor_type.gguf"] = gguf_file([], [("t", [4], 4, 16)])
    files["bad_row_length.gguf"] = gguf_file([], [("t", [31], Q8_0_TYPE, 34)])
    # A bool stored as 2: struct's "?" format would normalise it, so the byte is written by hand.
    files["bool_2.gguf"] = (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + gguf_string("test.bool")
                            + struct.pack("<IB", BOOL, 2))
    files["bool_array_2.gguf"] = (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + gguf_string("test.flags")
                                  + struct.pack("<IIQ", ARRAY, BOOL, 3) + b"\x01\x00\x02")
    return files


def main():
    out_dir = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parent / "corpus"
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, data in seeds().items():
        (out_dir / name).write_bytes(data)
    print(f"wrote {len(seeds())} seeds to {out_dir}")


if __name__ == "__main__":
    main()
