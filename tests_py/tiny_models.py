"""Tiny synthetic GGUF models (llama, phi3, qwen2) written with gguf.GGUFWriter.

Sizes are odd where the formats allow (row lengths must be multiples of 32 for
Q8_0/Q4_0/Q5_0), weights are random and never zero, and each model mixes F32,
F16, Q8_0, Q5_0 and Q4_0 matrices so that every path of a forward pass sees
more than one storage type. Variants cover RoPE frequency factors, tied output
embeddings and GQA; the `architecture`, `omit` and `wrong_shape` arguments
produce the broken files the error tests need.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import gguf
import numpy as np

Q = gguf.GGMLQuantizationType


@dataclass(frozen=True)
class TinySpec:
    name: str
    architecture: str
    n_layers: int
    n_embd: int
    n_ff: int
    n_heads: int
    n_kv_heads: int
    n_vocab: int = 300
    context_length: int = 512
    rope_freq_base: float = 10000.0
    rms_eps: float = 1e-5
    biases: bool = False
    tied_output: bool = False
    rope_freqs_tensor: bool = False          # llama: Llama-3 style per-pair divisors as a tensor
    llama3_scaling_metadata: bool = False    # llama: the same, computed from metadata
    phi3_rope_factors: bool = False          # phi3: rope_factors_short/long + original context
    phi3_original_context: int = 256
    seed: int = 0
    # Storage type of each matrix, by tensor role; the rest are F32.
    types: dict = field(default_factory=dict)

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_heads


# A prompt over the whole tiny vocabulary, repeats included. Each spec's seed was picked so that the
# reference's top two logits differ by more than 0.01 at every position of it: an argmax comparison
# then tests the forward pass, not float rounding.
TINY_PROMPT = [5, 299, 17, 256, 100, 3, 42, 42, 42, 7, 200, 150, 1, 0, 298, 77, 64, 33, 12, 250, 180, 9]

TINY_LLAMA = TinySpec(
    name="llama_gqa", architecture="llama", n_layers=3, n_embd=96, n_ff=224, n_heads=6, n_kv_heads=2,
    types={"token_embd": Q.Q8_0, "attn_q": Q.Q4_0, "attn_k": Q.F16, "attn_v": Q.Q8_0, "attn_output": Q.Q5_0,
           "ffn_gate": Q.Q4_0, "ffn_up": Q.Q8_0, "ffn_down": Q.F16, "output": Q.Q8_0},
    seed=21)
TINY_LLAMA_ROPE_FREQS = TinySpec(
    name="llama_rope_freqs", architecture="llama", n_layers=2, n_embd=96, n_ff=224, n_heads=6, n_kv_heads=2,
    rope_freqs_tensor=True, rope_freq_base=500000.0,
    types={"token_embd": Q.F16, "attn_q": Q.Q8_0, "attn_k": Q.Q8_0, "attn_v": Q.Q4_0, "attn_output": Q.F16,
           "ffn_gate": Q.Q8_0, "ffn_up": Q.Q4_0, "ffn_down": Q.Q8_0, "output": Q.F16},
    seed=12)
TINY_LLAMA3_SCALING = TinySpec(
    name="llama3_scaling_metadata", architecture="llama", n_layers=2, n_embd=96, n_ff=224, n_heads=6,
    n_kv_heads=2, llama3_scaling_metadata=True, tied_output=True,
    types={"token_embd": Q.Q8_0, "attn_q": Q.F16, "attn_k": Q.Q4_0, "attn_v": Q.Q8_0, "attn_output": Q.Q8_0,
           "ffn_gate": Q.F16, "ffn_up": Q.Q8_0, "ffn_down": Q.Q4_0},
    seed=3)
TINY_PHI3 = TinySpec(
    name="phi3_rope_factors", architecture="phi3", n_layers=2, n_embd=96, n_ff=224, n_heads=4, n_kv_heads=4,
    context_length=2048, phi3_rope_factors=True, phi3_original_context=256,
    types={"token_embd": Q.Q8_0, "attn_qkv": Q.Q8_0, "attn_output": Q.Q4_0, "ffn_up": Q.F16,
           "ffn_down": Q.Q8_0, "output": Q.Q4_0},
    seed=24)
TINY_QWEN2 = TinySpec(
    name="qwen2_tied_gqa", architecture="qwen2", n_layers=3, n_embd=160, n_ff=352, n_heads=5, n_kv_heads=1,
    rope_freq_base=1000000.0, rms_eps=1e-6, biases=True, tied_output=True,
    types={"token_embd": Q.Q8_0, "attn_q": Q.Q5_0, "attn_k": Q.Q8_0, "attn_v": Q.F16, "attn_output": Q.Q4_0,
           "ffn_gate": Q.Q5_0, "ffn_up": Q.Q4_0, "ffn_down": Q.Q8_0},
    seed=25)
TINY_QWEN2_UNTIED = TinySpec(
    name="qwen2_untied", architecture="qwen2", n_layers=2, n_embd=96, n_ff=224, n_heads=3, n_kv_heads=1,
    rope_freq_base=1000000.0, rms_eps=1e-6, biases=True,
    types={"token_embd": Q.F16, "attn_q": Q.Q8_0, "attn_k": Q.Q4_0, "attn_v": Q.Q5_0, "attn_output": Q.Q8_0,
           "ffn_gate": Q.F16, "ffn_up": Q.Q8_0, "ffn_down": Q.Q5_0, "output": Q.Q5_0},
    seed=36)

ALL_TINY_SPECS = (TINY_LLAMA, TINY_LLAMA_ROPE_FREQS, TINY_LLAMA3_SCALING, TINY_PHI3, TINY_QWEN2,
                  TINY_QWEN2_UNTIED)

LLAMA3_FACTOR = 8.0
LLAMA3_LOW_FREQ_FACTOR = 1.0
LLAMA3_HIGH_FREQ_FACTOR = 4.0
# Small, so that the head dimension's wavelengths fall on both sides of both thresholds.
LLAMA3_ORIGINAL_CONTEXT = 64


def tensor_shapes(spec: TinySpec) -> dict[str, tuple[int, ...]]:
    """GGUF shapes (ne0 first: [in, out] for matrices) of every tensor the spec's file holds."""
    e, f, v, hd = spec.n_embd, spec.n_ff, spec.n_vocab, spec.head_dim
    q_size, kv_size = spec.n_heads * hd, spec.n_kv_heads * hd
    shapes = {"token_embd.weight": (e, v), "output_norm.weight": (e,)}
    if not spec.tied_output:
        shapes["output.weight"] = (e, v)
    if spec.rope_freqs_tensor:
        shapes["rope_freqs.weight"] = (hd // 2,)
    if spec.phi3_rope_factors:
        shapes["rope_factors_short.weight"] = (hd // 2,)
        shapes["rope_factors_long.weight"] = (hd // 2,)
    for i in range(spec.n_layers):
        p = f"blk.{i}."
        shapes[p + "attn_norm.weight"] = (e,)
        shapes[p + "ffn_norm.weight"] = (e,)
        if spec.architecture == "phi3":
            shapes[p + "attn_qkv.weight"] = (e, q_size + 2 * kv_size)
            shapes[p + "ffn_up.weight"] = (e, 2 * f)
        else:
            shapes[p + "attn_q.weight"] = (e, q_size)
            shapes[p + "attn_k.weight"] = (e, kv_size)
            shapes[p + "attn_v.weight"] = (e, kv_size)
            shapes[p + "ffn_gate.weight"] = (e, f)
            shapes[p + "ffn_up.weight"] = (e, f)
        if spec.biases:
            shapes[p + "attn_q.bias"] = (q_size,)
            shapes[p + "attn_k.bias"] = (kv_size,)
            shapes[p + "attn_v.bias"] = (kv_size,)
        shapes[p + "attn_output.weight"] = (q_size, e)
        shapes[p + "ffn_down.weight"] = (f, e)
    return shapes


def _random_values(rng: np.random.Generator, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Never-zero values with scales that keep activations O(1) through a few layers."""
    rows = shape[::-1]  # numpy order: [out, in]
    if name.endswith("norm.weight"):
        return rng.uniform(0.8, 1.2, rows)
    if name.startswith("rope_"):
        return rng.uniform(1.0, 6.0, rows)   # frequency divisors; 1 keeps a pair as is
    if name.endswith(".bias"):
        return rng.uniform(-0.5, 0.5, rows) + np.where(rng.random(rows) < 0.5, -0.1, 0.1)
    magnitude = rng.uniform(0.2, 1.0, rows) * np.where(rng.random(rows) < 0.5, -1.0, 1.0)
    if name == "token_embd.weight":
        # Small next to what the layers add, so the logits depend on every layer (tied output too).
        return magnitude * 0.15
    # 1/sqrt(fan_in) with a little headroom so that logits spread over several units.
    return magnitude * (1.6 / math.sqrt(shape[0]))


def _encode(values: np.ndarray, qtype: Q) -> tuple[np.ndarray, Q]:
    values = values.astype(np.float32)
    if qtype == Q.F32:
        return values, Q.F32
    if qtype == Q.F16:
        return values.astype(np.float16), Q.F16
    return gguf.quants.quantize(values, qtype), qtype


def _add_vocabulary(writer: gguf.GGUFWriter, spec: TinySpec) -> None:
    """A minimal but well-formed tokenizer: GPT-2 byte-level BPE (qwen2, phi3 too) or a llama SentencePiece list."""
    if spec.architecture == "llama":
        specials = ["<unk>", "<s>", "</s>"]
        byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
        words = [f"\u2581w{i}" for i in range(spec.n_vocab - len(specials) - len(byte_tokens))]
        tokens = specials + byte_tokens + words
        types = ([gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
                 + [gguf.TokenType.BYTE] * 256 + [gguf.TokenType.NORMAL] * len(words))
        writer.add_tokenizer_model("llama")
        writer.add_token_list(tokens)
        writer.add_token_scores([0.0] * len(specials) + [0.0] * 256 + [-float(i) for i in range(len(words))])
        writer.add_token_types(types)
        writer.add_bos_token_id(1)
        writer.add_eos_token_id(2)
        writer.add_unk_token_id(0)
        return
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    byte_chars, extra = [], 0
    for b in range(256):
        if b in printable:
            byte_chars.append(chr(b))
        else:
            byte_chars.append(chr(256 + extra))
            extra += 1
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    n_merged = spec.n_vocab - 256 - len(specials)
    letters = "abcdefghijklmnopqrstuvwxyz"
    merges = [f"{letters[i % 26]} {letters[(i // 26 + i) % 26]}" for i in range(n_merged)]
    merged = [m.replace(" ", "") for m in merges]
    assert len(set(merged)) == n_merged
    tokens = byte_chars + merged + specials
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2" if spec.architecture == "qwen2" else "default")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.NORMAL] * (256 + n_merged) + [gguf.TokenType.CONTROL] * 3)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(256 + n_merged)
    writer.add_eos_token_id(256 + n_merged + 2)


def write_tiny_model(path: str | Path, spec: TinySpec, *, architecture: str | None = None,
                     omit: tuple[str, ...] = (), wrong_shape: dict[str, tuple[int, ...]] | None = None) -> str:
    """Write spec's model to path and return the path.

    architecture replaces general.architecture (and the metadata prefix); omit drops tensors;
    wrong_shape gives tensors a different GGUF shape (stored as F32).
    """
    wrong_shape = wrong_shape or {}
    arch = architecture or spec.architecture
    rng = np.random.default_rng(spec.seed)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(f"tiny {spec.name}")
    writer.add_block_count(spec.n_layers)
    writer.add_context_length(spec.context_length)
    writer.add_embedding_length(spec.n_embd)
    writer.add_feed_forward_length(spec.n_ff)
    writer.add_head_count(spec.n_heads)
    writer.add_head_count_kv(spec.n_kv_heads)
    writer.add_rope_dimension_count(spec.head_dim)
    writer.add_rope_freq_base(spec.rope_freq_base)
    writer.add_layer_norm_rms_eps(spec.rms_eps)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    if spec.llama3_scaling_metadata:
        writer.add_string(f"{arch}.rope.scaling.type", "llama3")
        writer.add_rope_scaling_factor(LLAMA3_FACTOR)
        writer.add_float32(f"{arch}.rope.scaling.low_freq_factor", LLAMA3_LOW_FREQ_FACTOR)
        writer.add_float32(f"{arch}.rope.scaling.high_freq_factor", LLAMA3_HIGH_FREQ_FACTOR)
        writer.add_rope_scaling_orig_ctx_len(LLAMA3_ORIGINAL_CONTEXT)
    if spec.phi3_rope_factors:
        original = spec.phi3_original_context
        writer.add_rope_scaling_orig_ctx_len(original)
        # The value llama.cpp's converter stores for Phi-3 "longrope" models.
        scale = spec.context_length / original
        writer.add_rope_scaling_attn_factors(math.sqrt(1 + math.log(scale) / math.log(original)))
    _add_vocabulary(writer, spec)

    for name, shape in tensor_shapes(spec).items():
        values = _random_values(rng, name, shape)
        if name in omit:
            continue
        if name in wrong_shape:
            writer.add_tensor(name, _random_values(rng, name, wrong_shape[name]).astype(np.float32))
            continue
        role = name.split(".")[-2] if name.startswith("blk.") else name.split(".")[0]
        qtype = spec.types.get(role, Q.F32) if name.endswith(".weight") and len(shape) == 2 else Q.F32
        data, dtype = _encode(values, qtype)
        writer.add_tensor(name, data, raw_dtype=dtype if dtype not in (Q.F32, Q.F16) else None)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return str(path)
