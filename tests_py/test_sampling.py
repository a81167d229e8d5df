"""The sampler: each step's semantics, the order of steps, seeds, and the large-vocabulary fast paths."""
import math

import numpy as np
import pytest

from orcd import ConfigError, SamplingParams
from orcd.sampling import Sampler, _draw, _largest, _prefix_reaching_mass, model_logprobs

PLAIN = dict(top_k=0, top_p=1.0, min_p=0.0, temperature=1.0)


def draws(logits, n=3000, history=(), **params):
    sampler = Sampler(SamplingParams(seed=7, **params), len(logits))
    logits = np.asarray(logits, dtype=np.float32)
    return np.array([sampler(logits, list(history)) for _ in range(n)])


def softmax(x):
    e = np.exp(np.asarray(x, dtype=np.float64) - np.max(x))
    return e / e.sum()


def test_greedy_takes_the_highest_logit_and_the_lowest_id_on_a_tie():
    assert draws([0.1, 3.0, -2.0, 3.0], n=5, temperature=0).tolist() == [1] * 5


def test_plain_sampling_follows_the_softmax():
    logits = [2.0, 1.0, 0.5, -1.0, 0.0]
    counts = np.bincount(draws(logits, n=20000, **PLAIN), minlength=5) / 20000
    assert np.allclose(counts, softmax(logits), atol=0.015)


def test_temperature_sharpens_and_flattens():
    logits = [2.0, 1.0, 0.0]
    cold = np.bincount(draws(logits, n=6000, **{**PLAIN, "temperature": 0.5}), minlength=3) / 6000
    hot = np.bincount(draws(logits, n=6000, **{**PLAIN, "temperature": 2.0}), minlength=3) / 6000
    assert np.allclose(cold, softmax(np.array(logits) / 0.5), atol=0.02)
    assert np.allclose(hot, softmax(np.array(logits) / 2.0), atol=0.02)


def test_top_k_keeps_only_the_k_highest():
    logits = np.array([0.0, 5.0, 4.9, 4.8, 1.0, 4.7])
    assert set(draws(logits, **{**PLAIN, "top_k": 3})) == {1, 2, 3}


def test_top_p_keeps_the_smallest_set_reaching_the_mass():
    probs = np.array([0.5, 0.3, 0.15, 0.05])
    logits = np.log(probs)
    assert set(draws(logits, **{**PLAIN, "top_p": 0.75})) == {0, 1}
    assert set(draws(logits, **{**PLAIN, "top_p": 0.85})) == {0, 1, 2}
    assert set(draws(logits, **{**PLAIN, "top_p": 0.4})) == {0}


def test_min_p_drops_tokens_below_a_fraction_of_the_best():
    probs = np.array([0.4, 0.3, 0.2, 0.06, 0.04])
    assert set(draws(np.log(probs), **{**PLAIN, "min_p": 0.16})) == {0, 1, 2}


def test_typical_p_matches_a_direct_implementation():
    probs = np.array([0.45, 0.25, 0.15, 0.1, 0.05])
    surprise = -np.log(probs)
    entropy = float((probs * surprise).sum())
    order = np.argsort(np.abs(surprise - entropy), kind="stable")
    cut = int(np.searchsorted(np.cumsum(probs[order]), 0.6)) + 1
    assert set(draws(np.log(probs), **{**PLAIN, "typical_p": 0.6})) == set(order[:cut].tolist())


def test_repetition_penalty_follows_llama_cpp_once_per_distinct_recent_token():
    sampler = Sampler(SamplingParams(repetition_penalty=2.0, repeat_last_n=3), 5)
    logits = np.array([4.0, -1.0, 3.0, 2.0, 1.0], dtype=np.float32)
    # Token 2 is outside the last 3; tokens 0 (twice) and 1 are inside.
    out = sampler.adjusted_logits(logits, [2, 0, 1, 0])
    assert out.tolist() == [2.0, -2.0, 3.0, 2.0, 1.0]
    assert logits.tolist() == [4.0, -1.0, 3.0, 2.0, 1.0]  # the caller's array is untouched


