"""Choosing the next token from logits (numpy, vectorised).

The logits of one position pass through these steps, in this order (the order
of llama.cpp's default sampler chain):

 1. logit_bias           add bias[id] to each listed token (-inf bans it)
 2. repetition_penalty   over the distinct tokens of the last repeat_last_n tokens
                         (prompt included): a positive logit is divided by the
                         penalty, a negative one multiplied by it (llama.cpp's rule)
 3. presence_penalty,    minus presence_penalty once per distinct recent token,
    frequency_penalty    minus frequency_penalty times its count (same window)
 4. temperature == 0     greedy: the highest logit wins (lowest id on a tie); stop here
 5. top_k                keep the k highest logits
 6. typical_p            keep the tokens whose surprise is closest to the entropy,
                         until their probability reaches typical_p
 7. top_p                keep the most probable tokens until their probability reaches top_p
 8. min_p                keep tokens at least min_p times as probable as the most probable
 9. temperature          divide the surviving logits by it
10. draw                 one token from the softmax of what is left, with the
                         sampler's numpy Generator (seeded: reproducible)

Steps 6-8 use probabilities of the tokens still in play, renormalised (the
softmax of their untempered logits). A 152k vocabulary is never sorted whole:
the candidates are found by thresholds and partial partitions, so a step costs
a few passes over the logits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .config import SamplingParams
from .errors import ConfigError, InvalidArgumentError


@dataclass(frozen=True)
class TokenLogprob:
    """Log-probability of a chosen token under the model (before any sampling step), and the top alternatives."""

    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...]  # (token id, logprob), most probable first


def model_logprobs(logits: np.ndarray, chosen: int, n_top: int) -> TokenLogprob:
    """The chosen token's log-softmax under the raw logits, and the n_top most probable tokens."""
    logits = np.asarray(logits, dtype=np.float32)
    top = float(logits.max())
    log_z = top + math.log(float(np.exp(logits - top, dtype=np.float32).sum(dtype=np.float64)))
    best: tuple = ()
    if n_top:
        ids = _largest(logits, n_top)
        ids = ids[np.lexsort((ids, -logits[ids]))]
        best = tuple((int(i), float(logits[i]) - log_z) for i in ids)
    return TokenLogprob(int(chosen), float(logits[chosen]) - log_z, best)


