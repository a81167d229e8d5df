"""The `orcd` command line. Each subcommand is a function taking parsed args."""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from collections import defaultdict

from . import models
from .config import SamplingParams
from .errors import InvalidArgumentError, OrcdError


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


# ---------------------------------------------------------------------------- generation commands

# Command-line flags for SamplingParams fields, named after them (--max-tokens for max_tokens).
_SAMPLING_FLAGS = {
    "max_tokens": (int, "most tokens to generate"),
    "temperature": (float, "0 = greedy"),
    "top_k": (int, "keep the k most probable tokens (0 = off)"),
    "top_p": (float, "keep the most probable tokens up to this probability (1 = off)"),
    "min_p": (float, "drop tokens less than min_p times as probable as the best (0 = off)"),
    "typical_p": (float, "locally typical sampling (1 = off)"),
    "repetition_penalty": (float, "llama.cpp's repetition penalty (1 = off)"),
    "repeat_last_n": (int, "how many recent tokens the penalties look at (-1 = all)"),
    "presence_penalty": (float, "subtracted once from each recent token's logit"),
    "frequency_penalty": (float, "subtracted from a recent token's logit per occurrence"),
    "seed": (int, "random seed (same seed, same output)"),
}


def _add_sampling_flags(p: argparse.ArgumentParser) -> None:
    defaults = SamplingParams()
    g = p.add_argument_group("sampling")
    for name, (kind, text) in _SAMPLING_FLAGS.items():
        g.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=None,
                       help=f"{text} (default {getattr(defaults, name)})")
    g.add_argument("--stop", action="append", default=None, metavar="TEXT",
                   help="stop when the output contains TEXT (not printed; repeatable)")
    g.add_argument("--stop-token-ids", type=int, nargs="+", default=None, metavar="ID",
                   help="stop at any of these token ids")
    g.add_argument("--ignore-eos", action="store_true", default=None,
                   help="keep generating past the model's end-of-sequence tokens")
    g.add_argument("--logit-bias", action="append", default=None, metavar="ID=BIAS",
                   help="add BIAS to token ID's logit (repeatable; -inf bans it)")


def _sampling_overrides(args) -> dict:
    overrides = {name: getattr(args, name) for name in _SAMPLING_FLAGS if getattr(args, name) is not None}
    for name in ("stop", "stop_token_ids", "ignore_eos"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.logit_bias:
        bias = {}
        for item in args.logit_bias:
            token, sep, value = item.partition("=")
            try:
                bias[int(token)] = float(value)
            except ValueError:
                raise InvalidArgumentError(f"--logit-bias {item!r}: expected ID=BIAS, e.g. 1234=-inf") from None
        overrides["logit_bias"] = bias
    return overrides


def _add_model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model", default=None, help="a GGUF path or known model name (default: the default model)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default $ORCD_DEVICE, else auto)")
    p.add_argument("-t", "--threads", dest="n_threads", type=int, default=None,
                   help="CPU threads (default $ORCD_NUM_THREADS, else all cores)")
    p.add_argument("-c", "--max-context", type=int, default=None, help="context length of the session (default 4096)")


def _open_llm(args):
    from .llm import LLM

    options = {k: v for k, v in (("n_threads", args.n_threads), ("max_context", args.max_context)) if v is not None}
    return LLM(args.model, device=args.device, show_progress=sys.stderr.isatty(), **options)


def _print_stream(stream) -> None:
    for delta in stream:
        sys.stdout.write(delta)
        sys.stdout.flush()


def _report(completion, verbose: bool) -> None:
    if verbose and completion is not None:
        u, t = completion.usage, completion.timings
        print(f"[{u.prompt_tokens} prompt tokens in {t.prefill_s:.2f} s, {u.completion_tokens} generated at "
              f"{t.tokens_per_s:.1f} tokens/s, finish: {completion.finish_reason}]", file=sys.stderr)


def cmd_run(args) -> int:
    prompt = args.prompt
    if prompt is None:
        if sys.stdin.isatty():
            print("orcd: reading the prompt from stdin (end with Ctrl-D)", file=sys.stderr)
        prompt = sys.stdin.read()
    if not prompt.strip():
        raise InvalidArgumentError("the prompt is empty")
    sampling = _sampling_overrides(args)
    SamplingParams(**sampling)  # a bad value is reported before the model loads
    llm = _open_llm(args)
    if args.raw or not llm.model_config.has_chat_template:
        stream = llm.stream(prompt, **sampling)
    else:
        messages = ([{"role": "system", "content": args.system}] if args.system else [])
        stream = llm.chat_stream(messages + [{"role": "user", "content": prompt}], **sampling)
    with stream:
        _print_stream(stream)
    print(flush=True)
    _report(stream.completion, args.verbose)
    return 0