def test_presence_and_frequency_penalties_count_occurrences():
    sampler = Sampler(SamplingParams(presence_penalty=0.5, frequency_penalty=0.25, repeat_last_n=-1), 4)
    out = sampler.adjusted_logits(np.zeros(4, dtype=np.float32), [3, 1, 3, 3])
    assert out.tolist() == [0.0, -0.75, 0.0, -1.25]


def test_logit_bias_can_ban_and_force_tokens():
    logits = [5.0, 1.0, 0.0]
    assert set(draws(logits, n=10, temperature=0, logit_bias={0: -math.inf})) == {1}
    assert set(draws(logits, n=200, **PLAIN, logit_bias={"2": 100.0})) == {2}
    with pytest.raises(ConfigError, match="logit_bias"):
        Sampler(SamplingParams(logit_bias={3: 1.0}), 3)


def test_bias_and_penalties_come_before_the_filters():
    # Without the penalty token 0 is the only one top_k=1 keeps; with it, token 1 is.
    logits = [3.0, 2.0, 0.0]
    assert set(draws(logits, n=50, **{**PLAIN, "top_k": 1}, history=[0], repetition_penalty=2.0)) == {1}


def test_the_same_seed_gives_the_same_draws_and_another_seed_others():
    logits = np.random.default_rng(0).standard_normal(1000).astype(np.float32)

    def run(seed):
        sampler = Sampler(SamplingParams(seed=seed, **PLAIN), 1000)
        return [sampler(logits) for _ in range(50)]

    assert run(1) == run(1)
    assert run(1) != run(2)
    assert run(None) != run(None)  # no seed: fresh randomness


def test_largest_finds_the_k_largest_including_with_banned_tokens():
    rng = np.random.default_rng(3)
    values = (rng.standard_normal(151_936) * 3).astype(np.float32)
    values[rng.integers(0, values.size, 5000)] = -np.inf
    for k in (1, 40, 1000, 100_000, 151_936):
        got = np.sort(_largest(values, k))
        expected = np.sort(np.argsort(-values, kind="stable")[:k])
        assert np.array_equal(values[got], values[expected]), k
    few = np.full(100, -np.inf, dtype=np.float32)
    few[[3, 9]] = [1.0, 2.0]
    assert set(_largest(few, 2).tolist()) == {3, 9}


@pytest.mark.parametrize("scale", [0.5, 3.0, 12.0])
@pytest.mark.parametrize("mass", [0.3, 0.9, 0.999])
def test_nucleus_on_a_large_vocabulary_equals_a_full_sort(scale, mass):
    logits = (np.random.default_rng(int(scale * 10)).standard_normal(151_936) * scale).astype(np.float32)
    probs = softmax(logits)
    order = np.argsort(-logits, kind="stable")
    cut = int(np.searchsorted(np.cumsum(probs[order]), mass)) + 1
    got = _prefix_reaching_mass(logits, probs.astype(np.float32), mass)
    # float32 sums may move the boundary by a token of negligible probability.
    assert abs(got.size - cut) <= 2
    common = min(got.size, cut) - 1
    assert set(order[:common].tolist()) <= set(got.tolist())


def test_blockwise_draw_equals_a_plain_cumulative_search():
    weights = np.random.default_rng(5).random(151_936).astype(np.float32)
    cumulative = np.cumsum(weights, dtype=np.float64)
    for u in (0.0, 1e-9, 0.25, 0.5, 0.999999):
        expected = int(np.searchsorted(cumulative, u * cumulative[-1], side="right"))
        assert abs(_draw(weights, u) - expected) <= 1  # float64 sums in another order


def test_model_logprobs_are_the_log_softmax():
    logits = np.array([1.0, 3.0, -2.0, 2.5], dtype=np.float32)
    lp = model_logprobs(logits, 3, 2)
    reference = np.log(softmax(logits))
    assert lp.token_id == 3 and lp.logprob == pytest.approx(reference[3], abs=1e-5)
    assert [t for t, _ in lp.top] == [1, 3]
    assert lp.top[0][1] == pytest.approx(reference[1], abs=1e-5)


def test_wrongly_shaped_logits_are_refused():
    with pytest.raises(ValueError, match="shape"):
        Sampler(SamplingParams(), 10)(np.zeros(9, dtype=np.float32))
