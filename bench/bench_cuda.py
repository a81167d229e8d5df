#!/usr/bin/env python3
"""Speed of a model through orcd.Model: load time, pp512, pp2048, TTFT(512),
tg128 and tg128 after 8192 tokens of context. Medians of repeated runs after a
warm-up; every number is host wall time around complete calls (each ends by
copying its result to the host, so the GPU work is included): prefill returns
the last logits, decode steps are greedy on the device (one id comes back).

usage: bench_cuda.py MODEL.gguf [--device cuda] [--reps N]"""
import argparse
import statistics
import time

import numpy as np

import orcd


def timed(fn, reps):
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()

    t0 = time.perf_counter()
    orcd.Model(args.model, device=args.device).close()
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    model = orcd.Model(args.model, device=args.device)
    load = time.perf_counter() - t0
    n_vocab = model.config.n_vocab
    rng = np.random.default_rng(0)
    prompt = rng.integers(0, n_vocab, 8192 + 256).astype(np.int32)
    rows = []

    for n in (512, 2048):
        s = model.session(max_context=4096)

        def run():
            s.reset()
            s.prefill(prompt[:n])

        t = timed(run, args.reps)
        rows.append((f"pp{n}", n / t, f"{t * 1e3:.2f} ms"))
        if n == 512:
            ttft = t

    def decode_run(session, start, count=128):
        def run():
            session.rewind(session.n_past - start)
            tok = int(prompt[start])
            for _ in range(count):
                tok = session.decode_greedy(tok)  # argmax on the device: one int comes back
        return run

    s = model.session(max_context=4096)
    s.prefill(prompt[:16])
    t = timed(decode_run(s, 16), args.reps)
    rows.append(("tg128", 128 / t, f"{t / 128 * 1e6:.1f} us/token"))

    s8 = model.session(max_context=8192 + 256)
    s8.prefill(prompt[:8192])
    t = timed(decode_run(s8, 8192), args.reps)
    rows.append(("tg128 @ 8192 ctx", 128 / t, f"{t / 128 * 1e6:.1f} us/token"))

    rep = model.memory_report()
    print(f"device: {rep['device']}   model: {args.model}")
    print(f"memory: weights {rep['weights'] / 2**20:.1f} MiB, KV cache {rep['kv_cache'] / 2**20:.1f} MiB, "
          f"scratch {rep['scratch'] / 2**20:.1f} MiB (3 sessions open)")
    print(f"load: {load * 1e3:.0f} ms warm ({cold * 1e3:.0f} ms first), TTFT(512): {ttft * 1e3:.2f} ms")
    print("| test | tokens/s | time |")
    print("| --- | ---: | ---: |")
    for name, tps, detail in rows:
        print(f"| {name} | {tps:,.0f} | {detail} |")


if __name__ == "__main__":
    main()
