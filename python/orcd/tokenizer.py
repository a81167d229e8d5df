"""Tokenizers built from a GGUF file's tokenizer.ggml.* metadata, token for token as llama.cpp.

Two models are supported:

* "gpt2": byte-level BPE. Text is cut into words by the pre-tokenizer named in
  tokenizer.ggml.pre (see pretokenize.py), each word's UTF-8 bytes are mapped to
  printable characters, and adjacent symbols are merged by merge rank.
* "llama": SentencePiece-style BPE. Spaces become U+2581, a space is put in front
  of the text and after every special token (add_space_prefix), and adjacent
  symbols are merged by the score of the token they form; characters without a
  token fall back to <0xXX> byte tokens, or to the unknown token.

Special tokens (token types control, user-defined and unknown) are cut out of
the text first, longest text first, as llama.cpp does.
"""
from __future__ import annotations

import codecs
import heapq
import operator
import os
from typing import Any, Iterable, Mapping, Sequence

from .errors import InvalidArgumentError, InvalidFileError, UnsupportedError
from .pretokenize import ADD_BOS_BY_DEFAULT, IGNORE_MERGES, PreTokenizer

__all__ = ["Tokenizer", "StreamDecoder", "TokenType"]


class TokenType:
    """Values of tokenizer.ggml.token_type."""

    NORMAL = 1
    UNKNOWN = 2
    CONTROL = 3
    USER_DEFINED = 4
    UNUSED = 5
    BYTE = 6


