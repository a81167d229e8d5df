"""Encode throughput of orcd's tokenizer on about 1 MB of mixed text, beside HF tokenizers.

    PYTHONPATH=python python bench/bench_tokenizer.py [MODEL.gguf] [--repeat N]

Reports MB/s (UTF-8 bytes in per second) for a cold first call (empty word cache,
what a single long prompt costs) and the median of warm calls. With transformers
installed, the same file is loaded through transformers' GGUF support and its fast
(Rust, multi-threaded) tokenizer is timed the same way, and the ids of both are compared.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
sys.path.insert(0, os.path.join(HERE, "..", "tests_py"))
sys.path.insert(0, os.path.join(HERE, "..", "tests_py", "tools"))

DEFAULT_MODEL = os.path.expanduser("~/.cache/orcd/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")

_WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at which "
    "but have an they you were her she there been one all we their has would when if so no will "
    "model token inference memory kernel matrix vector quantized weight layer attention cache "
    "streaming throughput latency benchmark tokenizer template generation sampling temperature"
).split()
_CODE = [
    "def {n}(x, y=None):\n    if y is None:\n        return x * {k}\n    return [a + b for a, b in zip(x, y)]\n\n",
    "for (size_t i = 0; i < n; ++i) {{\n    out[i] = std::max(0.0f, in[i] * {k}.5f);\n}}\n",
    "const {n} = async (req, res) => {{ const data = await fetch(`/api/{n}?id=${{req.id}}`); res.json(data); }};\n",
    "{{\"name\": \"{n}\", \"values\": [{k}, {k}.25, -{k}e3], \"ok\": true, \"tags\": [\"a\", \"b\"]}}\n",
]
_MULTILINGUAL = [
    "日本語の文章はスペースなしで書かれます。", "中文文本没有空格，但有标点符号。", "Привет, как дела сегодня?",
    "مرحبا بكم في عالم النماذج اللغوية", "नमस्ते, आप कैसे हैं?", "Ünïcödé wörds and café crème 😀👍🏽🇫🇷",
]


def mixed_text(size: int = 1_000_000, seed: int = 0) -> str:
    """Prose, code, JSON, numbers and other scripts, about `size` UTF-8 bytes, deterministic."""
    rng = random.Random(seed)
    parts: list[str] = []
    total = 0
    while total < size:
        kind = rng.random()
        if kind < 0.55:
            sentence = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(6, 20)))
            chunk = sentence.capitalize() + rng.choice([". ", ", ", "! ", "? ", ".\n\n"])
        elif kind < 0.8:
            chunk = rng.choice(_CODE).format(n=f"fn_{rng.randint(0, 999)}", k=rng.randint(0, 99999))
        elif kind < 0.9:
            chunk = rng.choice(_MULTILINGUAL) + " "
        else:
            chunk = f"{rng.randint(0, 10**9)} {rng.random():.6f} {rng.randint(1900, 2100)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}\n"
        parts.append(chunk)
        total += len(chunk.encode("utf-8"))
    return "".join(parts)


def time_calls(fn, repeat: int) -> tuple[float, float]:
    """(first call seconds, median of the following calls)."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    rest = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        rest.append(time.perf_counter() - start)
    return first, statistics.median(rest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default=DEFAULT_MODEL)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from gguf_metadata import read_metadata
    from orcd.tokenizer import Tokenizer

    text = mixed_text()
    megabytes = len(text.encode("utf-8")) / 1e6
    metadata = read_metadata(args.model)

    start = time.perf_counter()
    tok = Tokenizer.from_metadata(metadata)
    build = time.perf_counter() - start

    first, warm = time_calls(lambda: tok.encode(text), args.repeat)
    ids = tok.encode(text)
    dec_first, dec_warm = time_calls(lambda: tok.decode(ids), args.repeat)
    print(f"text: {megabytes:.3f} MB, {len(text)} characters, {len(ids)} tokens")
    print(f"orcd  build {build:.2f} s")
    print(f"orcd  encode cold {megabytes / first:6.2f} MB/s   warm {megabytes / warm:6.2f} MB/s")
    print(f"orcd  decode      {megabytes / dec_warm:6.2f} MB/s")

    hf = hf_tokenizer(args.model, metadata)
    if hf is None:
        print("transformers is not installed: no HF tokenizers comparison")
        return
    hf_first, hf_warm = time_calls(lambda: hf.encode(text, add_special_tokens=False), args.repeat)
    hf_ids = list(hf.encode(text, add_special_tokens=False).ids)
    print(f"HF    encode cold {megabytes / hf_first:6.2f} MB/s   warm {megabytes / hf_warm:6.2f} MB/s")
    print(f"ids identical to HF: {hf_ids == ids}")


def hf_tokenizer(model: str, metadata: dict):
    """The `tokenizers.Tokenizer` transformers builds from the GGUF, or None without transformers.

    transformers' own GGUF reader needs torch; without it the same converter is fed
    the metadata read here.
    """
    try:
        from transformers import AutoTokenizer
    except ImportError:
        return None
    try:
        return AutoTokenizer.from_pretrained(
            os.path.dirname(os.path.abspath(model)), gguf_file=os.path.basename(model)
        ).backend_tokenizer
    except (ImportError, ModuleNotFoundError):
        from transformers.integrations.gguf.gguf_tokenizer_mapping import (
            GGUF_TOKENIZER_MAPPING,
            convert_gguf_tokenizer,
        )

        fields = {
            name: metadata["tokenizer." + key]
            for key, name in GGUF_TOKENIZER_MAPPING["tokenizer"].items()
            if "tokenizer." + key in metadata
        }
        fields = {k: v.tolist() if hasattr(v, "tolist") else v for k, v in fields.items()}
        return convert_gguf_tokenizer(metadata["general.architecture"], fields)[0]

if __name__ == "__main__":
    main()
