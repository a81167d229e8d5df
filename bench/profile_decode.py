#!/usr/bin/env python3
"""Greedy decode steps to be profiled: prefill CONTEXT tokens (default 64), then
STEPS decode_greedy calls; the profiler range (cuProfilerStart/Stop, for
`ncu --profile-from-start off`) covers only those steps.
usage: profile_decode.py MODEL.gguf [STEPS] [CONTEXT]"""
import ctypes
import sys
import time

from decode_session import warm_greedy_session

path = sys.argv[1]
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 100
context = int(sys.argv[3]) if len(sys.argv) > 3 else 64
s, tok = warm_greedy_session(path, context, steps, warmup=4)
cuda = ctypes.CDLL("libcuda.so.1")
cuda.cuProfilerStart()
t0 = time.perf_counter()
for _ in range(steps):
    tok = s.decode_greedy(tok)
t1 = time.perf_counter()
cuda.cuProfilerStop()
print(f"{steps} steps after {context}: {(t1 - t0) / steps * 1e6:.1f} us/step (wall)")
