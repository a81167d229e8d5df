"""Tokenizer of the default model (byte-level BPE, qwen2 pre-tokenizer) against llama.cpp."""
from __future__ import annotations

import json
import os
import random
import sys
import time
import warnings

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "tools"))
sys.path.insert(0, os.path.dirname(__file__))

from gguf_metadata import read_metadata  # noqa: E402
from tokenizer_corpus import corpus  # noqa: E402

from orcd.errors import InvalidArgumentError, UnsupportedError  # noqa: E402
from orcd.pretokenize import PreTokenizer  # noqa: E402
from orcd.tokenizer import (  # noqa: E402
    Tokenizer,
    _merge_by_rank,
    _merge_by_rank_exact,
)

REFERENCE = os.path.join(os.path.dirname(__file__), "data", "tokenizer_reference_qwen2.json")


def _load_reference() -> list[dict]:
    with open(REFERENCE, encoding="utf-8") as f:
        return json.load(f)["cases"]


REFERENCE_CASES = _load_reference()


@pytest.fixture(scope="module")
def metadata(default_model_path):
    return read_metadata(default_model_path)


@pytest.fixture(scope="module")
def tok(metadata):
    return Tokenizer.from_metadata(metadata)


# ------------------------------------------------------------------ conformance


def test_reference_covers_the_corpus():
    texts = {c["text"] for c in REFERENCE_CASES if c["parse_special"]}
    assert len(REFERENCE_CASES) >= 150
    assert texts == set(corpus()), "reference ids are stale: rerun tests_py/tools/make_tokenizer_reference.py"


@pytest.mark.parametrize("case", REFERENCE_CASES, ids=lambda c: repr(c["text"][:40]) + ("" if c["parse_special"] else "-plain"))
def test_ids_match_llama_cpp(tok, case):
    assert tok.encode(case["text"], parse_special=case["parse_special"]) == case["ids"]


@pytest.mark.parametrize("text", corpus(), ids=lambda s: repr(s[:40]))
def test_decode_inverts_encode(tok, text):
    assert tok.decode(tok.encode(text)) == text
    assert tok.decode(tok.encode(text, parse_special=False)) == text


def _random_strings(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    alphabet = (
        "aAbZ09 \t\n\r'sStTdDmMlLrReEvV.,;:!?-_()[]{}<>|/\\\"#$%^&*+=~`@"
        "éüßñçøΩж中文日本한국😀👍🏽\u200d\u0301\u00a0\u3000١२"
    )
    specials = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<tool_call>"]
    out = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(0, 12)):
            if rng.random() < 0.08:
                parts.append(rng.choice(specials))
            else:
                parts.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8))))
        out.append("".join(parts))
    return out


def test_ids_match_llama_cpp_live(tok, default_model_path):
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (optional reference)")
    llm = llama_cpp.Llama(model_path=default_model_path, vocab_only=True, verbose=False)
    texts = corpus() + _random_strings(400, seed=1)
    for parse_special in (True, False):
        mismatches = [
            t for t in texts
            if tok.encode(t, parse_special=parse_special)
            != list(llm.tokenize(t.encode("utf-8"), add_bos=False, special=parse_special))
        ]
        assert not mismatches, f"{len(mismatches)} of {len(texts)} differ, e.g. {mismatches[:3]!r}"


# ------------------------------------------------------------------ API


def test_properties(tok, metadata):
    assert tok.vocab_size == len(metadata["tokenizer.ggml.tokens"]) == 151936
    assert tok.bos_id == 151643 and tok.bos_token == "<|endoftext|>"
    assert tok.eos_id == 151645 and tok.eos_token == "<|im_end|>"
    assert tok.pad_id == 151643
    assert tok.eot_id == 151645  # found by its text, as llama.cpp does
    assert tok.unknown_id is None
    # llama.cpp's end-of-generation set, "</s>" (128247) included, found by its text
    assert tok.stop_ids == {151643, 151645, 151662, 151663, 151664, 128247}
    assert tok.is_special(128247) and tok.encode("</s>") == [128247]


def test_add_special_follows_metadata(tok, metadata):
    assert tok.add_bos is False and tok.add_eos is False
    assert tok.encode("hi", add_special=True) == tok.encode("hi")
    both = Tokenizer.from_metadata({**metadata, "tokenizer.ggml.add_bos_token": True,
                                     "tokenizer.ggml.add_eos_token": True})
    assert both.encode("hi", add_special=True) == [151643, *tok.encode("hi"), 151645]
    assert both.encode("", add_special=True) == [151643, 151645]


