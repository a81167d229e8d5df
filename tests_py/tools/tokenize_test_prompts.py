"""Print the token ids of the CPU-test prompts for the default model (Qwen2.5-Coder).

The ids in test_model_cpu.py were produced by this script, so the forward-pass
tests do not depend on orcd's own tokenizer. It builds a Hugging Face
`tokenizers` BPE from the vocabulary and merges stored in the GGUF file, with
Qwen2's published pre-tokenizer (the split regex below, then byte-level
mapping) and NFC normalisation; control tokens (<|im_start|> ...) are matched
whole. It checks that each id list decodes back to its text.

    pip install tokenizers gguf
    python tests_py/tools/tokenize_test_prompts.py MODEL.gguf
"""
import sys

import gguf
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers

QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
               r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

PROMPTS = {
    "english": "The quick brown fox jumps over the lazy dog. Paris is the capital of France, "
               "and the capital of Germany is",
    "chatml": "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
              "<|im_start|>user\nWrite a haiku about the sea.<|im_end|>\n<|im_start|>assistant\n",
    "python": "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    if n < 2:\n"
              "        return n\n",
}


def byte_decoder() -> dict:
    """GPT-2's byte-to-printable-character table, inverted."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return {c: b for b, c in chars.items()}


def main(path: str) -> None:
    reader = gguf.GGUFReader(path)
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    types = reader.fields["tokenizer.ggml.token_type"].contents()
    merges = [tuple(m.split(" ", 1)) for m in reader.fields["tokenizer.ggml.merges"].contents()]
    control = [t for t, ty in zip(tokens, types) if ty == gguf.TokenType.CONTROL]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.add_special_tokens(control)
    decode_bytes = byte_decoder()
    for name, text in PROMPTS.items():
        ids = tok.encode(text).ids
        pieces = [tokens[i] if tokens[i] in control else bytes(decode_bytes[c] for c in tokens[i]).decode("utf-8", "replace")
                  for i in ids]
        assert "".join(pieces) == text, (name, pieces)
        print(f"{name} ({len(ids)} tokens): {ids}")


if __name__ == "__main__":
    main(sys.argv[1])
