#!/usr/bin/env python3
"""Where do CUDA logits leave the CPU's? Runs one 256-token prompt through the CPU
(the oracle) and through three CUDA paths, and prints per-path cosines at the
worst positions:
  gemm   - one prefill step: tensor-core GEMM (fp16 operands) + prefill attention
  matvec - prefill in steps of 8 tokens: fp32 matvec + prefill attention
  decode - one token at a time: fp32 matvec + decode attention (the graph)
usage: diag_positions.py MODEL.gguf"""
import sys

import numpy as np

import orcd


def cos_rows(a, b):
    return np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def main():
    path = sys.argv[1]
    cpu, gpu = orcd.Model(path, device="cpu"), orcd.Model(path, device="cuda")
    n = 256
    ids = np.random.default_rng(3).integers(0, cpu.config.n_vocab, n).astype(np.int32)
    ref = cpu.session(max_context=512).prefill(ids, all_logits=True)
    paths = {"gemm": gpu.session(max_context=512).prefill(ids, all_logits=True)}
    s = gpu.session(max_context=512)
    paths["matvec"] = np.concatenate([s.prefill(ids[i:i + 8], all_logits=True) for i in range(0, n, 8)])
    s = gpu.session(max_context=512)
    paths["decode"] = np.stack([s.prefill(ids[:1])] + [s.decode(int(t)) for t in ids[1:]])
    cos = {k: cos_rows(v, ref) for k, v in paths.items()}
    worst = np.argsort(cos["gemm"])[:6]
    print("position | " + " | ".join(cos) + " | ref std | ref top2 gap")
    for i in worst:
        top2 = np.sort(ref[i])[-2:]
        print(f"{i} | " + " | ".join(f"{c[i]:.6f}" for c in cos.values()) + f" | {ref[i].std():.3g} | {top2[1] - top2[0]:.3g}")
    for k, c in cos.items():
        print(f"{k}: min cosine {c.min():.6f} at {int(c.argmin())}, argmax agreement {np.mean(paths[k].argmax(1) == ref.argmax(1)):.4f}")
    # The same with the CPU run in two halves (prefill 128 + prefill 128): a check that
    # the CPU itself is step-invariant at the bad positions.
    s = cpu.session(max_context=512)
    halves = np.concatenate([s.prefill(ids[:128], all_logits=True), s.prefill(ids[128:], all_logits=True)])
    c = cos_rows(halves, ref)
    print(f"cpu in two steps vs cpu in one: min cosine {c.min():.6f} at {int(c.argmin())}")


if __name__ == "__main__":
    main()
