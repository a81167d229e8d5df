"""The `orcd` command line. Each subcommand is a function taking parsed args."""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict

from . import models
from .errors import OrcdError


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def cmd_pull(args) -> int:
    path = models.pull(args.name)
    print(path)
    return 0


def cmd_inspect(args) -> int:
    from . import GGUFFile

    path = models.resolve(args.model)
    with GGUFFile(str(path)) as f:
        meta = f.metadata
        arch = meta.get("general.architecture", "?")

        def hp(key, default=None):
            return meta.get(f"{arch}.{key}", default)

        n_layers, n_embd, n_heads = hp("block_count"), hp("embedding_length"), hp("attention.head_count")
        n_kv = hp("attention.head_count_kv", n_heads)
        ctx = hp("context_length")
        print(f"file:          {path}")
        print(f"name:          {meta.get('general.name', '')}")
        print(f"architecture:  {arch}   (GGUF v{f.version}, alignment {f.alignment})")
        print(f"layers:        {n_layers}   embedding {n_embd}   feed-forward {hp('feed_forward_length')}")
        print(f"heads:         {n_heads} query, {n_kv} key/value   context length {ctx}")
        print(f"rope:          freq_base {hp('rope.freq_base', 10000.0)}   dims {hp('rope.dimension_count', 'head size')}")
        tokens = meta.get("tokenizer.ggml.tokens")
        print(f"vocabulary:    {len(tokens) if tokens is not None else '?'} tokens ({meta.get('tokenizer.ggml.model', '?')}, "
              f"pre-tokenizer {meta.get('tokenizer.ggml.pre', 'default')})")
        specials = [(k.removeprefix("tokenizer.ggml.").removesuffix("_token_id"), v) for k, v in meta.items()
                    if k.startswith("tokenizer.ggml.") and k.endswith("_token_id")]
        print("special ids:   " + (", ".join(f"{k}={v}" for k, v in specials) or "none"))
        print(f"chat template: {'present' if 'tokenizer.chat_template' in meta else 'absent (ChatML fallback)'}")
        by_type = defaultdict(lambda: [0, 0])
        for t in f.tensors:
            by_type[t.type][0] += 1
            by_type[t.type][1] += t.nbytes
        total = sum(b for _, b in by_type.values())
        print(f"tensors:       {len(f.tensors)}, {_fmt_bytes(total)}")
        for ty, (count, nbytes) in sorted(by_type.items(), key=lambda kv: -kv[1][1]):
            print(f"  {ty:<8} {count:>5} tensors  {_fmt_bytes(nbytes):>10}")
        if n_layers and n_embd and n_heads and ctx:
            head_dim = hp("attention.key_length", n_embd // n_heads)
            max_context = min(int(ctx), 4096)
            kv_fp16 = 2 * n_layers * max_context * n_kv * head_dim * 2
            print(f"predicted:     weights {_fmt_bytes(total)}, KV cache {_fmt_bytes(kv_fp16)} "
                  f"(fp16, max_context {max_context}) on a GPU")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orcd", description="Run GGUF language models on NVIDIA GPUs (or the CPU).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("pull", help="download a known model into the cache",
                       description="Download, assemble and verify a known model into the cache; print its path.")
    p.add_argument("name", nargs="?", default=models.DEFAULT_MODEL, help=f"model name (default {models.DEFAULT_MODEL})")
    p.set_defaults(func=cmd_pull)

    p = sub.add_parser("inspect", help="show a model's architecture, sizes, tensor types and tokens",
                       description="Show a model's architecture, sizes, tensor types with byte counts, special token "
                                   "ids, whether it has a chat template, and the memory it will need.")
    p.add_argument("model", nargs="?", default=None, help="a GGUF path or known model name (default: the default model)")
    p.set_defaults(func=cmd_inspect)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except OrcdError as e:
        print(f"orcd: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
