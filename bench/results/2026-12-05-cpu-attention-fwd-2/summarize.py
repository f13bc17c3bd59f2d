"""Tables of the A/B/C runs: forward GFLOP per CPU second per point, best and median over the
rounds per library, % of the FMA peak measured in the same run, and ratios to main.
Usage: python3 summarize.py [--bwd] DIR [DIR...] (files VARIANT-rROUND.json); --bwd: the
backward's figures instead."""
import glob
import json
import os
import statistics
import sys

args = sys.argv[1:]
side = "bwd" if "--bwd" in args else "fwd"
for d in [a for a in args if a != "--bwd"]:
    runs = {}  # variant -> list of (points, peak)
    for f in sorted(glob.glob(os.path.join(d, "*-r*.json"))):
        v = os.path.basename(f).split("-r")[0]
        j = json.load(open(f))
        runs.setdefault(v, []).append((j["points"], j["fma_peak"]["gflops_per_cpu_s"]))
    variants = [v for v in ("main", "step1", "lazy") if v in runs]
    print(f"## {d} ({side}): rounds {', '.join(f'{v} {len(runs[v])}' for v in variants)}")
    print("| T | causal | " + " | ".join(f"{v} best (median) GF/cpu-s, % of peak" for v in variants)
          + " | " + " | ".join(f"{v}/main best, median" for v in variants[1:]) + " |")
    print("|" + "---|" * (2 + 2 * len(variants) - 1))
    keys = [(p["T"], p["causal"]) for p in runs["main"][0][0]]
    for key in keys:
        cells, stats = [], {}
        for v in variants:
            g = [next(p for p in pts if (p["T"], p["causal"]) == key)[f"{side}_gflops_per_cpu_s"]
                 for pts, _ in runs[v]]
            frac = [next(p for p in pts if (p["T"], p["causal"]) == key)[f"{side}_fma_peak_fraction"]
                    for pts, _ in runs[v]]
            stats[v] = (max(g), statistics.median(g))
            cells.append(f"{max(g):.1f} ({statistics.median(g):.1f}), {100 * max(frac):.1f}%")
        ratios = [f"{stats[v][0] / stats['main'][0]:.3f}, {stats[v][1] / stats['main'][1]:.3f}"
                  for v in variants[1:]]
        print(f"| {key[0]} | {'yes' if key[1] else 'no'} | " + " | ".join(cells) + " | "
              + " | ".join(ratios) + " |")
    print()
