"""An independent numpy forward pass for GGUF decoder models (qwen2, llama, phi3).

Written from each architecture's definition, not from orcd's C++: weights are
dequantised by the `gguf` package, the math is plain numpy (float32 matmuls,
float64 where rounding would matter: norms, RoPE angles, softmax). It serves as
the oracle the CPU backend is compared with.

    ref = ReferenceModel(path)
    logits = ref.logits(ids)                 # [n, n_vocab], every position
    state = ref.start(); state.feed(ids); state.feed([tok])   # incremental, KV-cached
    ref.greedy(ids, 32)                      # greedy continuation

Conventions follow the GGUF files written by llama.cpp's converters:
  * a weight tensor of GGUF shape [in, out] is a numpy matrix [out, in]; y = x @ W.T
  * llama uses "normal" RoPE: rotated pairs are (2i, 2i+1) of each head;
    qwen2 and phi3 use NeoX RoPE: pairs (i, i + rope_dim/2)
  * rotation angle of pair i at position p: p * base^(-2i/rope_dim) / f_i, where
    f_i is a per-pair frequency divisor (1, rope_freqs, or phi3's rope factors),
    and cos/sin are multiplied by an attention factor (1 unless phi3 says so)
  * GQA: query head h reads key/value head h // (n_heads / n_kv_heads)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import gguf
import numpy as np

SUPPORTED_ARCHITECTURES = ("qwen2", "llama", "phi3")
NEOX_ROPE = {"qwen2": True, "llama": False, "phi3": True}
# Llama 3.1's published defaults, used when a file names "llama3" scaling but omits them.
LLAMA3_DEFAULT_LOW_FREQ_FACTOR = 1.0
LLAMA3_DEFAULT_HIGH_FREQ_FACTOR = 4.0
DEFAULT_SESSION_CONTEXT = 4096


@dataclass(frozen=True)
class ReferenceConfig:
    architecture: str
    n_layers: int
    n_embd: int
    n_ff: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    n_vocab: int
    context_length: int
    rope_dim: int
    rope_freq_base: float
    rms_eps: float


def _field(reader: gguf.GGUFReader, key: str, default=None):
    field = reader.fields.get(key)
    if field is None:
        return default
    return field.contents()


def llama3_frequency_divisors(rope_dim: int, base: float, factor: float, low_freq_factor: float,
                              high_freq_factor: float, original_context: int) -> np.ndarray:
    """Per-pair divisors of the rotation frequency, as Llama 3.1 defines its RoPE scaling.

    Wavelengths shorter than original/high_freq_factor keep their frequency, longer than
    original/low_freq_factor are slowed by `factor`, and the band between blends the two.
    """
    inv_freq = base ** (-np.arange(0, rope_dim, 2, dtype=np.float64) / rope_dim)
    wavelength = 2 * math.pi / inv_freq
    low_freq_wavelength = original_context / low_freq_factor
    high_freq_wavelength = original_context / high_freq_factor
    smooth = (original_context / wavelength - low_freq_factor) / (high_freq_factor - low_freq_factor)
    blended = 1.0 / ((1.0 - smooth) / factor + smooth)
    return np.where(wavelength < high_freq_wavelength, 1.0,
                    np.where(wavelength > low_freq_wavelength, factor, blended))


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    x64 = x.astype(np.float64)
    scale = 1.0 / np.sqrt(np.mean(x64 * x64, axis=-1, keepdims=True) + eps)
    return (x64 * scale).astype(np.float32) * weight


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def apply_rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray, rope_dim: int, neox: bool) -> np.ndarray:
    """Rotate the first rope_dim features of every head. x: [n, heads, head_dim]; cos, sin: [n, rope_dim/2]."""
    half = rope_dim // 2
    out = x.copy()
    if neox:
        a, b = x[..., :half], x[..., half:rope_dim]
    else:
        a, b = x[..., 0:rope_dim:2], x[..., 1:rope_dim:2]
    c, s = cos[:, None, :], sin[:, None, :]
    ra, rb = a * c - b * s, a * s + b * c
    if neox:
        out[..., :half], out[..., half:rope_dim] = ra, rb
    else:
        out[..., 0:rope_dim:2], out[..., 1:rope_dim:2] = ra, rb
    return out


class ReferenceModel:
    """Numpy forward pass over one GGUF file. Weights are dequantised on first use and cached."""

    def __init__(self, path: str):
        self.path = str(path)
        self.reader = gguf.GGUFReader(self.path)
        self.tensors = {t.name: t for t in self.reader.tensors}
        self._weights: dict[str, np.ndarray] = {}
        arch = _field(self.reader, "general.architecture")
        if arch not in SUPPORTED_ARCHITECTURES:
            raise NotImplementedError(f"reference has no architecture {arch!r}")
        self.arch = arch

        def hp(name, default=None):
            value = _field(self.reader, f"{arch}.{name}", default)
            if value is None:
                raise KeyError(f"{arch}.{name} missing from {self.path}")
            return value

        n_embd = int(hp("embedding_length"))
        n_heads = int(hp("attention.head_count"))
        head_dim = int(hp("attention.key_length", n_embd // n_heads))
        n_vocab = self.tensors["token_embd.weight"].shape[1]
        self.config = ReferenceConfig(
            architecture=arch,
            n_layers=int(hp("block_count")),
            n_embd=n_embd,
            n_ff=int(hp("feed_forward_length")),
            n_heads=n_heads,
            n_kv_heads=int(hp("attention.head_count_kv", n_heads)),
            head_dim=head_dim,
            n_vocab=int(n_vocab),
            context_length=int(hp("context_length")),
            rope_dim=int(hp("rope.dimension_count", head_dim)),
            rope_freq_base=float(hp("rope.freq_base", 10000.0)),
            rms_eps=float(hp("attention.layer_norm_rms_epsilon")),
        )
        self.output_name = "output.weight" if "output.weight" in self.tensors else "token_embd.weight"

    # -- weights ---------------------------------------------------------------------------
    def weight(self, name: str) -> np.ndarray:
        w = self._weights.get(name)
        if w is None:
            t = self.tensors[name]
            w = np.ascontiguousarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
            # A vector's reader view can be [1, n]; a matrix keeps [out, in].
            if len(t.shape) == 1:
                w = w.reshape(-1)
            self._weights[name] = w
        return w

    def embed(self, ids) -> np.ndarray:
        """Rows of the token embedding, dequantised row by row (the whole table is not needed)."""
        t = self.tensors["token_embd.weight"]
        return np.asarray(gguf.quants.dequantize(t.data[np.asarray(ids)], t.tensor_type), dtype=np.float32)

    def preload(self) -> None:
        """Dequantise every weight now, so later timings and calls don't pay for it."""
        for name in self.tensors:
            if name != "token_embd.weight" or self.output_name == name:
                self.weight(name)

    # -- RoPE ------------------------------------------------------------------------------
    def rope_frequency_divisors_and_attn_factor(self, session_context: int) -> tuple[np.ndarray, float]:
        cfg = self.config
        arch = self.arch
        ones = np.ones(cfg.rope_dim // 2)
        if "rope_freqs.weight" in self.tensors:
            return self.weight("rope_freqs.weight").astype(np.float64), 1.0
        if arch == "phi3" and "rope_factors_long.weight" in self.tensors:
            original = int(_field(self.reader, f"{arch}.rope.scaling.original_context_length", cfg.context_length))
            # llama.cpp picks the long factors when the context in use exceeds the original one.
            which = "long" if session_context > original else "short"
            divisors = self.weight(f"rope_factors_{which}.weight").astype(np.float64)
            attn_factor = _field(self.reader, f"{arch}.rope.scaling.attn_factor")
            if attn_factor is None:
                # What the converter records for Phi-3 "longrope" models; applied to every context.
                scale = cfg.context_length / original
                attn_factor = math.sqrt(1 + math.log(scale) / math.log(original)) if scale > 1 else 1.0
            return divisors, float(attn_factor)
        scaling = _field(self.reader, f"{arch}.rope.scaling.type")
        if scaling in (None, "none"):
            return ones, 1.0
        if scaling == "llama3":
            return llama3_frequency_divisors(
                cfg.rope_dim, cfg.rope_freq_base,
                factor=float(_field(self.reader, f"{arch}.rope.scaling.factor")),
                low_freq_factor=float(_field(self.reader, f"{arch}.rope.scaling.low_freq_factor",
                                             LLAMA3_DEFAULT_LOW_FREQ_FACTOR)),
                high_freq_factor=float(_field(self.reader, f"{arch}.rope.scaling.high_freq_factor",
                                              LLAMA3_DEFAULT_HIGH_FREQ_FACTOR)),
                original_context=int(_field(self.reader, f"{arch}.rope.scaling.original_context_length")),
            ), 1.0
        raise NotImplementedError(f"reference has no RoPE scaling {scaling!r}")

    # -- forward ---------------------------------------------------------------------------
    def start(self, max_context: int | None = None) -> "ReferenceState":
        """A fresh KV-cached state; max_context plays the role of a session's context size."""
        if max_context is None:
            max_context = min(self.config.context_length, DEFAULT_SESSION_CONTEXT)
        return ReferenceState(self, max_context)

    def logits(self, ids, max_context: int | None = None) -> np.ndarray:
        """Logits [len(ids), n_vocab] for every position of one prompt."""
        return self.start(max_context).feed(ids)

    def greedy(self, ids, n_new: int, max_context: int | None = None) -> list[int]:
        """The greedy continuation of ids, n_new tokens long."""
        state = self.start(max_context)
        last = state.feed(ids)[-1]
        out = []
        for _ in range(n_new):
            out.append(int(np.argmax(last)))
            last = state.feed([out[-1]])[-1]
        return out

    def _attention_projections(self, layer: int, x: np.ndarray):
        cfg = self.config
        p = f"blk.{layer}."
        q_size, kv_size = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
        if p + "attn_qkv.weight" in self.tensors:
            # Fused projection: output rows are q, then k, then v.
            qkv = x @ self.weight(p + "attn_qkv.weight").T
            q, k, v = qkv[:, :q_size], qkv[:, q_size:q_size + kv_size], qkv[:, q_size + kv_size:]
        else:
            q = x @ self.weight(p + "attn_q.weight").T
            k = x @ self.weight(p + "attn_k.weight").T
            v = x @ self.weight(p + "attn_v.weight").T
        for name, proj in (("attn_q.bias", q), ("attn_k.bias", k), ("attn_v.bias", v)):
            if p + name in self.tensors:
                proj += self.weight(p + name)
        return q, k, v

    def _feed_forward(self, layer: int, x: np.ndarray) -> np.ndarray:
        cfg = self.config
        p = f"blk.{layer}."
        if p + "ffn_gate.weight" in self.tensors:
            gate = x @ self.weight(p + "ffn_gate.weight").T
            up = x @ self.weight(p + "ffn_up.weight").T
        else:
            # Fused projection: the first n_ff rows are the gate, the next n_ff the up projection.
            gate_up = x @ self.weight(p + "ffn_up.weight").T
            gate, up = gate_up[:, :cfg.n_ff], gate_up[:, cfg.n_ff:]
        return (silu(gate) * up) @ self.weight(p + "ffn_down.weight").T


class ReferenceState:
    """The keys and values of every position fed so far; feed() appends and returns their logits."""

    def __init__(self, model: ReferenceModel, max_context: int):
        cfg = model.config
        self.model = model
        self.max_context = max_context
        self.n_past = 0
        self.keys = [np.zeros((0, cfg.n_kv_heads, cfg.head_dim), np.float32) for _ in range(cfg.n_layers)]
        self.values = [np.zeros((0, cfg.n_kv_heads, cfg.head_dim), np.float32) for _ in range(cfg.n_layers)]
        divisors, attn_factor = model.rope_frequency_divisors_and_attn_factor(max_context)
        i = np.arange(cfg.rope_dim // 2, dtype=np.float64)
        self.inv_freq = cfg.rope_freq_base ** (-2.0 * i / cfg.rope_dim) / divisors
        self.attn_factor = attn_factor

    def feed(self, ids) -> np.ndarray:
        model, cfg = self.model, self.model.config
        ids = [int(t) for t in ids]
        n = len(ids)
        if n == 0 or self.n_past + n > self.max_context:
            raise ValueError("empty input or context exceeded")
        positions = np.arange(self.n_past, self.n_past + n, dtype=np.float64)
        angles = positions[:, None] * self.inv_freq[None, :]
        cos = (np.cos(angles) * self.attn_factor).astype(np.float32)
        sin = (np.sin(angles) * self.attn_factor).astype(np.float32)
        neox = NEOX_ROPE[cfg.architecture]
        group = cfg.n_heads // cfg.n_kv_heads
        scale = 1.0 / math.sqrt(cfg.head_dim)
        total = self.n_past + n
        # Query row r (absolute position n_past + r) may see keys at positions <= its own.
        causal = np.arange(total)[None, :] <= (self.n_past + np.arange(n))[:, None]

        h = model.embed(ids)
        for layer in range(cfg.n_layers):
            p = f"blk.{layer}."
            x = rms_norm(h, model.weight(p + "attn_norm.weight"), cfg.rms_eps)
            q, k, v = model._attention_projections(layer, x)
            q = apply_rope(q.reshape(n, cfg.n_heads, cfg.head_dim), cos, sin, cfg.rope_dim, neox)
            k = apply_rope(k.reshape(n, cfg.n_kv_heads, cfg.head_dim), cos, sin, cfg.rope_dim, neox)
            self.keys[layer] = np.concatenate([self.keys[layer], k])
            self.values[layer] = np.concatenate([self.values[layer], v.reshape(n, cfg.n_kv_heads, cfg.head_dim)])
            keys = np.repeat(self.keys[layer], group, axis=1)        # [total, n_heads, head_dim]
            values = np.repeat(self.values[layer], group, axis=1)
            scores = np.einsum("qhd,khd->hqk", q, keys).astype(np.float64) * scale
            scores = np.where(causal[None], scores, -np.inf)
            scores -= scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            attn = np.einsum("hqk,khd->qhd", probs.astype(np.float32), values).reshape(n, -1)
            h = h + attn @ model.weight(p + "attn_output.weight").T
            x = rms_norm(h, model.weight(p + "ffn_norm.weight"), cfg.rms_eps)
            h = h + model._feed_forward(layer, x)
        self.n_past = total
        x = rms_norm(h, model.weight("output_norm.weight"), cfg.rms_eps)
        return x @ model.weight(model.output_name).T