def _largest(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values, in no particular order (a deterministic one).

    Instead of partitioning the whole array, find a threshold below the maximum
    that at least k values reach (one comparison pass per try, the gap growing
    fourfold), then partition only those.
    """
    n = values.size
    if k >= n:
        return np.arange(n)
    top = float(values.max())
    candidates = None
    if math.isfinite(top):
        gap = 1.0
        while gap < 1e6:
            candidates = np.flatnonzero(values >= top - gap)
            if candidates.size >= k:
                break
            gap *= 4
        else:
            candidates = None
    if candidates is None:  # too few finite values: partition everything
        candidates = np.arange(n)
    if candidates.size > k:
        part = np.argpartition(values[candidates], candidates.size - k)[candidates.size - k:]
        candidates = candidates[part]
    return candidates


def _prefix_reaching_mass(key: np.ndarray, probs: np.ndarray, mass: float) -> np.ndarray:
    """Positions of the highest-key entries, up to the first whose cumulative probability reaches mass.

    A single token may hold the mass already. Otherwise the keys are put into
    2048 bins with the probability mass of each (one bincount): the bins before
    the one where the mass is reached are kept whole, and only that one bin is
    sorted. A flat 152k vocabulary is never sorted.
    """
    n = key.size
    if n <= 4096:
        order = np.lexsort((np.arange(n), -key))
        cumulative = np.cumsum(probs[order], dtype=np.float64)
        return order[:min(int(np.searchsorted(cumulative, mass, side="left")), n - 1) + 1]
    best = int(np.argmax(key))
    if probs[best] >= mass:
        return np.array([best])
    bins = 2048
    top = float(key.max())
    bottom = float(key.min())
    if not math.isfinite(bottom):
        bottom = float(key[np.isfinite(key)].min())
    scale = (bins - 1) / (top - bottom) if top > bottom else 0.0
    # Bin 0 holds the highest keys; -inf keys (zero probability) land in the last bin.
    bin_of = np.minimum((top - key) * scale, bins - 1).astype(np.int32)
    cumulative = np.cumsum(np.bincount(bin_of, weights=probs, minlength=bins))
    last = min(int(np.searchsorted(cumulative, mass, side="left")), bins - 1)
    whole = np.flatnonzero(bin_of < last)
    edge = np.flatnonzero(bin_of == last)
    edge = edge[np.lexsort((edge, -key[edge]))]
    needed = mass - (float(cumulative[last - 1]) if last else 0.0)
    edge_cumulative = np.cumsum(probs[edge], dtype=np.float64)
    cut = min(int(np.searchsorted(edge_cumulative, needed, side="left")), edge.size - 1)
    return np.concatenate([whole, edge[:cut + 1]])


def _draw(weights: np.ndarray, u: float) -> int:
    """The index where u (in [0, 1)) falls in the cumulative distribution of unnormalised weights.

    A long array is summed in blocks of 1024 first, so only the block sums and
    one block get a (sequential, slow) cumulative sum.
    """
    n = weights.size
    if n <= 4096:
        cumulative = np.cumsum(weights, dtype=np.float64)
        return min(int(np.searchsorted(cumulative, u * cumulative[-1], side="right")), n - 1)
    block = 1024
    whole = n // block * block
    sums = weights[:whole].reshape(-1, block).sum(axis=1, dtype=np.float64)
    if whole < n:
        sums = np.append(sums, weights[whole:].sum(dtype=np.float64))
    cumulative = np.cumsum(sums)
    target = u * cumulative[-1]
    b = min(int(np.searchsorted(cumulative, target, side="right")), sums.size - 1)
    inner = np.cumsum(weights[b * block:(b + 1) * block], dtype=np.float64)
    rest = target - (cumulative[b - 1] if b else 0.0)
    return b * block + min(int(np.searchsorted(inner, rest, side="right")), inner.size - 1)


def _softmax(values: np.ndarray) -> np.ndarray:
    """Probabilities: float64 for short arrays, float32 for long ones (where each pass over memory counts)."""
    dtype = np.float64 if values.size <= 4096 else np.float32
    weights = values.astype(dtype)  # a copy, so exp can work in place
    weights -= weights.max()
    np.exp(weights, out=weights)
    weights *= dtype(1.0 / weights.sum(dtype=np.float64))
    return weights


class Sampler:
    """Applies SamplingParams to logits. One Sampler per generated sequence: it owns the random generator."""

    def __init__(self, params: SamplingParams, n_vocab: int):
        self.params = params
        self.n_vocab = int(n_vocab)
        # seed None: numpy draws fresh entropy from the OS, so each Sampler differs.
        self.rng = np.random.default_rng(params.seed)
        self._bias_ids = self._bias_values = None
        if params.logit_bias:
            ids = np.fromiter(params.logit_bias.keys(), dtype=np.int64)
            bad = ids[ids >= self.n_vocab]
            if bad.size:
                raise ConfigError(f"SamplingParams.logit_bias has token id {int(bad[0])}: allowed 0..{self.n_vocab - 1}")
            self._bias_ids = ids
            self._bias_values = np.fromiter(params.logit_bias.values(), dtype=np.float32)
        p = params
        self.penalised = p.repeat_last_n != 0 and (
            p.repetition_penalty != 1.0 or p.presence_penalty != 0.0 or p.frequency_penalty != 0.0)

    def adjusted_logits(self, logits: np.ndarray, history=()) -> np.ndarray:
        """Steps 1-3: logits after bias and penalties (a copy when anything changes)."""
        logits = np.asarray(logits, dtype=np.float32)
        if logits.shape != (self.n_vocab,):
            raise InvalidArgumentError(f"logits have shape {logits.shape}, expected ({self.n_vocab},)")
        if self._bias_ids is None and not self.penalised:
            return logits
        logits = logits.copy()
        if self._bias_ids is not None:
            np.add.at(logits, self._bias_ids, self._bias_values)
        if self.penalised and len(history):
            p = self.params
            window = history if p.repeat_last_n < 0 else history[-p.repeat_last_n:]
            ids, counts = np.unique(np.asarray(window, dtype=np.int64), return_counts=True)
            ids, counts = ids[(ids >= 0) & (ids < self.n_vocab)], counts[(ids >= 0) & (ids < self.n_vocab)]
            values = logits[ids]
            if p.repetition_penalty != 1.0:
                values = np.where(values > 0, values / p.repetition_penalty, values * p.repetition_penalty)
            values = values - (p.presence_penalty + p.frequency_penalty * counts.astype(np.float32))
            logits[ids] = values
        return logits

    def __call__(self, logits: np.ndarray, history=()) -> int:
        """The next token id for these logits; history is the sequence so far (for the penalties)."""
        p = self.params
        logits = self.adjusted_logits(logits, history)
        if p.temperature == 0:
            return int(np.argmax(logits))
        if not math.isfinite(float(logits.max())):
            raise InvalidArgumentError("no token can be sampled: every logit is -inf or one is +inf/NaN")

        ids = None  # None: the whole vocabulary is still in play
        values = logits
        if 0 < p.top_k < self.n_vocab:
            ids = _largest(logits, p.top_k)
            values = logits[ids]

        if p.typical_p < 1.0 or p.top_p < 1.0:
            probs = _softmax(values)
            if p.typical_p < 1.0:
                surprise = -np.log(np.maximum(probs, 1e-300))
                entropy = float(np.sum(probs * surprise))
                keep = _prefix_reaching_mass(-np.abs(surprise - entropy), probs, p.typical_p)
                ids = keep if ids is None else ids[keep]
                values = logits[ids]
                probs = probs[keep] / probs[keep].sum()
            if p.top_p < 1.0:
                keep = _prefix_reaching_mass(values, probs, p.top_p)
                ids = keep if ids is None else ids[keep]
                values = logits[ids]

        if p.min_p > 0.0:
            # p_i >= min_p * p_max  <=>  logit_i >= max_logit + log(min_p), whatever the normalisation.
            keep = np.flatnonzero(values >= values.max() + math.log(p.min_p))
            ids = keep if ids is None else ids[keep]
            values = logits[ids]

        scaled = values * np.float32(1.0 / p.temperature)
        scaled -= scaled.max()
        pick = _draw(np.exp(scaled, out=scaled), self.rng.random())
        return int(pick if ids is None else ids[pick])