# Tokens that end generation, recognised by their text as llama.cpp does (files
# converted before these were marked often list them as normal tokens).
_END_OF_GENERATION_TEXTS = frozenset({
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<｜end▁of▁sentence｜>", "[e~[",
})
# Fill-in-the-middle markers of the code models; the last three also end generation.
_FIM_TEXTS = frozenset({
    "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>",
    "<|code_prefix|>", "<|prefix|>",
    "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>",
    "<|code_suffix|>", "<|suffix|>",
    "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>",
    "<|code_middle|>", "<|middle|>",
})
_FIM_END_TEXTS = frozenset({
    "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]",
    "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>",
    "<|file_sep|>",
})
# All of these are control tokens in llama.cpp, whatever type the file gives them.
_CONTROL_TEXTS = _END_OF_GENERATION_TEXTS | _FIM_TEXTS | _FIM_END_TEXTS
# Candidates for the end-of-turn token when the metadata names none, in llama.cpp's order.
_EOT_TEXTS = (
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
    "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>",
)
# gpt-oss renders these even when special tokens are skipped.
_ALWAYS_RENDERED_TEXTS = frozenset({"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"})

_SPM_SPACE = "\u2581"
_C_SPACES = " \t\n\v\f\r"


def _byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters.

    Printable Latin-1 bytes stand for themselves; the others (controls, space,
    NBSP, soft hyphen) are moved to U+0100 onwards in byte order.
    """
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = {b: chr(b) for b in printable}
    shift = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(0x100 + shift)
            shift += 1
    return table


_BYTE_TO_CHAR = _byte_to_unicode()
_CHAR_TO_BYTE = {c: b for b, c in _BYTE_TO_CHAR.items()}
# A word's UTF-8 bytes, read as Latin-1 (one character per byte), translate to byte-level symbols.
_LATIN1_TO_BYTECHARS = str.maketrans({chr(b): c for b, c in _BYTE_TO_CHAR.items()})


def _as_list(value: Any) -> list:
    """numpy arrays and lists alike, as a plain list of Python values."""
    if value is None:
        return []
    if hasattr(value, "tolist"):
        return value.tolist()
    return list(value)


def _opt_id(metadata: Mapping[str, Any], key: str, default: int | None, n_vocab: int) -> int | None:
    """A special token id from metadata; out-of-vocabulary values fall back to the default."""
    if default is not None and not 0 <= default < n_vocab:
        default = None
    value = metadata.get(key)
    if value is None:
        return default
    value = int(value)
    return value if 0 <= value < n_vocab else default


class Tokenizer:
    """Encodes text to token ids and back, exactly as llama.cpp does for the same GGUF file.

    Build one with Tokenizer.from_gguf(path) or Tokenizer.from_metadata(metadata).
    """

    def __init__(self, metadata: Mapping[str, Any]):
        model = metadata.get("tokenizer.ggml.model")
        if model not in ("gpt2", "llama"):
            raise UnsupportedError(
                f"tokenizer.ggml.model is {model!r}; orcd supports 'gpt2' (byte-level BPE) "
                "and 'llama' (SentencePiece BPE)"
            )
        tokens = [str(t) for t in _as_list(metadata.get("tokenizer.ggml.tokens"))]
        if not tokens:
            raise InvalidFileError("tokenizer.ggml.tokens is missing or empty")
        n_vocab = len(tokens)
        types = [int(t) for t in _as_list(metadata.get("tokenizer.ggml.token_type"))]
        if types and len(types) < n_vocab:
            raise InvalidFileError(
                f"tokenizer.ggml.token_type has {len(types)} entries for {n_vocab} tokens"
            )
        if not types:
            types = [TokenType.NORMAL] * n_vocab
        types = types[:n_vocab]

        self.model = model
        self._tokens = tokens
        self._types = types
        self._token_to_id: dict[str, int] = {}
        for i, text in enumerate(tokens):
            if not text:
                text = tokens[i] = f"[EMPTY_{i}]"
            self._token_to_id[text] = i  # a repeated text maps to its last id, as in llama.cpp
        self._is_spm = model == "llama"

        pre_name = metadata.get("tokenizer.ggml.pre")
        if self._is_spm:
            self.pre_tokenizer = None
            self._ranks: dict[tuple[str, str], int] = {}
            scores = _as_list(metadata.get("tokenizer.ggml.scores"))
            if scores and len(scores) < n_vocab:
                raise InvalidFileError(
                    f"tokenizer.ggml.scores has {len(scores)} entries for {n_vocab} tokens"
                )
            self._scores = [float(s) for s in scores[:n_vocab]] if scores else [0.0] * n_vocab
            defaults = {"bos": 1, "eos": 2, "unk": 0}
            add_bos_default = True
            self.add_space_prefix = bool(metadata.get("tokenizer.ggml.add_space_prefix", True))
            self._ignore_merges = False
        else:
            self.pre_tokenizer = PreTokenizer(pre_name)
            merges = _as_list(metadata.get("tokenizer.ggml.merges"))
            if not merges:
                raise InvalidFileError("tokenizer.ggml.merges is missing for a 'gpt2' tokenizer")
            self._ranks = {}
            for rank, merge in enumerate(merges):
                cut = merge.find(" ", 1)
                pair = (merge[:cut], merge[cut + 1:]) if cut >= 0 else ("", "")
                self._ranks.setdefault(pair, rank)
            self._scores = None
            defaults = {"bos": 11, "eos": 11, "unk": None}
            add_bos_default = pre_name in ADD_BOS_BY_DEFAULT
            self.add_space_prefix = bool(metadata.get("tokenizer.ggml.add_space_prefix", False))
            self._ignore_merges = pre_name in IGNORE_MERGES

        self._bos = _opt_id(metadata, "tokenizer.ggml.bos_token_id", defaults["bos"], n_vocab)
        self._eos = _opt_id(metadata, "tokenizer.ggml.eos_token_id", defaults["eos"], n_vocab)
        self._unk = _opt_id(metadata, "tokenizer.ggml.unknown_token_id", defaults["unk"], n_vocab)
        self._pad = _opt_id(metadata, "tokenizer.ggml.padding_token_id", None, n_vocab)
        self._eot = _opt_id(metadata, "tokenizer.ggml.eot_token_id", None, n_vocab)
        self.add_bos = bool(metadata.get("tokenizer.ggml.add_bos_token", add_bos_default))
        self.add_eos = bool(metadata.get("tokenizer.ggml.add_eos_token", False))

        # Files converted before these texts were marked keep them as normal tokens;
        # llama.cpp upgrades them to control tokens, and so do we.
        vocab = self._token_to_id
        for text in _CONTROL_TEXTS:
            if text in vocab:
                types[vocab[text]] = TokenType.CONTROL
        self._stop_ids = {vocab[t] for t in _END_OF_GENERATION_TEXTS | _FIM_END_TEXTS if t in vocab}
        # Exceptions llama.cpp makes: "<|end|>" only separates messages in gpt-oss and
        # solar-open, and "</s>" is plain text in vocabularies with "<|tool_response>".
        if "<|end|>" in vocab and (
            {"<|return|>", "<|call|>"} <= vocab.keys() or {"<|calls|>", "<|flush|>"} <= vocab.keys()
        ):
            types[vocab["<|end|>"]] = TokenType.USER_DEFINED
            self._stop_ids.discard(vocab["<|end|>"])
        if "</s>" in vocab and ("<|tool_response>" in vocab or "<|plamo:eos|>" in vocab):
            types[vocab["</s>"]] = TokenType.NORMAL
            self._stop_ids.discard(vocab["</s>"])
        if self._eot is None:
            for text in _EOT_TEXTS:
                if text in self._token_to_id:
                    self._eot = self._token_to_id[text]
                    types[self._eot] = TokenType.CONTROL
                    break
        for text in _ALWAYS_RENDERED_TEXTS:
            i = self._token_to_id.get(text)
            if i is not None:
                types[i] = TokenType.USER_DEFINED

        special_types = (TokenType.CONTROL, TokenType.USER_DEFINED, TokenType.UNKNOWN)
        special_ids = [i for i, t in enumerate(types) if t in special_types]
        # Longest text first; llama.cpp cuts the text at each special token in this order.
        special_ids.sort(key=lambda i: (-len(tokens[i].encode("utf-8")), i))
        self._special_ids = special_ids

        # Phi-3 GGUFs: whitespace after most special tokens is dropped (llama.cpp keys this on the name).
        name = str(metadata.get("general.name", "")).lower()
        self._rstrip_ids: frozenset[int] = frozenset()
        if "phi-3" in name or "phi3" in name:
            keep = {self._token_to_id.get(t) for t in ("<unk>", "<s>", "<|endoftext|>")}
            rstrip = set(special_ids) - keep
            if "</s>" in self._token_to_id:
                rstrip.add(self._token_to_id["</s>"])
            self._rstrip_ids = frozenset(rstrip)

        self._word_cache: dict[str, tuple[int, ...]] = {}
        self._pieces = [self._render(i) for i in range(n_vocab)]

    # ---------------------------------------------------------------- construction

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> "Tokenizer":
        """Build from a dict of GGUF metadata (key -> value; arrays as lists or numpy arrays)."""
        return cls(metadata)

    @classmethod
    def from_gguf(cls, source: Any) -> "Tokenizer":
        """Build from a GGUF path or from any object with a `.metadata` dict (orcd.GGUFFile)."""
        if isinstance(source, (str, os.PathLike)):
            import orcd

            source = orcd.GGUFFile(os.fspath(source))
        metadata = getattr(source, "metadata", None)
        if not isinstance(metadata, Mapping):
            raise InvalidArgumentError(
                f"Tokenizer.from_gguf takes a path or an object with a .metadata dict, got {type(source).__name__}"
            )
        return cls(metadata)

    # ---------------------------------------------------------------- properties

    @property
    def vocab_size(self) -> int:
        return len(self._tokens)

    def __len__(self) -> int:
        return len(self._tokens)

    @property
    def bos_id(self) -> int | None:
        return self._bos

    @property
    def eos_id(self) -> int | None:
        return self._eos

    @property
    def eot_id(self) -> int | None:
        return self._eot

    @property
    def pad_id(self) -> int | None:
        return self._pad

    @property
    def unknown_id(self) -> int | None:
        return self._unk

    @property
    def bos_token(self) -> str:
        return self._tokens[self._bos] if self._bos is not None else ""

    @property
    def eos_token(self) -> str:
        return self._tokens[self._eos] if self._eos is not None else ""

    @property
    def stop_ids(self) -> frozenset[int]:
        """Ids that end generation (llama.cpp's end-of-generation set): EOS, EOT and the
        end-like tokens found by their text."""
        return frozenset(self._stop_ids | {i for i in (self._eos, self._eot) if i is not None})

    def token_text(self, token_id: int) -> str:
        """The vocabulary entry of an id (byte-level or U+2581 form, not decoded)."""
        return self._tokens[self._check_id(token_id)]

    def token_type(self, token_id: int) -> int:
        """The id's TokenType value (after llama.cpp's corrections of control tokens)."""
        return self._types[self._check_id(token_id)]

    def token_to_id(self, text: str) -> int | None:
        """The id whose vocabulary entry is exactly text, or None."""
        return self._token_to_id.get(text)

    def is_special(self, token_id: int) -> bool:
        """Control and unknown tokens: the ones decode(skip_special=True) leaves out."""
        return self._types[self._check_id(token_id)] in (TokenType.CONTROL, TokenType.UNKNOWN)

    # ---------------------------------------------------------------- encoding

    def encode(self, text: str, add_special: bool = False, parse_special: bool = True) -> list[int]:
        """Token ids of text.

        add_special: put BOS in front / EOS behind as tokenizer.ggml.add_bos_token /
        add_eos_token say. parse_special: recognise control tokens written in the text
        (user-defined tokens are always recognised, as in llama.cpp).
        """
        if not isinstance(text, str):
            raise InvalidArgumentError(f"encode takes a str, got {type(text).__name__}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidArgumentError(
                f"text holds a lone surrogate {text[exc.start]!r} at index {exc.start}, which is "
                "not a Unicode character; decode the source bytes with errors='replace' or 'ignore'"
            ) from None

        out: list[int] = []
        if add_special and self.add_bos:
            if self._bos is None:
                raise InvalidArgumentError("add_special=True but the model defines no BOS token")
            out.append(self._bos)
        fragments = self._split_special(text, parse_special) if text else []
        if self._is_spm:
            prev_special = True
            for fragment in fragments:
                if isinstance(fragment, int):
                    out.append(fragment)
                    prev_special = True
                    continue
                if self.add_space_prefix and prev_special:
                    fragment = " " + fragment
                self._encode_spm(fragment.replace(" ", _SPM_SPACE), out)
                prev_special = False
        else:
            for fragment in fragments:
                if isinstance(fragment, int):
                    out.append(fragment)
                else:
                    self._encode_bpe(fragment, out)
        if add_special and self.add_eos:
            if self._eos is None:
                raise InvalidArgumentError("add_special=True but the model defines no EOS token")
            out.append(self._eos)
        return out

    def _split_special(self, text: str, parse_special: bool) -> list:
        """Text cut into plain-text fragments (str) and special token ids (int)."""
        fragments: list = [text]
        for token_id in self._special_ids:
            if not parse_special and self._types[token_id] != TokenType.USER_DEFINED:
                continue
            special = self._tokens[token_id]
            if special not in text:
                continue
            rstrip = token_id in self._rstrip_ids
            cut: list = []
            for fragment in fragments:
                if isinstance(fragment, int) or special not in fragment:
                    cut.append(fragment)
                    continue
                parts = fragment.split(special)
                for k, part in enumerate(parts):
                    if k > 0:
                        cut.append(token_id)
                        if rstrip:
                            part = part.lstrip(_C_SPACES)
                    if part:
                        cut.append(part)
            fragments = cut
        return fragments

    def _encode_bpe(self, text: str, out: list[int]) -> None:
        cache = self._word_cache
        for word in self.pre_tokenizer.split(text):
            ids = cache.get(word)
            if ids is None:
                ids = self._bpe_word(word)
                if len(cache) < 200_000:
                    cache[word] = ids
            out.extend(ids)

    def _bpe_word(self, word: str) -> tuple[int, ...]:
        chars = word.encode("utf-8").decode("latin-1").translate(_LATIN1_TO_BYTECHARS)
        vocab = self._token_to_id
        if self._ignore_merges and chars in vocab:
            return (vocab[chars],)
        ids: list[int] = []
        for symbol in _merge_by_rank(chars, self._ranks):
            token = vocab.get(symbol)
            if token is not None:
                ids.append(token)
            else:
                # No token for the merged symbol: one token per UTF-8 byte of it, where such exists.
                for byte in symbol.encode("utf-8"):
                    token = vocab.get(chr(byte)) if byte < 0x80 else None
                    if token is not None:
                        ids.append(token)
        return tuple(ids)

    def _encode_spm(self, text: str, out: list[int]) -> None:
        vocab = self._token_to_id
        for symbol in _merge_by_score(text, vocab, self._scores):
            token = vocab.get(symbol)
            if token is not None:
                out.append(token)
                continue
            for byte in symbol.encode("utf-8"):
                token = vocab.get(f"<0x{byte:02X}>")
                if token is None and byte < 0x80:
                    token = vocab.get(chr(byte))
                if token is None:
                    token = self._unk
                    if token is None:
                        raise InvalidArgumentError(
                            f"{symbol!r} has no token, no byte token and the model defines no unknown token"
                        )
                    out.append(token)
                    break  # one unknown token per character, as SentencePiece does
                out.append(token)

    # ---------------------------------------------------------------- decoding

    def _render(self, token_id: int) -> bytes:
        """The bytes a token stands for in decoded text."""
        text = self._tokens[token_id]
        kind = self._types[token_id]
        if kind in (TokenType.CONTROL, TokenType.UNKNOWN, TokenType.USER_DEFINED):
            return text.encode("utf-8")
        if kind == TokenType.BYTE:
            if len(text) == 6 and text.startswith("<0x") and text.endswith(">"):
                try:
                    return bytes([int(text[3:5], 16)])
                except ValueError:
                    pass
            return text.encode("utf-8")
        if kind != TokenType.NORMAL:
            return b""  # unused and undefined tokens stand for nothing
        if self._is_spm:
            return text.replace(_SPM_SPACE, " ").encode("utf-8")
        try:
            return bytes(_CHAR_TO_BYTE[c] for c in text)
        except KeyError:
            return text.encode("utf-8")

    def token_bytes(self, token_id: int, skip_special: bool = False) -> bytes:
        """The bytes one token contributes to decoded text."""
        token_id = self._check_id(token_id)
        if skip_special and self._types[token_id] in (TokenType.CONTROL, TokenType.UNKNOWN):
            return b""
        return self._pieces[token_id]

    def decode(self, ids: Iterable[int], skip_special: bool = False) -> str:
        """Text of ids. Bytes that do not form UTF-8 become U+FFFD.

        skip_special leaves out control and unknown tokens. For SentencePiece models the
        space that encoding put in front of the text is removed again.
        """
        ids = self._checked_ids(ids)
        if skip_special:
            hidden = (TokenType.CONTROL, TokenType.UNKNOWN)
            types = self._types
            pieces = [b"" if types[i] in hidden else self._pieces[i] for i in ids]
        else:
            pieces = [self._pieces[i] for i in ids]
        data = b"".join(pieces)
        if self._is_spm and self.add_space_prefix:
            data = _drop_prefix_space(pieces, data)
        return data.decode("utf-8", errors="replace")

    def stream_decoder(self, skip_special: bool = False) -> "StreamDecoder":
        """An incremental decoder for generated ids (see StreamDecoder)."""
        return StreamDecoder(self, skip_special)

    # ---------------------------------------------------------------- checks

    def _check_id(self, token_id: Any) -> int:
        try:
            if isinstance(token_id, bool):
                raise TypeError
            value = operator.index(token_id)  # ints and numpy integers, not floats or strings
        except TypeError:
            raise InvalidArgumentError(f"token ids are ints, got {type(token_id).__name__}") from None
        if not 0 <= value < len(self._tokens):
            raise InvalidArgumentError(
                f"token id {value} is outside the vocabulary (0..{len(self._tokens) - 1})"
            )
        return value

    def _checked_ids(self, ids: Iterable[int]) -> list[int]:
        if isinstance(ids, (str, bytes)):
            raise InvalidArgumentError("decode takes a sequence of token ids, not a string")
        return [self._check_id(i) for i in ids]

    def __repr__(self) -> str:
        kind = "spm" if self._is_spm else f"bpe/{self.pre_tokenizer.name}"
        return f"Tokenizer({kind}, vocab_size={len(self._tokens)})"


def _drop_prefix_space(pieces: list[bytes], data: bytes) -> bytes:
    """Remove the leading space of the first non-empty piece (the one encoding added)."""
    for piece in pieces:
        if piece:
            return data[1:] if piece.startswith(b" ") else data
    return data


class StreamDecoder:
    """Turns generated ids into text as they come, never splitting a UTF-8 character.

    push(id) returns the text that became complete (often "", when a character's
    bytes are still arriving); flush() returns what is left, with U+FFFD for an
    unfinished character. The SentencePiece prefix space is dropped only at the start.
    """

    def __init__(self, tokenizer: Tokenizer, skip_special: bool = False):
        self._tokenizer = tokenizer
        self._skip_special = skip_special
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._at_start = tokenizer._is_spm and tokenizer.add_space_prefix

    def push(self, token_id: int) -> str:
        data = self._tokenizer.token_bytes(token_id, self._skip_special)
        if self._at_start and data:
            self._at_start = False
            if data.startswith(b" "):
                data = data[1:]
        return self._utf8.decode(data)

    def push_many(self, ids: Iterable[int]) -> str:
        return "".join(self.push(i) for i in ids)

    def flush(self) -> str:
        return self._utf8.decode(b"", final=True)


# ------------------------------------------------------------------ merge algorithms


def _merge_by_rank(symbols: Sequence[str], ranks: Mapping[tuple[str, str], int]) -> list[str]:
    """Byte-level BPE: merge the adjacent pair of lowest rank (leftmost on ties) until none is left.

    Works in rounds: a round merges every occurrence of the best pair, left to right.
    This equals merging one pair at a time as long as no merge creates a pair that
    ranks before the one being merged, which holds for trained merge lists; where it
    does not, the word is redone one merge at a time.
    """
    if len(symbols) < 2:
        return list(symbols)
    if len(symbols) > _LONG_WORD:
        return _merge_long_word(symbols, ranks)
    symbols = list(symbols)
    missing = len(ranks) + 1
    while len(symbols) > 1:
        best = min(zip(symbols, symbols[1:]), key=lambda p: ranks.get(p, missing))
        rank = ranks.get(best)
        if rank is None:
            break
        first, second = best
        merged = first + second
        out: list[str] = []
        i, n = 0, len(symbols)
        while i < n:
            try:
                j = symbols.index(first, i)
            except ValueError:
                out.extend(symbols[i:])
                break
            out.extend(symbols[i:j])
            if j + 1 < n and symbols[j + 1] == second:
                # A new neighbour pair ranking before this one: the shortcut would differ.
                if (out and ranks.get((out[-1], merged), missing) < rank) or (
                    j + 2 < n and ranks.get((merged, symbols[j + 2]), missing) < rank
                ):
                    return _merge_by_rank_exact(symbols, ranks)
                out.append(merged)
                i = j + 2
            else:
                out.append(first)
                i = j + 1
        symbols = out
    return symbols


# Words longer than this (in byte symbols) are merged with C-speed string
# replacement, which keeps a megabyte-long word (one repeated character) fast.
_LONG_WORD = 256

# Each symbol is written OPEN + symbol + CLOSE. Byte-level symbols never contain
# these control characters (bytes below 0x21 are written as U+0100 and up), so
# OPEN a CLOSE OPEN b CLOSE is exactly "symbol a followed by symbol b", and
# occurrences never share characters: one str.replace merges them left to right,
# pairing runs of one symbol from the left as one-at-a-time merging does.
_OPEN, _CLOSE = "\x01", "\x02"


def _merge_long_word(symbols: Sequence[str], ranks: Mapping[tuple[str, str], int]) -> list[str]:
    missing = len(ranks) + 1
    wrapped = _OPEN + (_CLOSE + _OPEN).join(symbols) + _CLOSE
    alphabet = set(symbols)
    absent: set[tuple[str, str]] = set()
    previous_rank, previous_state = -1, wrapped
    while True:
        best = _best_pair(wrapped, alphabet, absent, ranks)
        if best is None:
            return _unwrap(wrapped)
        rank, first, second = best
        merged = first + second
        # Rounds must come in rank order, and a pair (merged, first) that exists only
        # between two merges of one round must not rank before them either.
        if rank < previous_rank:
            return _merge_by_rank_exact(_unwrap(previous_state), ranks)
        if ranks.get((merged, first), missing) < rank:
            return _merge_by_rank_exact(_unwrap(wrapped), ranks)
        previous_rank, previous_state = rank, wrapped
        wrapped = wrapped.replace(_OPEN + first + _CLOSE + _OPEN + second + _CLOSE,
                                  _OPEN + merged + _CLOSE)
        # Only pairs with the new symbol can have appeared.
        absent = {p for p in absent if merged not in p}
        alphabet.add(merged)


def _unwrap(wrapped: str) -> list[str]:
    return wrapped[1:-1].split(_CLOSE + _OPEN)


def _best_pair(wrapped: str, alphabet: set[str], absent: set[tuple[str, str]],
               ranks: Mapping[tuple[str, str], int]):
    """(rank, first, second) of the lowest-ranked adjacent pair, or None.

    absent collects pairs found missing, so that each is searched for only once
    until a merge makes it possible again.
    """
    if len(alphabet) <= 64:
        candidates = sorted(
            (rank, a, b) for a in alphabet for b in alphabet
            if (rank := ranks.get((a, b))) is not None and (a, b) not in absent
        )
        for rank, a, b in candidates:
            if _OPEN + a + _CLOSE + _OPEN + b + _CLOSE in wrapped:
                return rank, a, b
            absent.add((a, b))
        return None
    current = _unwrap(wrapped)
    found = [(ranks[p], *p) for p in set(zip(current, current[1:])) if p in ranks]
    return min(found) if found else None


def _merge_by_rank_exact(symbols: list[str], ranks: Mapping[tuple[str, str], int]) -> list[str]:
    """Byte-level BPE one merge at a time: a heap of (rank, position) over adjacent pairs."""
    return _merge_with_heap(symbols, lambda left, right: ranks.get((left, right)))


def _merge_by_score(text: str, vocab: Mapping[str, int], scores: list[float]) -> list[str]:
    """SentencePiece BPE: merge the adjacent pair whose joined text is the token of highest
    score (leftmost on ties) until no adjacent pair forms a token."""

    def priority(left: str, right: str) -> float | None:
        token = vocab.get(left + right)
        return None if token is None else -scores[token]

    return _merge_with_heap(list(text), priority)


def _merge_with_heap(symbols: list[str], priority) -> list[str]:
    """Repeatedly merge the adjacent pair of least priority(left, right), leftmost first.

    priority returns None for pairs that may not merge. Symbols live in a linked
    list; heap entries whose symbols changed since they were pushed are skipped.
    """
    n = len(symbols)
    if n < 2:
        return symbols
    text = symbols[:]
    prev = list(range(-1, n - 1))
    nxt = list(range(1, n + 1))
    nxt[-1] = -1
    heap: list[tuple[float, int, int, str]] = []
    for i in range(n - 1):
        value = priority(text[i], text[i + 1])
        if value is not None:
            heap.append((value, i, i + 1, text[i] + text[i + 1]))
    heapq.heapify(heap)

    def push_heap(left: int, right: int) -> None:
        if left < 0 or right < 0:
            return
        value = priority(text[left], text[right])
        if value is not None:
            heapq.heappush(heap, (value, left, right, text[left] + text[right]))

    while heap:
        _, left, right, joined = heapq.heappop(heap)
        if not text[left] or not text[right] or nxt[left] != right or text[left] + text[right] != joined:
            continue
        text[left] = joined
        text[right] = ""
        nxt[left] = nxt[right]
        if nxt[right] >= 0:
            prev[nxt[right]] = left
        push_heap(prev[left], left)
        push_heap(left, nxt[left])
    return [t for t in text if t]