def test_parse_special(tok):
    text = "<|im_start|>user<|im_end|>"
    assert tok.encode(text) == [151644, 872, 151645]
    plain = tok.encode(text, parse_special=False)
    assert 151644 not in plain and 151645 not in plain
    assert tok.decode(plain) == text
    # user-defined tokens are recognised even when control tokens are not (llama.cpp's rule)
    assert tok.encode("<tool_call>", parse_special=False) == [151657]


def test_special_tokens_longest_first(metadata):
    # Two control tokens where the longer contains the shorter: the longer wins.
    tokens = list(metadata["tokenizer.ggml.tokens"])
    types = list(metadata["tokenizer.ggml.token_type"])
    tokens[151665], types[151665] = "<|im", 3
    tok2 = Tokenizer.from_metadata({**metadata, "tokenizer.ggml.tokens": tokens,
                                    "tokenizer.ggml.token_type": types})
    assert tok2.encode("<|im_start|>") == [151644]
    assert tok2.encode("<|im|>")[0] == 151665


def test_decode_skip_special(tok):
    ids = tok.encode("<|im_start|>assistant\nHi<|im_end|><tool_call>")
    assert tok.decode(ids) == "<|im_start|>assistant\nHi<|im_end|><tool_call>"
    assert tok.decode(ids, skip_special=True) == "assistant\nHi<tool_call>"


def test_out_of_range_ids_raise(tok):
    for bad in ([-1], [tok.vocab_size], [10**12], ["5"], [1.5], [None]):
        with pytest.raises(InvalidArgumentError):
            tok.decode(bad)
    with pytest.raises(InvalidArgumentError):
        tok.token_text(tok.vocab_size)
    with pytest.raises(InvalidArgumentError):
        tok.stream_decoder().push(-3)


def test_numpy_ids_decode(tok):
    np = pytest.importorskip("numpy")
    ids = tok.encode("numpy ids")
    assert tok.decode(np.array(ids, dtype=np.int32)) == "numpy ids"


def test_lone_surrogate_raises_clearly(tok):
    with pytest.raises(InvalidArgumentError, match="surrogate"):
        tok.encode("abc\ud800def")
    with pytest.raises(InvalidArgumentError):
        tok.encode(b"bytes")


def test_invalid_utf8_ids_decode_with_replacement(tok):
    # The first byte of a 3-byte character alone: not valid text, replaced rather than raising.
    first_byte = tok.encode("中")
    assert len(first_byte) == 1
    partial = tok.token_to_id(tok.token_text(first_byte[0])[:1])
    assert tok.decode([partial]) == "\ufffd"


@pytest.mark.parametrize("char", ["a", " ", "\n", "1", ".", "😀", "中", "\u0301"])
def test_one_megabyte_of_one_character_is_fast(tok, char):
    text = char * (1_000_000 // len(char.encode("utf-8")))
    # CPU time, not wall time: shared CI machines would otherwise make this flaky.
    start = time.process_time()
    ids = tok.encode(text)
    elapsed = time.process_time() - start
    assert elapsed < 1.0, f"{elapsed:.2f} s of CPU for 1 MB of {char!r}"
    assert tok.decode(ids) == text


# ------------------------------------------------------------------ streaming


def test_stream_decoder_never_splits_a_character(tok):
    text = "héllo 😀👨‍👩‍👧 中文 ٣ done"
    ids = tok.encode(text)
    assert len(ids) > 5
    decoder = tok.stream_decoder()
    pieces = [decoder.push(i) for i in ids]
    pieces.append(decoder.flush())
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)
    # Some emoji are spread over several byte tokens: those pushes emit nothing.
    assert "" in pieces[:-1]


def test_stream_decoder_flushes_an_unfinished_character(tok):
    partial = tok.token_to_id(tok.token_text(tok.encode("中")[0])[:1])
    decoder = tok.stream_decoder()
    assert decoder.push(partial) == ""
    assert decoder.flush() == "\ufffd"


# ------------------------------------------------------------------ BPE core


