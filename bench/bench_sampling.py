"""Time of one sampling step (orcd.Sampler) on a 151,936-token vocabulary, per parameter set.

    PYTHONPATH=python python3 bench/bench_sampling.py [--model PATH] [--repeats 300]

With --model, the logits are real ones (the model's prediction after a short
prompt, CPU backend); without, a normal distribution of scale 3 (a similar
spread). Prints the median and 90th percentile in microseconds.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))

from orcd.config import SamplingParams  # noqa: E402
from orcd.sampling import Sampler  # noqa: E402

N_VOCAB = 151_936

CASES = {
    "greedy": dict(temperature=0),
    "defaults (top_k 40, top_p 0.95, min_p 0.05, T 0.8)": dict(),
    "defaults + repetition 1.1, presence, frequency": dict(repetition_penalty=1.1, presence_penalty=0.5,
                                                           frequency_penalty=0.5),
    "top_p 0.9 only (no top_k)": dict(top_k=0, min_p=0.0, top_p=0.9),
    "min_p 0.05 only": dict(top_k=0, top_p=1.0, min_p=0.05),
    "typical_p 0.9 only": dict(top_k=0, top_p=1.0, min_p=0.0, typical_p=0.9),
    "full distribution, T 1": dict(top_k=0, top_p=1.0, min_p=0.0, temperature=1.0),
}


def real_logits(path: str) -> np.ndarray:
    import orcd

    model = orcd.Model(path, device="cpu")
    return model.session(64).prefill([151644, 872, 198, 7985, 264, 6774, 911]).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    if args.model:
        logits = real_logits(args.model)
        source = f"real logits of {os.path.basename(args.model)}"
    else:
        logits = (np.random.default_rng(0).standard_normal(N_VOCAB) * 3).astype(np.float32)
        source = "synthetic logits (normal, scale 3)"
    history = list(np.random.default_rng(1).integers(0, N_VOCAB, 512))
    print(f"vocabulary {logits.size}, {source}, {args.repeats} repeats, history of {len(history)} tokens")
    print(f"{'parameters':<50} {'median us':>10} {'p90 us':>10}")
    for name, overrides in CASES.items():
        sampler = Sampler(SamplingParams(seed=0, **overrides), logits.size)
        for _ in range(10):
            sampler(logits, history)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            sampler(logits, history)
            times.append(time.perf_counter() - start)
        times.sort()
        print(f"{name:<50} {statistics.median(times) * 1e6:>10.0f} {times[int(0.9 * len(times))] * 1e6:>10.0f}")


if __name__ == "__main__":
    main()
