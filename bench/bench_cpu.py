"""CPU prefill and decode speed of orcd on a model, beside llama.cpp (through
llama-cpp-python, when installed) in the same run on the same machine.

    python bench/bench_cpu.py [MODEL] [--prompt 128] [--gen 64] [--threads N] [--reps 3]

Prints one table: engine, test, tokens/s (median of the repetitions).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import orcd


def bench_orcd(path, n_prompt, n_gen, threads, reps):
    model = orcd.Model(path, device="cpu", n_threads=threads)
    rng = np.random.default_rng(0)
    prompt = rng.integers(100, 10000, n_prompt).tolist()
    session = model.session(max_context=n_prompt + n_gen + 8)
    session.prefill(prompt[:8])  # warm-up: page in the weights, start the threads
    prefill, decode = [], []
    for _ in range(reps):
        session.reset()
        t = time.perf_counter()
        logits = session.prefill(prompt)
        prefill.append(n_prompt / (time.perf_counter() - t))
        t = time.perf_counter()
        for _ in range(n_gen):
            logits = session.decode(int(logits.argmax()))
        decode.append(n_gen / (time.perf_counter() - t))
    return statistics.median(prefill), statistics.median(decode)


def bench_llama_cpp(path, n_prompt, n_gen, threads, reps):
    try:
        import llama_cpp
    except ImportError:
        return None
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=n_prompt + n_gen + 8, n_threads=threads, n_threads_batch=threads,
                          n_batch=512, verbose=False, logits_all=False)
    rng = np.random.default_rng(0)
    prompt = rng.integers(100, 10000, n_prompt).tolist()
    llm.eval(prompt[:8])
    prefill, decode = [], []
    for _ in range(reps):
        llm.reset()
        t = time.perf_counter()
        llm.eval(prompt)
        prefill.append(n_prompt / (time.perf_counter() - t))
        t = time.perf_counter()
        for _ in range(n_gen):
            token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            llm.eval([token])
        decode.append(n_gen / (time.perf_counter() - t))
    return statistics.median(prefill), statistics.median(decode)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", default=None, help="GGUF path or known name (default: the default model)")
    ap.add_argument("--prompt", type=int, default=128, help="prompt tokens (default 128)")
    ap.add_argument("--gen", type=int, default=64, help="generated tokens (default 64)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads for both engines")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    path = orcd.models.resolve(args.model)
    rows = [("orcd", bench_orcd(path, args.prompt, args.gen, args.threads, args.reps))]
    peer = bench_llama_cpp(path, args.prompt, args.gen, args.threads, args.reps)
    rows.append(("llama.cpp", peer))
    print(f"model {os.path.basename(path)}, {args.threads} threads, median of {args.reps}")
    print(f"| engine    | pp{args.prompt} tok/s | tg{args.gen} tok/s |")
    print("|-----------|------------|-----------|")
    for name, result in rows:
        if result is None:
            print(f"| {name:<9} | not installed | |")
        else:
            print(f"| {name:<9} | {result[0]:10.1f} | {result[1]:9.2f} |")
    if peer:
        ours = rows[0][1]
        print(f"orcd / llama.cpp: prefill {ours[0] / peer[0]:.2f}x, decode {ours[1] / peer[1]:.2f}x")


if __name__ == "__main__":
    main()
