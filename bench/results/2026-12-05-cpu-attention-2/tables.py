#!/usr/bin/env python3
"""Tables of this directory: the A/B sweep (base_{1,2}.json, new_{1,2}.json: same bench binary,
main's library and this branch's, alternating) and the SDPA comparison in CPU seconds
(sdpa_cpu.json, sdpa_cpu.py) and in wall time (peers-*/peers.json, bench/peers/peers.py).

usage: tables.py DIR    Writes DIR/summary.json and prints markdown.
"""
import json, os, sys

d = sys.argv[1]
runs = {s: [json.load(open(os.path.join(d, f"{s}_{i}.json"))) for i in (1, 2)] for s in ("base", "new")}
peak = [r["fma_peak"]["gflops_per_cpu_s"] for s in runs for r in runs[s]]
sdpa = {(p["T"], p["causal"]): p for p in json.load(open(os.path.join(d, "sdpa_cpu.json")))["points"]}
peers = {}
for side in ("new", "base"):
    f = os.path.join(d, f"peers-{side}", "peers.json")
    if os.path.exists(f):
        peers[side] = {(p["T"], p["causal"]): p for p in json.load(open(f))["attention"]}
rows = []
for idx, p0 in enumerate(runs["new"][0]["points"]):
    row = {"T": p0["T"], "B": p0["B"], "causal": p0["causal"]}
    for s in ("base", "new"):
        pts = [r["points"][idx] for r in runs[s]]
        for k in ("fwd", "bwd"):
            row[f"{s}_{k}_cpu_s"] = min(p[f"{k}_cpu_s"] for p in pts)
            row[f"{s}_{k}_gflops_per_cpu_s"] = max(p[f"{k}_gflops_per_cpu_s"] for p in pts)
            row[f"{s}_{k}_peak_fraction"] = max(p[f"{k}_fma_peak_fraction"] for p in pts)
    sp = sdpa[(row["T"], row["causal"])]
    for k in ("fwd", "bwd"):
        row[f"{k}_speedup_cpu"] = row[f"base_{k}_cpu_s"] / row[f"new_{k}_cpu_s"]
        for s in ("base", "new"):
            row[f"{s}_{k}_vs_sdpa_cpu"] = sp[f"{s}_{k}_ratio_cpu"]
            if s in peers:
                row[f"{s}_{k}_vs_sdpa_wall"] = peers[s][(row["T"], row["causal"])][f"{k}_ratio"]
        row[f"sdpa_{k}_gflops_per_cpu_s"] = sp[f"sdpa_{k}_gflops_per_cpu_s"]
    rows.append(row)
json.dump({"fma_peak_gflops_per_cpu_s": peak, "points": rows},
          open(os.path.join(d, "summary.json"), "w"), indent=1)
print(f"FMA peak per CPU second in the four A/B runs: {', '.join(f'{x:.0f}' for x in peak)} GFLOP\n")
w = lambda r, s, k: f"{r[f'{s}_{k}_vs_sdpa_wall']:.2f}" if f"{s}_{k}_vs_sdpa_wall" in r else "-"
for k in ("fwd", "bwd"):
    print(f"\n{k}:\n")
    print("| T | B | causal | GF/cpu-s base → new | of peak (new) | speedup (cpu s) | SDPA GF/cpu-s | vs SDPA, cpu s: base → new | vs SDPA, wall (peers): base / new |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['T']} | {r['B']} | {'yes' if r['causal'] else 'no'} | "
              f"{r[f'base_{k}_gflops_per_cpu_s']:.0f} → {r[f'new_{k}_gflops_per_cpu_s']:.0f} | "
              f"{100 * r[f'new_{k}_peak_fraction']:.0f}% | {r[f'{k}_speedup_cpu']:.2f} | "
              f"{r[f'sdpa_{k}_gflops_per_cpu_s']:.0f} | {r[f'base_{k}_vs_sdpa_cpu']:.2f} → "
              f"{r[f'new_{k}_vs_sdpa_cpu']:.2f} | {w(r, 'base', k)} / {w(r, 'new', k)} |")
