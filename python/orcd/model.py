"""The low-level Model/Session API: token ids in, numpy logits out."""
from __future__ import annotations

import os
import numpy as np

from . import _core
from .config import ModelConfig
from .errors import InvalidArgumentError


def resolve_device(device: str) -> str:
    """'auto' means the first CUDA device when this build has CUDA and a GPU is present, else the CPU."""
    if device == "auto":
        return "cuda:0" if _core.build_info()["cuda"] and _core.cuda_devices() else "cpu"
    return device


def _as_ids(ids) -> np.ndarray:
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise InvalidArgumentError(f"token ids must be a 1-D sequence, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise InvalidArgumentError(f"token ids must be integers, got {arr.dtype}")
    if arr.size and (arr.min() < np.iinfo(np.int32).min or arr.max() > np.iinfo(np.int32).max):
        raise InvalidArgumentError("a token id is outside the vocabulary (beyond the 32-bit range)")
    return arr.astype(np.int32, copy=False)


class Session:
    """One sequence with its own KV cache. Use one thread at a time per session."""

    def __init__(self, core_session):
        self._s = core_session

    def prefill(self, ids, all_logits: bool = False) -> np.ndarray:
        """Append ids; return float32 logits of the last position [n_vocab], or of all [n, n_vocab]."""
        return self._s.prefill(_as_ids(ids), all_logits)

    def decode(self, token_id: int) -> np.ndarray:
        """Append one token; return the float32 logits of its position [n_vocab]."""
        return self._s.decode(int(token_id))

    def prefill_greedy(self, ids) -> int:
        """Append ids; return the id of the largest logit of the last position (lowest id on ties).
        The choice is made on the device: only that id is copied back."""
        return self._s.prefill_greedy(_as_ids(ids))

    def decode_greedy(self, token_id: int) -> int:
        """Append one token; return the id of the largest logit of its position (chosen on the device)."""
        return self._s.decode_greedy(int(token_id))

    def prefill_top_k(self, ids, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Append ids; return the k largest logits of the last position as (ids int32, logits float32),
        largest first, equal logits by lower id. 1 <= k <= min(n_vocab, 1024)."""
        return self._s.prefill_top_k(_as_ids(ids), int(k))

    def decode_top_k(self, token_id: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Append one token; return the k largest logits of its position as (ids, logits), as prefill_top_k."""
        return self._s.decode_top_k(int(token_id), int(k))

    @property
    def n_past(self) -> int:
        return self._s.n_past

    @property
    def max_context(self) -> int:
        return self._s.max_context

    def rewind(self, n: int) -> None:
        """Forget the last n tokens."""
        self._s.rewind(int(n))

    def reset(self) -> None:
        """Forget every token."""
        self._s.reset()


class Model:
    """A GGUF model placed on a device ("cpu", "cuda", "cuda:N" or "auto")."""

    def __init__(self, path, device: str = "cpu", n_threads: int | None = None):
        self.path = os.fspath(path)
        self.device = resolve_device(device)
        self._m = _core.Model(self.path, self.device, int(n_threads or 0))
        self.config = ModelConfig(**self._m.config)

    def session(self, max_context: int | None = None, allow_beyond_model_context: bool = False) -> Session:
        """A new session; max_context defaults to min(context_length, 4096)."""
        return Session(self._m.create_session(int(max_context or 0), allow_beyond_model_context))

    def memory_report(self) -> dict:
        """Bytes of weights, KV cache and scratch (of open sessions) on the model's device."""
        return self._m.memory_report()

    def close(self) -> None:
        """Mark the model closed; its memory goes when its last session does."""
        self._m.close()

    @property
    def closed(self) -> bool:
        return self._m.closed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        c = self.config
        return f"Model({self.path!r}, {c.architecture}, {c.n_layers} layers, device={self.device!r})"
