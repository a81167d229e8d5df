"""Per-op times of the CUDA decode program (one persistent kernel per token).

usage: python bench/trace_decode.py MODEL.gguf [CONTEXT]

Fills the context to CONTEXT tokens, decodes 16 more with the decode program
(ORCD_CUDA_DECODE=program), and closes the session: with ORCD_CUDA_TRACE=1
(both set here) the backend then prints, for the last step,
each op's wait at its grid barrier and its work time (first block's start to
the last block's end).
"""
import gc
import os
import sys

import numpy as np

os.environ["ORCD_CUDA_TRACE"] = "1"
os.environ["ORCD_CUDA_DECODE"] = "program"
import orcd  # noqa: E402  (reads the variable when the backend is created)


def main():
    path = sys.argv[1]
    context = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    model = orcd.Model(path, device="cuda")
    session = model.session(max_context=context + 32)
    ids = np.random.default_rng(0).integers(0, model.config.n_vocab, context).astype(np.int32)
    token = session.prefill_greedy(ids)
    for _ in range(16):
        token = session.decode_greedy(token)
    print(f"context {context}: last token {token}", flush=True)
    del session
    gc.collect()


if __name__ == "__main__":
    main()