def cmd_chat(args) -> int:
    sampling = _sampling_overrides(args)
    SamplingParams(**sampling)
    llm = _open_llm(args)
    system = [{"role": "system", "content": args.system}] if args.system else []
    messages = list(system)
    echo = not sys.stdin.isatty()  # show piped input, so a transcript reads as a conversation
    print(f"orcd chat with {llm.path.name} on {llm.device}; /reset clears the history, /exit leaves",
          file=sys.stderr)
    while True:
        try:
            line = input(">>> ")
        except EOFError:
            print()
            return 0
        if echo:
            print(line)
        command = line.strip()
        if command in ("/exit", "/quit", "/bye"):
            return 0
        if command == "/reset":
            messages = list(system)
            print("(history cleared)")
            continue
        if not command:
            continue
        messages.append({"role": "user", "content": line})
        try:
            stream = llm.chat_stream(messages, **sampling)
        except InvalidArgumentError as e:  # e.g. the history outgrew the context: keep the chat alive
            messages.pop()
            print(f"orcd: {e} (/reset clears the history)", file=sys.stderr)
            continue
        try:
            with stream:
                _print_stream(stream)
        except KeyboardInterrupt:
            print(" [interrupted]")
        print(flush=True)
        reply = stream.completion.text if stream.completion else ""
        messages.append({"role": "assistant", "content": reply})
        _report(stream.completion, args.verbose)


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 0, got {text!r}")
    return values


def _time_prefill(session, ids, depth_ids):
    """Seconds to prefill ids after depth_ids, and to pick the first token (time to first token)."""
    session.reset()
    if len(depth_ids):
        session.prefill(depth_ids)
    start = time.perf_counter()
    logits = session.prefill(ids)
    int(logits.argmax())
    return time.perf_counter() - start


def _time_decode(session, n, depth_ids, first_id):
    """Seconds for n greedy decode steps after a context of depth_ids (at least one token)."""
    session.reset()
    logits = session.prefill(depth_ids if len(depth_ids) else [first_id])
    token = int(logits.argmax())
    decode_greedy = getattr(session, "decode_greedy", None)
    start = time.perf_counter()
    for _ in range(n):
        token = int(decode_greedy(token)) if decode_greedy else int(session.decode(token).argmax())
    return time.perf_counter() - start


