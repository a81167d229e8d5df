#!/usr/bin/env python3
"""Where a decode step's time goes, kernel by kernel, in real graph replays.

Records STEPS greedy decode steps after CONTEXT prompt tokens with CUPTI (through
torch.profiler, which sees every kernel of the process, graph nodes included) and
prints per kernel: launches per step, its own duration, and the time its end adds
after the previous kernel's end. With programmatic dependent launch the kernels
overlap, so the durations add up to more than the step; the added times add up to
the step (minus the gaps between steps) and are each kernel's share of the
critical path.
usage: timeline_decode.py MODEL.gguf [CONTEXT] [STEPS]"""
import collections
import json
import os
import sys
import tempfile

import torch  # noqa: F401  (CUDA context and CUPTI)
from decode_session import warm_greedy_session
from torch.profiler import ProfilerActivity, profile


def short_name(full: str) -> str:
    """void orcd::cuda::matvec1_kernel<(orcd::cuda::MatvecInput)1, 4, true>(...) -> matvec1_kernel<1, 4, true>"""
    name = full.replace("void ", "").replace("(anonymous namespace)::", "")
    base, _, rest = name.partition("<")
    base = base.split("(")[0].split("::")[-1]
    if not rest:
        return base
    args = rest.split(">(")[0]
    return base + "<" + ", ".join(a.split(")")[-1].strip() for a in args.split(",")) + ">"


def main() -> None:
    path = sys.argv[1]
    context = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    s, tok = warm_greedy_session(path, context, steps, warmup=8)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            tok = s.decode_greedy(tok)
    with tempfile.TemporaryDirectory() as tmp:
        trace = os.path.join(tmp, "trace.json")
        prof.export_chrome_trace(trace)
        with open(trace) as f:
            events = [e for e in json.load(f)["traceEvents"] if e.get("cat") == "kernel"]
    events.sort(key=lambda e: e["ts"])
    added, own, count = collections.defaultdict(float), collections.defaultdict(float), collections.Counter()
    step_starts, prev_end = [], None
    for e in events:
        name, end = short_name(e["name"]), e["ts"] + e["dur"]
        if prev_end is None or e["ts"] - prev_end > 20:  # a gap: the host between two steps
            step_starts.append(e["ts"])
        else:
            added[name] += end - prev_end
        own[name] += e["dur"]
        count[name] += 1
        prev_end = max(prev_end or end, end)
    n = len(step_starts)
    busy = sum(added.values()) / n
    print(f"context {context}: {len(events) / n:.0f} kernels per step, {busy:.1f} us per step from the first "
          f"kernel's end to the last's ({n} steps)")
    print(f"  {'kernel':48s} {'per step':>8s} {'adds us':>9s} {'each':>6s} {'own us':>7s}")
    for name in sorted(added, key=lambda k: -added[k]):
        print(f"  {name[:48]:48s} {count[name] / n:8.1f} {added[name] / n:9.1f} {added[name] / count[name]:6.2f} "
              f"{own[name] / count[name]:7.2f}")


if __name__ == "__main__":
    main()
