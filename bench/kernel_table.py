#!/usr/bin/env python3
"""Per-kernel table from `nsys stats -r cuda_gpu_kern_sum -f csv`: time per decode
step (total / STEPS) by kernel, largest first, and the sum.
usage: kernel_table.py CSV STEPS"""
import csv
import sys

rows = list(csv.DictReader(open(sys.argv[1])))
steps = int(sys.argv[2])
key = next(k for k in rows[0] if k.startswith("Total Time"))
total = 0.0
print("| kernel | launches/step | us/step | us/launch |")
print("| --- | ---: | ---: | ---: |")
for r in sorted(rows, key=lambda r: -float(r[key])):
    t = float(r[key]) / 1e3 / steps
    n = int(r["Instances"]) / steps
    total += t
    name = r["Name"][:70].replace("|", "/")
    print(f"| {name} | {n:.1f} | {t:.1f} | {t / n if n else 0:.2f} |")
print(f"| all kernels | | {total:.1f} | |")
