"""Pre-tokenizers of byte-level BPE models: the split rules named by tokenizer.ggml.pre.

A pre-tokenizer is a list of patterns applied one after another, as llama.cpp
does: the first pattern cuts the text into pieces (its matches and the gaps
between them), each following pattern cuts every piece again. BPE then never
merges across a piece boundary.

The patterns are the ones the models' own tokenizer.json files define, written
for the `regex` module. Two adaptations keep them identical to llama.cpp:
case-insensitive contractions are spelled out ('[sS]) because `(?i)` would also
fold characters such as U+017F into 's'; and `$` is written `\\Z` because
Python's `$` also matches before a final newline.

The `regex` module's `\\s` is exactly the Unicode White_Space set llama.cpp
uses. Its letter/number tables follow a newer Unicode version than llama.cpp's
built-in tables, so the two can differ on characters assigned only in the most
recent Unicode release.
"""
from __future__ import annotations

import warnings

import regex

_CONTRACTIONS_CASED = r"'s|'t|'re|'ve|'m|'ll|'d"
_CONTRACTIONS_ANY_CASE = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"

# GPT-2: contractions, words, numbers and punctuation runs with one optional
# leading space, whitespace runs that leave their last space to the next word.
GPT2 = _CONTRACTIONS_CASED + r"| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"

# Llama 3 (tiktoken cl100k style): numbers in groups of up to three digits.
LLAMA3 = (
    _CONTRACTIONS_ANY_CASE
    + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Qwen2: as Llama 3 but every digit on its own.
QWEN2 = (
    _CONTRACTIONS_ANY_CASE
    + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# DeepSeek LLM: letters of the scripts it was trained on, listed explicitly
# (the class comes from the model's tokenizer.json).
_DEEPSEEK_LLM_LETTERS = (
    # Written with escapes: several of these characters (U+1F7D, U+1FBE, U+212A...)
    # are not in NFC and would be silently changed by editors that normalize text.
    "A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af"
    "\u0370-\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1"
    "\u03a3-\u03f5\u03f7-\u0481\u048a-\u052f\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5"
    "\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77\u1d79-\u1d9a"
    "\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d\u1f50-\u1f57\u1f59\u1f5b\u1f5d"
    "\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3"
    "\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc\u2102\u2107\u210a-\u2113\u2115"
    "\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139\u213c-\u213f"
    "\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3"
    "\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf"
    "\ufb00-\ufb06\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a\U00010400-\U0001044f"
    "\U000104b0-\U000104d3\U000104d8-\U000104fb\U00010c80-\U00010cb2\U00010cc0-\U00010cf2"
    "\U000118a0-\U000118df\U0001e900-\U0001e943"
)
_CJK_HANGUL = "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+"

# name -> patterns applied in order. Aliases share one list.
_RULES: dict[str, list[str]] = {
    "default": [r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"],
    "gpt2": [GPT2],
    "llama3": [LLAMA3],
    "qwen2": [QWEN2],
    "deepseek-llm": [
        r"[\r\n]",
        r"\s?[" + _DEEPSEEK_LLM_LETTERS + r"]+",
        "\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+",
        r"\s+\Z",
        _CJK_HANGUL,
        r"\p{N}+",
    ],
    "deepseek-coder": [r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", _CJK_HANGUL, r"\p{N}"],
    "deepseek-v3": [
        r"\p{N}{1,3}",
        "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
        r"[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+"
        r"| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    ],
    "falcon": [r"[\p{P}\$\+<=>\^~\|`]+", GPT2, r"[0-9][0-9][0-9]"],
    # StarCoder family: GPT-2 with every digit split off first.
    "starcoder": [r"\p{N}", GPT2],
    "bloom": [" ?[^(\\s|.,!?\u2026\u3002\uff0c\u3001\u0964\u06d4\u060c)]+"],
    "viking": [" ?[^(\\s|.,!?\u2026\u3002\uff0c\u3001\u0964\u06d4\u060c)]+", r"\p{N}"],
}

# tokenizer.ggml.pre value -> rule name (llama.cpp's spellings; "gpt2" is accepted too).
_ALIASES: dict[str, str] = {
    "default": "default",
    "gpt2": "gpt2", "gpt-2": "gpt2", "phi-2": "gpt2", "mpt": "gpt2", "olmo": "gpt2",
    "jina-es": "gpt2", "jina-de": "gpt2", "jina-v2-es": "gpt2", "jina-v2-de": "gpt2",
    "jais": "gpt2", "exaone4": "gpt2",
    "llama3": "llama3", "llama-v3": "llama3", "llama-bpe": "llama3", "falcon3": "llama3",
    "dbrx": "llama3", "smaug-bpe": "llama3", "chatglm-bpe": "llama3", "glm4": "llama3",
    "qwen2": "qwen2", "stablelm2": "qwen2", "deepseek-r1-qwen": "qwen2", "megrez": "qwen2",
    "deepseek-llm": "deepseek-llm",
    "deepseek-coder": "deepseek-coder",
    "deepseek-v3": "deepseek-v3",
    "falcon": "falcon",
    "starcoder": "starcoder", "refact": "starcoder", "command-r": "starcoder",
    "smollm": "starcoder", "codeshell": "starcoder", "exaone": "starcoder",
    "minerva-7b": "starcoder",
    "poro-chat": "bloom", "bloom": "bloom", "gpt3-finnish": "bloom",
    "viking": "viking",
}

# Pre-tokenizers whose words are looked up whole in the vocabulary before BPE
# (the model's tokenizer.json sets ignore_merges).
IGNORE_MERGES = frozenset({"llama3", "llama-v3", "llama-bpe", "falcon3", "glm4"})

# Pre-tokenizers llama.cpp makes add a BOS by default (metadata may override).
ADD_BOS_BY_DEFAULT = frozenset({"llama3", "llama-v3", "llama-bpe", "falcon3"})


class PreTokenizer:
    """Splits text into the words that BPE merges within."""

    def __init__(self, name: str | None):
        key = _ALIASES.get(name or "")
        if key is None:
            if name:
                warnings.warn(
                    f"unknown pre-tokenizer {name!r} in tokenizer.ggml.pre; using the default "
                    "split pattern, so tokens may differ from the model's training",
                    stacklevel=3,
                )
            else:
                warnings.warn(
                    "tokenizer.ggml.pre is missing; using the default split pattern",
                    stacklevel=3,
                )
            key = "default"
        self.name = key
        self.patterns = [regex.compile(p) for p in _RULES[key]]
        # A single pattern whose alternatives cover every character needs no gap handling.
        self._covers_all = len(self.patterns) == 1 and _RULES[key][0] in (LLAMA3, QWEN2)

    def split(self, text: str) -> list[str]:
        if not text:
            return []
        if self._covers_all:
            return self.patterns[0].findall(text)
        pieces = [text]
        for pattern in self.patterns:
            pieces = [part for piece in pieces for part in _cut(pattern, piece)]
        return pieces


def _cut(pattern: regex.Pattern, text: str) -> list[str]:
    """The matches of pattern in text, with the unmatched stretches between them kept as pieces."""
    out = []
    pos = 0
    for match in pattern.finditer(text):
        start, end = match.span()
        if start == end:
            continue
        if start > pos:
            out.append(text[pos:start])
        out.append(match.group())
        pos = end
    if pos < len(text):
        out.append(text[pos:])
    return out


def known_names() -> list[str]:
    """Every tokenizer.ggml.pre value recognised."""
    return sorted(_ALIASES)