def test_round_merging_equals_one_merge_at_a_time(tok):
    words = ["".join(random.Random(i).choice("aab cde\u0120\u010a") for _ in range(i % 40 + 1))
             for i in range(300)]
    for word in words:
        assert _merge_by_rank(list(word), tok._ranks) == _merge_by_rank_exact(list(word), tok._ranks)


def test_long_word_merging_equals_one_merge_at_a_time(tok):
    rng = random.Random(7)
    for alphabet in ("\u010a", "a", "ab", "\u0120\u0120a", "xyz\u0120"):
        word = [rng.choice(alphabet) for _ in range(rng.randint(300, 3000))]
        assert _merge_by_rank(list(word), tok._ranks) == _merge_by_rank_exact(list(word), tok._ranks)


def test_merging_falls_back_when_ranks_are_out_of_order():
    # ("ab","a") ranks before ("a","b") is done everywhere: one-at-a-time gives ["aba", "b"].
    ranks = {("a", "b"): 1, ("ab", "a"): 0}
    assert _merge_by_rank_exact(list("abab"), ranks) == ["aba", "b"]
    assert _merge_by_rank(list("abab"), ranks) == ["aba", "b"]
    long_word = list("ab" * 200)
    assert _merge_by_rank(long_word, ranks) == _merge_by_rank_exact(long_word, ranks)
    # ("aa","a") ranks before ("a","a"): inside one round a transient pair would merge first.
    ranks = {("a", "a"): 1, ("aa", "a"): 0}
    word = list("a" * 301)
    assert _merge_by_rank(word, ranks) == _merge_by_rank_exact(word, ranks)


# ------------------------------------------------------------------ pre-tokenizers


@pytest.mark.parametrize("name", ["qwen2", "llama-bpe", "gpt2", "gpt-2", "default", "deepseek-llm",
                                  "deepseek-coder", "falcon", "starcoder", "refact", "command-r",
                                  "smollm", "stablelm2", "olmo"])
def test_every_pre_tokenizer_keeps_all_text(name):
    pre = PreTokenizer(name)
    for text in corpus():
        pieces = pre.split(text)
        assert "".join(pieces) == text
        assert all(pieces)


def test_digit_grouping():
    assert PreTokenizer("qwen2").split("1234567") == list("1234567")
    assert PreTokenizer("llama-bpe").split("1234567") == ["123", "456", "7"]
    assert PreTokenizer("gpt2").split("1234567 89") == ["1234567", " 89"]
    assert PreTokenizer("starcoder").split("x 12") == ["x", " ", "1", "2"]
    assert PreTokenizer("default").split("1234567") == ["123", "456", "7"]


def test_contractions():
    assert PreTokenizer("qwen2").split("I'M you'Re") == ["I", "'M", " you", "'Re"]
    assert PreTokenizer("gpt2").split("I'M it's") == ["I", "'", "M", " it", "'s"]
    assert PreTokenizer("llama-bpe").split("WE'LL") == ["WE", "'LL"]


def test_whitespace_runs():
    assert PreTokenizer("qwen2").split("a   b\n\n  c") == ["a", "  ", " b", "\n\n", " ", " c"]
    assert PreTokenizer("qwen2").split("x \n\t\ny") == ["x", " \n\t\n", "y"]
    assert PreTokenizer("gpt2").split("a   b") == ["a", "  ", " b"]


def test_unknown_pre_tokenizer_warns_and_uses_default():
    with pytest.warns(UserWarning, match="unknown pre-tokenizer"):
        pre = PreTokenizer("no-such-model")
    assert pre.name == "default"


def test_unknown_pre_name_in_metadata(metadata):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = Tokenizer.from_metadata({**metadata, "tokenizer.ggml.pre": "mystery"})
    assert any("mystery" in str(w.message) for w in caught)
    assert t.pre_tokenizer.name == "default"


def test_unsupported_model_kind(metadata):
    with pytest.raises(UnsupportedError, match="bert"):
        Tokenizer.from_metadata({**metadata, "tokenizer.ggml.model": "bert"})


def test_from_gguf_accepts_an_object_with_metadata(metadata):
    class FileLike:
        pass

    f = FileLike()
    f.metadata = metadata
    assert Tokenizer.from_gguf(f).encode("Hello world") == [9707, 1879]
    with pytest.raises(InvalidArgumentError):
        Tokenizer.from_gguf(42)
