#!/usr/bin/env python3
"""Greedy decode steps to be traced (nsys, CUDA graph nodes traced): prefill 64
tokens, then STEPS decode_greedy calls at positions 64.. (or after CONTEXT).
usage: profile_decode.py MODEL.gguf [STEPS] [CONTEXT]"""
import sys
import time

import numpy as np

import orcd

path = sys.argv[1]
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 100
context = int(sys.argv[3]) if len(sys.argv) > 3 else 64
m = orcd.Model(path, device="cuda")
s = m.session(max_context=context + steps + 16)
tok = s.prefill_greedy(np.random.default_rng(0).integers(0, m.config.n_vocab, context).astype(np.int32))
for _ in range(4):
    tok = s.decode_greedy(tok)
t0 = time.perf_counter()
for _ in range(steps):
    tok = s.decode_greedy(tok)
print(f"{steps} steps after {context}: {(time.perf_counter() - t0) / steps * 1e6:.1f} us/step (wall)")
