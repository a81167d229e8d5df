#!/usr/bin/env python3
"""The instructions of a kernel's hot loop, from its SASS.

For each kernel whose mangled name contains NAME, finds the smallest loop (a
backward branch and the code it jumps over) that holds at least MIN_OPS of the
instruction OP (default: 32 IDP, the integer dot products of the streamed
one-token products) and prints its length and its most frequent opcodes. A
count of instructions per weight, next to the issue rate, tells whether a
product is bound by its decoding before any device time is spent.

    bench/sass_loop.py OBJECT NAME [--op IDP] [--min-ops 32]

OBJECT: an object file or binary with sm_90 code (for example
build/CMakeFiles/orcd.dir/cuda/kernels/matvec_stream.cu.o). Needs cuobjdump
and nvdisasm on the PATH (the CUDA toolkit; also on PyPI as
nvidia-cuda-cuobjdump and nvidia-cuda-nvdisasm).
"""
import argparse
import collections
import re
import subprocess
import sys

INSTRUCTION = re.compile(r"\s*/\*([0-9a-f]+)\*/\s+(?:@!?U?P[0-9T]\s+)?([A-Z0-9_.]+)\s*(.*?);")


def functions(sass):
    """(name, [(address, opcode, operands)]) for every function in cuobjdump's output."""
    name, body = None, []
    for line in sass.splitlines():
        if "Function :" in line:
            if name:
                yield name, body
            name, body = line.split("Function :")[1].strip(), []
            continue
        m = INSTRUCTION.match(line)
        if m and name:
            body.append((int(m.group(1), 16), m.group(2), m.group(3)))
    if name:
        yield name, body


def hot_loop(body, op, min_ops):
    """The smallest backward-branch range holding at least min_ops of op, or None."""
    best = None
    for address, opcode, operands in body:
        if not opcode.startswith("BRA") or opcode.startswith("BRA.DIV"):
            continue
        target = re.search(r"0x([0-9a-f]+)", operands)
        if not target or int(target.group(1), 16) >= address:
            continue
        start = int(target.group(1), 16)
        ops = [o for a, o, _ in body if start <= a <= address]
        if sum(o.startswith(op) for o in ops) >= min_ops and (best is None or len(ops) < len(best[2])):
            best = (start, address, ops)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("object")
    parser.add_argument("name", help="part of the mangled kernel name")
    parser.add_argument("--op", default="IDP", help="the opcode that marks the hot loop (default IDP)")
    parser.add_argument("--min-ops", type=int, default=32, help="how many of --op the loop holds at least")
    args = parser.parse_args()
    try:
        sass = subprocess.run(["cuobjdump", "-sass", args.object], check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        sys.exit(f"sass_loop: cuobjdump failed ({e}); it and nvdisasm must be on the PATH")
    found = False
    for name, body in functions(sass):
        if args.name not in name:
            continue
        found = True
        loop = hot_loop(body, args.op, args.min_ops)
        if loop is None:
            print(f"{name}: no loop with {args.min_ops} x {args.op}")
            continue
        start, end, ops = loop
        counts = collections.Counter(o.split(".")[0] for o in ops)
        top = ", ".join(f"{o} {n}" for o, n in counts.most_common(10))
        print(f"{name}: loop {start:#x}-{end:#x}, {len(ops)} instructions, {counts[args.op]} {args.op}; {top}")
    if not found:
        sys.exit(f"sass_loop: no kernel name contains {args.name!r}")


if __name__ == "__main__":
    main()
