"""SentencePiece BPE ("llama" tokenizers): a small model trained here, written to a GGUF,
and compared token for token with the sentencepiece library."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "tools"))
sys.path.insert(0, os.path.dirname(__file__))

from gguf_metadata import read_metadata  # noqa: E402
from tokenizer_corpus import corpus  # noqa: E402

from orcd.errors import InvalidArgumentError  # noqa: E402
from orcd.tokenizer import Tokenizer, TokenType  # noqa: E402

spm = pytest.importorskip("sentencepiece", reason="sentencepiece is not installed")
gguf = pytest.importorskip("gguf", reason="gguf is not installed")

TRAINING_TEXT = [
    "The quick brown fox jumps over the lazy dog.",
    "Once upon a time there was a little language model that wanted to tokenize everything.",
    "def tokenize(text):\n    return [piece for piece in text.split()]\n",
    "Numbers like 12345 and 3.14159 appear in text, and so do dates such as 2024-01-31.",
    "I'm sure you're right; they've said we'll see what it's like.",
    "Ünïcödé, café, naïve, jalapeño, smörgåsbord.",
    "日本語のテキストと中文文本。",
    "Привет, как дела? Всё хорошо.",
    "Hello world! Hello again, world. Goodbye, world.",
    "    indented code\n\tand tabs\n",
] * 40


def _sp_token_type(sp, i: int) -> int:
    if sp.IsUnknown(i):
        return TokenType.UNKNOWN
    if sp.IsControl(i):
        return TokenType.CONTROL
    if sp.IsByte(i):
        return TokenType.BYTE
    if sp.IsUnused(i):
        return TokenType.UNUSED
    return TokenType.NORMAL


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(sentencepiece processor, our Tokenizer read back from a GGUF written with GGUFWriter)."""
    tmp = tmp_path_factory.mktemp("spm")
    text_file = tmp / "train.txt"
    text_file.write_text("\n".join(TRAINING_TEXT), encoding="utf-8")
    prefix = str(tmp / "bpe")
    spm.SentencePieceTrainer.train(
        input=str(text_file), model_prefix=prefix, model_type="bpe", vocab_size=400,
        byte_fallback=True, character_coverage=1.0, normalization_rule_name="identity",
        remove_extra_whitespaces=False, add_dummy_prefix=True, split_digits=True,
        allow_whitespace_only_pieces=True, bos_id=1, eos_id=2, unk_id=0, pad_id=-1,
        minloglevel=2,
    )
    sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
    n = sp.GetPieceSize()

    path = tmp / "spm.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tokenizer_model("llama")
    writer.add_token_list([sp.IdToPiece(i) for i in range(n)])
    writer.add_token_scores([sp.GetScore(i) for i in range(n)])
    writer.add_token_types([_sp_token_type(sp, i) for i in range(n)])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return sp, Tokenizer.from_metadata(read_metadata(str(path)))


def _comparable(text: str) -> bool:
    # sentencepiece cannot take NUL characters inside its C strings.
    return "\x00" not in text


def test_ids_match_sentencepiece(trained):
    sp, tok = trained
    texts = [t for t in corpus() + TRAINING_TEXT[:10] if _comparable(t)]
    assert len(texts) >= 150
    mismatches = [t for t in texts if tok.encode(t, parse_special=False) != sp.encode(t)]
    assert not mismatches, f"{len(mismatches)} of {len(texts)} differ, e.g. {mismatches[:3]!r}"


def test_decode_inverts_encode(trained):
    sp, tok = trained
    for text in corpus():
        ids = tok.encode(text, parse_special=False)
        assert tok.decode(ids) == text
        if _comparable(text):
            assert tok.decode(ids) == sp.decode(ids)


def test_byte_fallback_and_prefix_space(trained):
    sp, tok = trained
    ids = tok.encode("☃")  # not in the training text: three <0xXX> byte tokens after "▁"
    assert [tok.token_text(i) for i in ids] == ["▁", "<0xE2>", "<0x98>", "<0x83>"]
    assert tok.decode(ids) == "☃"
    first = tok.token_text(tok.encode("hello")[0])
    assert first.startswith("▁"), "add_space_prefix puts a space in front of the text"
    assert tok.encode(" hello") == sp.encode(" hello") != tok.encode("hello")


def test_bos_and_space_after_special_tokens(trained):
    sp, tok = trained
    assert tok.add_bos is True and tok.bos_id == 1 and tok.eos_id == 2 and tok.unknown_id == 0
    assert tok.encode("world", add_special=True) == [1, *sp.encode("world")]
    # A control token written in the text is recognised; the text after it gets a space prefix again.
    ids = tok.encode("Hello</s>world")
    assert ids == [*sp.encode("Hello"), 2, *sp.encode("world")]
    assert tok.encode("Hello</s>world", parse_special=False) == sp.encode("Hello</s>world")
    assert tok.decode(ids) == "Hello</s> world"
    assert tok.decode([1, *sp.encode("world")], skip_special=True) == "world"


def test_stream_decoder_drops_prefix_space_only_at_start(trained):
    sp, tok = trained
    text = "Hello world ☃ again"
    ids = tok.encode(text)
    decoder = tok.stream_decoder()
    pieces = [decoder.push(i) for i in ids] + [decoder.flush()]
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)


def test_unknown_token_without_byte_fallback(trained):
    _, tok = trained
    md = {
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": ["<unk>", "<s>", "</s>", "▁", "a", "b", "▁a", "ab"],
        "tokenizer.ggml.scores": [0.0, 0.0, 0.0, -1.0, -2.0, -2.0, -0.5, -0.7],
        "tokenizer.ggml.token_type": [2, 3, 3, 1, 1, 1, 1, 1],
    }
    small = Tokenizer.from_metadata(md)
    assert small.encode("ab") == [6, 5]  # "▁a" (score -0.5) beats "ab" (-0.7)
    assert small.encode("aé b") == [6, 0, 3, 5]  # é has neither token nor byte token
    with pytest.raises(InvalidArgumentError):
        small.decode([8])
