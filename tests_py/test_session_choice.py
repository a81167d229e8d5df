"""Session.prefill_greedy / decode_greedy / prefill_top_k / decode_top_k: the same
choices as the host makes from the full logits, on every device this build has
(CPU always; CUDA when a GPU is present), and the same session state after them."""
import dataclasses

import numpy as np
import pytest

import orcd
from tiny_models import TINY_LLAMA, TINY_PROMPT, write_tiny_model

# The tiny Llama with 64-wide heads (the CUDA backend's smallest head_dim is 32).
SPEC = dataclasses.replace(TINY_LLAMA, name="llama_hd64", n_embd=128, n_heads=2, n_kv_heads=1)
DEVICES = ["cpu"] + (["cuda"] if orcd.build_info()["cuda"] and orcd.cuda_devices() else [])


@pytest.fixture(scope="module", params=DEVICES)
def model(request, tmp_path_factory):
    path = write_tiny_model(tmp_path_factory.mktemp("choice") / "llama.gguf", SPEC)
    m = orcd.Model(path, device=request.param)
    yield m
    m.close()


def host_top_k(logits, k):
    order = sorted(range(len(logits)), key=lambda i: (-logits[i], i))[:k]
    return np.array(order, np.int32), logits[order]


def test_greedy_equals_argmax_of_logits(model):
    full, greedy = model.session(), model.session()
    tok_full = int(full.prefill(TINY_PROMPT).argmax())
    tok = greedy.prefill_greedy(TINY_PROMPT)
    assert tok == tok_full
    for _ in range(12):
        tok_full = int(full.decode(tok_full).argmax())
        tok = greedy.decode_greedy(tok)
        assert tok == tok_full
    assert greedy.n_past == full.n_past == len(TINY_PROMPT) + 12


@pytest.mark.parametrize("k", [1, 5, 64, SPEC.n_vocab])
def test_top_k_equals_host_selection(model, k):
    full, picked = model.session(), model.session()
    logits = full.prefill(TINY_PROMPT)
    ids, values = picked.prefill_top_k(TINY_PROMPT, k)
    want_ids, want_values = host_top_k(logits, k)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(values, want_values)
    logits = full.decode(int(want_ids[0]))
    ids, values = picked.decode_top_k(int(want_ids[0]), k)
    want_ids, want_values = host_top_k(logits, k)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(values, want_values)


def test_greedy_then_logits_continue_the_same_sequence(model):
    a, b = model.session(), model.session()
    a.prefill(TINY_PROMPT)
    tok = b.prefill_greedy(TINY_PROMPT)
    np.testing.assert_allclose(b.decode(tok), a.decode(tok), rtol=0, atol=1e-5)


@pytest.mark.parametrize("k", [0, -1, SPEC.n_vocab + 1, 100000])
def test_bad_k_is_rejected_and_session_unchanged(model, k):
    s = model.session()
    s.prefill(TINY_PROMPT[:4])
    with pytest.raises(orcd.InvalidArgumentError, match="top-k"):
        s.decode_top_k(TINY_PROMPT[4], k)
    with pytest.raises(orcd.InvalidArgumentError, match="top-k"):
        s.prefill_top_k(TINY_PROMPT[4:6], k)
    assert s.n_past == 4


def test_bad_ids_are_rejected_by_the_choosing_calls(model):
    s = model.session()
    with pytest.raises(orcd.InvalidArgumentError):
        s.prefill_greedy([])
    with pytest.raises(orcd.InvalidArgumentError):
        s.decode_greedy(SPEC.n_vocab)
    with pytest.raises(orcd.InvalidArgumentError):
        s.decode_top_k(-1, 3)
    assert s.n_past == 0
