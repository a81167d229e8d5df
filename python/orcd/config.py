"""Configuration: what a model file says (ModelConfig), how to run it (RuntimeConfig), how to sample (SamplingParams).

Every value is checked when the object is made; a bad one raises ConfigError
naming the field, the value and the allowed range. Keyword overrides win over
environment variables, which win over defaults:

    ORCD_DEVICE       default device ("auto", "cpu", "cuda", "cuda:N")
    ORCD_NUM_THREADS  CPU threads (0 = all cores)
    ORCD_CACHE        model cache folder (see orcd.models)
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import ConfigError

_DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
DEVICE_CHOICES = "'auto', 'cpu', 'cuda' or 'cuda:N'"


def _fail(cls_name: str, name: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"{cls_name}.{name}={value!r} is invalid: allowed {allowed}")


def _check_int(cls_name: str, name: str, value: Any, minimum: int, allowed: str | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        _fail(cls_name, name, value, allowed or f"an integer >= {minimum}")


def _check_float(cls_name: str, name: str, value: Any, low: float, high: float, *, low_open: bool = False,
                 high_open: bool = False, allowed: str | None = None) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
        _fail(cls_name, name, value, allowed or f"a number in {lo}{low:g}, {high:g}{hi}")


# --------------------------------------------------------------------------- the model file


@dataclass(frozen=True)
class ModelConfig:
    """What a GGUF file says about its model: architecture, sizes, RoPE, context, vocabulary, special tokens."""

    architecture: str
    name: str
    n_layers: int
    n_embd: int
    n_ff: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    context_length: int
    rope_freq_base: float
    rope_dim: int
    n_vocab: int
    tokenizer_model: str
    bos_id: int | None
    eos_id: int | None
    eot_id: int | None
    has_chat_template: bool

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any]) -> "ModelConfig":
        arch = meta.get("general.architecture")
        if not arch:
            raise ConfigError("the model file has no general.architecture; it is not a language model GGUF")

        def hp(key: str, default=None):
            return meta.get(f"{arch}.{key}", default)

        n_embd, n_heads = int(hp("embedding_length", 0)), int(hp("attention.head_count", 0))
        head_dim = int(hp("attention.key_length", n_embd // n_heads if n_heads else 0))
        tokens = meta.get("tokenizer.ggml.tokens")

        def token_id(key: str) -> int | None:
            value = meta.get(f"tokenizer.ggml.{key}_token_id")
            return None if value is None else int(value)

        return cls(
            architecture=str(arch),
            name=str(meta.get("general.name", "")),
            n_layers=int(hp("block_count", 0)),
            n_embd=n_embd,
            n_ff=int(hp("feed_forward_length", 0)),
            n_heads=n_heads,
            n_kv_heads=int(hp("attention.head_count_kv", n_heads)),
            head_dim=head_dim,
            context_length=int(hp("context_length", 0)),
            rope_freq_base=float(hp("rope.freq_base", 10000.0)),
            rope_dim=int(hp("rope.dimension_count", head_dim)),
            n_vocab=len(tokens) if tokens is not None else 0,
            tokenizer_model=str(meta.get("tokenizer.ggml.model", "")),
            bos_id=token_id("bos"),
            eos_id=token_id("eos"),
            eot_id=token_id("eot"),
            has_chat_template=bool(str(meta.get("tokenizer.chat_template", "")).strip()),
        )

    @classmethod
    def from_gguf(cls, source) -> "ModelConfig":
        """From a GGUF path or an open orcd.GGUFFile."""
        if isinstance(source, (str, os.PathLike)):
            from . import GGUFFile

            with GGUFFile(os.fspath(source)) as f:
                return cls.from_metadata(f.metadata)
        return cls.from_metadata(source.metadata)


# --------------------------------------------------------------------------- running a model


def _env_default_device() -> str:
    return os.environ.get("ORCD_DEVICE") or "auto"


def _env_default_threads() -> int:
    text = os.environ.get("ORCD_NUM_THREADS")
    if not text:
        return 0
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"ORCD_NUM_THREADS={text!r} is invalid: allowed an integer >= 0 (0 = all cores)") from None


@dataclass(frozen=True)
class RuntimeConfig:
    """How a model runs: device, CPU threads, context length of a session.

    max_context None means min(the model's context length, 4096). A value above
    the model's trained context length needs allow_beyond_model_context=True.
    """

    device: str = field(default_factory=_env_default_device)
    n_threads: int = field(default_factory=_env_default_threads)
    max_context: int | None = None
    allow_beyond_model_context: bool = False

    def __post_init__(self):
        if not isinstance(self.device, str) or not _DEVICE_PATTERN.match(self.device):
            _fail("RuntimeConfig", "device", self.device, DEVICE_CHOICES)
        _check_int("RuntimeConfig", "n_threads", self.n_threads, 0, "an integer >= 0 (0 = all cores)")
        if self.max_context is not None:
            _check_int("RuntimeConfig", "max_context", self.max_context, 16, "an integer >= 16, or None")

    def context_for(self, model: ModelConfig) -> int:
        """The session length to use with this model; ConfigError when it exceeds the model's without the override."""
        limit = model.context_length or 4096
        if self.max_context is None:
            return min(limit, 4096)
        if self.max_context > limit and not self.allow_beyond_model_context:
            raise ConfigError(
                f"RuntimeConfig.max_context={self.max_context} is invalid: allowed 16..{limit} "
                f"(the model's context length); pass allow_beyond_model_context=True to go beyond it")
        return self.max_context

    def replace(self, **changes) -> "RuntimeConfig":
        return _replace(self, changes)


# --------------------------------------------------------------------------- sampling


@dataclass(frozen=True)
class SamplingParams:
    """How to pick each next token, and when to stop.

    The order in which the logits are transformed is documented in orcd.sampling.
    temperature 0 is greedy decoding; the filters are then irrelevant.
    """

    max_tokens: int = 256
    temperature: float = 0.8
    top_k: int = 40                 # 0 = off
    top_p: float = 0.95             # 1 = off
    min_p: float = 0.05             # 0 = off
    typical_p: float = 1.0          # 1 = off
    repetition_penalty: float = 1.0  # 1 = off; llama.cpp's: positive logits divided, negative multiplied
    repeat_last_n: int = 64         # how many recent tokens the three penalties look at; -1 = all
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: Mapping[int, float] | None = None
    seed: int | None = None         # None = fresh randomness on every call
    stop: tuple[str, ...] = ()      # stop strings: not included in the output
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False        # keep going past the model's end-of-sequence tokens
    logprobs: int | None = None     # return the log-probability of each chosen token and the top N

    def __post_init__(self):
        n = "SamplingParams"
        # Sequences given as lists (as from JSON or argparse) become tuples, so the object stays hashable-ish and frozen.
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        elif self.stop is None:
            object.__setattr__(self, "stop", ())
        else:
            object.__setattr__(self, "stop", tuple(self.stop))
        if any(not isinstance(s, str) or not s for s in self.stop):
            _fail(n, "stop", self.stop, "non-empty strings")
        object.__setattr__(self, "stop_token_ids", tuple(self.stop_token_ids or ()))
        if any(isinstance(t, bool) or not isinstance(t, int) or t < 0 for t in self.stop_token_ids):
            _fail(n, "stop_token_ids", self.stop_token_ids, "token ids (integers >= 0)")
        _check_int(n, "max_tokens", self.max_tokens, 1)
        _check_float(n, "temperature", self.temperature, 0.0, 100.0, allowed="a number in [0, 100] (0 = greedy)")
        _check_int(n, "top_k", self.top_k, 0, "an integer >= 0 (0 = off)")
        _check_float(n, "top_p", self.top_p, 0.0, 1.0, low_open=True)
        _check_float(n, "min_p", self.min_p, 0.0, 1.0)
        _check_float(n, "typical_p", self.typical_p, 0.0, 1.0, low_open=True)
        _check_float(n, "repetition_penalty", self.repetition_penalty, 0.0, 100.0, low_open=True)
        _check_int(n, "repeat_last_n", self.repeat_last_n, -1, "an integer >= -1 (-1 = the whole context)")
        _check_float(n, "presence_penalty", self.presence_penalty, -2.0, 2.0)
        _check_float(n, "frequency_penalty", self.frequency_penalty, -2.0, 2.0)
        if self.logit_bias is not None:
            if not isinstance(self.logit_bias, Mapping):
                _fail(n, "logit_bias", self.logit_bias, "a dict {token id: bias}")
            # JSON keys arrive as strings; accept "42" as well as 42.
            bias = {}
            for k, v in self.logit_bias.items():
                try:
                    key = int(k)
                except (TypeError, ValueError):
                    key = -1
                if key < 0 or isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
                    _fail(n, "logit_bias", {k: v}, "token ids (integers >= 0) mapped to numbers (-inf bans a token)")
                bias[key] = float(v)
            object.__setattr__(self, "logit_bias", bias)
        if self.seed is not None:
            _check_int(n, "seed", self.seed, 0, "an integer >= 0, or None")
        if self.logprobs is not None:
            _check_int(n, "logprobs", self.logprobs, 0, "an integer in [0, 20], or None")
            if self.logprobs > 20:
                _fail(n, "logprobs", self.logprobs, "an integer in [0, 20], or None")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def replace(self, **changes) -> "SamplingParams":
        return _replace(self, changes)


def _replace(obj, changes: Mapping[str, Any]):
    names = {f.name for f in dataclasses.fields(obj)}
    unknown = sorted(set(changes) - names)
    if unknown:
        raise ConfigError(f"unknown {type(obj).__name__} field(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    return dataclasses.replace(obj, **changes)


def split_options(options: Mapping[str, Any]) -> tuple[dict, dict]:
    """Split keyword options into (RuntimeConfig fields, SamplingParams fields); ConfigError on any other name."""
    runtime_names = {f.name for f in dataclasses.fields(RuntimeConfig)}
    sampling_names = {f.name for f in dataclasses.fields(SamplingParams)}
    runtime = {k: v for k, v in options.items() if k in runtime_names}
    sampling = {k: v for k, v in options.items() if k in sampling_names}
    unknown = sorted(set(options) - runtime_names - sampling_names)
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)}; runtime options: {', '.join(sorted(runtime_names))}; "
                          f"sampling options: {', '.join(sorted(sampling_names))}")
    return runtime, sampling
