#!/usr/bin/env python3
"""The rounding error of the streamed decode products' fp16 dots (cuda/kernels/
dot_half.cuh), modelled in numpy, against exact float64 products: the form the
kernels use and two cheaper ones, one rejected for its error, one not yet tried
(bench/NOTES.md, round 29).

A Q4_0-shaped row: blocks of 32 quants with an offset, a lane's two runs of 16
(A: elements 0-15, B: 16-31, B's quants 16 times larger as the high nibbles),
each run as a half2 accumulator that sums 8 products per half with one rounding
per fused multiply-add; the input scaled below 2^15 and rounded to fp16, a quant
a subnormal half (n x 2^-24).
  signed   - the kernels' form: the offset subtracted exactly from each quant
  sums     - unsigned quants, the offset taken from the runs' input sums in fp32
  fp16-add - the signed form, a block's two runs added in fp16 (B scaled by 1/16)
usage: fp16_dot_error.py [--cols N] [--rows N] [--trials N] [--offset Q] [--seed S]"""
import argparse

import numpy as np

UNIT = 2.0**-24  # a subnormal half's step: the quants' unit


def fp16(a):
    return a.astype(np.float16).astype(np.float64)


def half2_run(w, x):
    """The two halves of a run's accumulator after 8 fused multiply-adds each."""
    lo = np.zeros(w.shape[:-1])
    hi = np.zeros(w.shape[:-1])
    for k in range(8):
        lo = fp16(lo + w[..., 2 * k] * x[..., 2 * k])
        hi = fp16(hi + w[..., 2 * k + 1] * x[..., 2 * k + 1])
    return lo, hi


def block_dots(q, x, offset, form):
    """Per block of 32: the dot of (q - offset) with x, in quant units."""
    qa, qb, xa, xb = q[..., :16], q[..., 16:], x[..., :16], x[..., 16:]
    if form == "sums":
        a = sum(half2_run(qa * UNIT, xa)) - offset * UNIT * xa.sum(-1)
        b = sum(half2_run(16 * qb * UNIT, xb)) - 16 * offset * UNIT * xb.sum(-1)
        return a + b / 16
    a_lo, a_hi = half2_run((qa - offset) * UNIT, xa)
    b_lo, b_hi = half2_run(16 * (qb - offset) * UNIT, xb)
    if form == "fp16-add":
        return fp16(b_lo / 16 + a_lo) + fp16(b_hi / 16 + a_hi)
    return (a_lo + a_hi) + (b_lo + b_hi) / 16


def relative_error(rng, cols, rows, offset, inputs, form):
    x = inputs(cols)
    e = np.floor(np.log2(np.abs(x).max())) + 1
    staged = fp16(x * 2.0 ** (15 - e))  # below 2^15, as stage_input_half
    q = np.clip(np.round(rng.normal(offset, offset / 2.7, (rows, cols))), 0, 2 * offset - 1)
    d = rng.uniform(0.5, 1.0, (rows, cols // 32))
    exact = ((q - offset) * np.repeat(d, 32, axis=1)) @ x
    dots = block_dots(q.reshape(rows, -1, 32), staged.reshape(-1, 32)[None], offset, form)
    out = (dots * d).sum(-1) * 2.0 ** (e - 15) / UNIT
    return np.linalg.norm(out - exact) / np.linalg.norm(exact)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cols", type=int, default=4096, help="row length, a multiple of 32 (default 4096)")
    ap.add_argument("--rows", type=int, default=64, help="rows per trial (default 64)")
    ap.add_argument("--trials", type=int, default=5, help="trials averaged, each with new quants and input (default 5)")
    ap.add_argument("--offset", type=int, default=8,
                    help="the quants' offset (quants 0..2 offset - 1): 8 is Q4_0 (default); 32 or 128 keep "
                    "Q4_0's layout with 6- or 8-bit quants")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    inputs = {
        "uniform(-1, 1)": lambda n: rng.uniform(-1, 1, n),
        "normal(0.3, 1)": lambda n: rng.normal(0.3, 1, n),
        "uniform(1e-3, 1e-2)": lambda n: rng.uniform(1e-3, 1e-2, n),
    }
    forms = ("signed", "sums", "fp16-add")
    print(f"relative error of {args.rows} rows x {args.cols} (mean of {args.trials}), Gaussian quants around {args.offset}")
    print(f"{'input':22s}" + "".join(f"{f:>12s}" for f in forms))
    for name, gen in inputs.items():
        errs = [np.mean([relative_error(rng, args.cols, args.rows, args.offset, gen, f) for _ in range(args.trials)])
                for f in forms]
        print(f"{name:22s}" + "".join(f"{err:12.2e}" for err in errs))


if __name__ == "__main__":
    main()