def cmd_bench(args) -> int:
    import numpy as np

    from . import build_info
    from .model import Model

    path = models.resolve(args.model)
    from .config import RuntimeConfig

    runtime = RuntimeConfig(**{k: v for k, v in (("device", args.device), ("n_threads", args.n_threads))
                               if v is not None})
    start = time.perf_counter()
    model = Model(path, device=runtime.device, n_threads=runtime.n_threads)
    load_s = time.perf_counter() - start
    config = model.config
    weights = model.memory_report()["weights"]
    needed = max(args.depth) + max(max(args.n_prompt), max(args.n_gen)) + 1
    context = max(256, -(-needed // 256) * 256)
    session = model.session(context, allow_beyond_model_context=context > config.context_length)
    rng = np.random.default_rng(args.seed)
    random_ids = lambda n: rng.integers(0, config.n_vocab, n).astype(np.int32)  # noqa: E731

    info = build_info()
    devices = {d.get("name") for d in (_cuda_devices() if model.device.startswith("cuda") else [])}
    device_name = ", ".join(sorted(devices)) if devices else _cpu_name()
    backend = "CUDA" if model.device.startswith("cuda") else "CPU"
    _time_prefill(session, random_ids(16), [])  # warm-up: caches, clocks, lazy initialisation
    _time_decode(session, 2, [], 1)

    results = []
    for depth in args.depth:
        tests = [("pp", p) for p in args.n_prompt if p] + [("tg", n) for n in args.n_gen if n]
        for kind, n in tests:
            samples = []
            for _ in range(args.repetitions):
                depth_ids = random_ids(depth)
                if kind == "pp":
                    samples.append(_time_prefill(session, random_ids(n), depth_ids))
                else:
                    samples.append(_time_decode(session, n, depth_ids, int(random_ids(1)[0])))
            median = statistics.median(samples)
            rates = [n / s for s in samples]
            row = {
                "test": f"{kind}{n}" + (f" @ d{depth}" if depth else ""), "kind": kind, "n_tokens": n, "depth": depth,
                "repetitions": args.repetitions, "median_s": median, "tokens_per_s": n / median,
                "tokens_per_s_stdev": statistics.stdev(rates) if len(rates) > 1 else 0.0,
            }
            if kind == "pp":
                row["ttft_ms"] = median * 1e3
            else:
                row["ms_per_token"] = median / n * 1e3
                row["weight_gb_per_s"] = weights * n / median / 1e9  # each step reads every weight once
            results.append(row)
            if not args.json:
                _print_bench_row(row, path.name, weights, backend, device_name, header=len(results) == 1)
    summary = {
        "model": path.name, "model_bytes": weights, "architecture": config.architecture, "backend": backend,
        "device": device_name, "n_threads": runtime.n_threads, "load_s": load_s, "build": info, "results": results,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"\nmodel load {load_s:.2f} s; build {info.get('version')} ({info.get('build_type', '?')}, "
              f"CUDA {'on' if info.get('cuda') else 'off'})")
    return 0


def _print_bench_row(row, model_name, weights, backend, device_name, header: bool) -> None:
    if header:
        print(f"| {'model':<40} | {'size':>9} | {'backend':<7} | {'device':<24} | {'test':<16} | "
              f"{'t/s':>18} | {'TTFT / tok ms':>13} |")
        print(f"| {'-' * 40} | {'-' * 9}:| {'-' * 7} | {'-' * 24} | {'-' * 16} | {'-' * 18}:| {'-' * 13}:|")
    rate = f"{row['tokens_per_s']:.2f} ± {row['tokens_per_s_stdev']:.2f}"
    ms = row.get("ttft_ms", row.get("ms_per_token"))
    print(f"| {model_name[:40]:<40} | {_fmt_bytes(weights):>9} | {backend:<7} | {device_name[:24]:<24} | "
          f"{row['test']:<16} | {rate:>18} | {ms:>13.2f} |", flush=True)


def _cuda_devices() -> list:
    from . import cuda_devices

    return cuda_devices()


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "CPU"


# ---------------------------------------------------------------------------- the parser


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line, no usage block: the user asked for --help if they want it.
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="orcd", description="Run GGUF language models on NVIDIA GPUs (or the CPU).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("run", help="generate an answer to one prompt, streamed to stdout",
                       description="Generate an answer to PROMPT (read from stdin when absent) and stream it to "
                                   "stdout. The prompt goes through the model's chat template unless --raw.")
    p.add_argument("prompt", nargs="?", default=None, help="the prompt (default: read stdin)")
    _add_model_flags(p)
    p.add_argument("--system", default=None, help="a system message to put before the prompt")
    p.add_argument("--raw", action="store_true", help="complete the prompt text as is, without the chat template")
    p.add_argument("-v", "--verbose", action="store_true", help="print token counts and speed to stderr")
    _add_sampling_flags(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("chat", help="an interactive chat with history",
                       description="Chat with the model: each line is a message, replies are streamed. "
                                   "/reset clears the history, /exit (or Ctrl-D) leaves.")
    _add_model_flags(p)
    p.add_argument("--system", default=None, help="a system message that starts the conversation")
    p.add_argument("-v", "--verbose", action="store_true", help="print token counts and speed after each reply")
    _add_sampling_flags(p)
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("bench", help="prefill and decode speed (tokens/s), like llama-bench",
                       description="Measure prefill (ppN: N prompt tokens) and decode (tgN: N generated tokens) "
                                   "speed after a context of --depth tokens, on random token ids. Medians over "
                                   "--repetitions after a warm-up; TTFT is the median prefill time.")
    p.add_argument("-m", "--model", default=None, help="a GGUF path or known model name (default: the default model)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default $ORCD_DEVICE, else auto)")
    p.add_argument("-t", "--threads", dest="n_threads", type=int, default=None, help="CPU threads (default all cores)")
    p.add_argument("-p", "--n-prompt", type=_int_list, default=[512], help="prompt lengths, e.g. 512,2048 (default 512)")
    p.add_argument("-n", "--n-gen", type=_int_list, default=[128], help="generation lengths (default 128)")
    p.add_argument("-d", "--depth", type=_int_list, default=[0], help="context already filled, e.g. 0,8192 (default 0)")
    p.add_argument("-r", "--repetitions", type=int, default=3, help="runs per test (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random prompt tokens")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=cmd_bench)

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
    if getattr(args, "repetitions", 1) < 1:
        parser.error("--repetitions must be at least 1")
    try:
        return args.func(args)
    except OrcdError as e:
        print(f"orcd: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `orcd run ... | head`: the reader left; not an error of ours
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
