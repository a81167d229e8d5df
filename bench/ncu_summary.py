#!/usr/bin/env python3
"""Summarises an ncu --csv run (metrics gpu__time_duration.sum, dram__bytes_read.sum,
dram__bytes_write.sum) per kernel and grid: launches, mean time, DRAM bytes and GB/s."""
import csv
import re
import sys
from collections import defaultdict


def main(path):
    rows = list(csv.DictReader(line for line in open(path) if line.startswith('"')))
    launches = defaultdict(dict)
    for r in rows:
        launches[(r["ID"], r["Kernel Name"], r["Grid Size"])][r["Metric Name"]] = (r["Metric Unit"], float(r["Metric Value"].replace(",", "")))
    unit_scale = {"ns": 1e-9, "us": 1e-6, "usecond": 1e-6, "nsecond": 1e-9, "msecond": 1e-3, "ms": 1e-3,
                  "byte": 1, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9, "KB": 1e3, "MB": 1e6, "GB": 1e9}
    groups = defaultdict(lambda: [0, 0.0, 0.0])
    for (_, name, grid), m in launches.items():
        short = re.sub(r"\(.*", "", name)
        short = re.sub(r"orcd::cuda::(\(anonymous namespace\)::)?", "", short)
        t = m["gpu__time_duration.sum"][1] * unit_scale.get(m["gpu__time_duration.sum"][0], 1)
        b = sum(m[k][1] * unit_scale.get(m[k][0], 1) for k in ("dram__bytes_read.sum", "dram__bytes_write.sum") if k in m)
        g = groups[(short[:70], grid)]
        g[0] += 1; g[1] += t; g[2] += b
    total = sum(g[1] for g in groups.values())
    print(f"{'kernel':70s} {'grid':>16s} {'n':>4s} {'us':>8s} {'MB':>8s} {'GB/s':>7s}")
    for (name, grid), (n, t, b) in sorted(groups.items(), key=lambda kv: -kv[1][1]):
        print(f"{name:70s} {grid:>16s} {n:4d} {t / n * 1e6:8.2f} {b / n / 1e6:8.3f} {b / t / 1e9:7.0f}")
    print(f"sum of kernel times: {total * 1e6:.0f} us over {sum(g[0] for g in groups.values())} launches")


if __name__ == "__main__":
    main(sys.argv[1])
