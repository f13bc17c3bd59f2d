#!/usr/bin/env python3
"""Tables of the A/B sweep (base library vs this branch's, same bench binary, alternating runs).

usage: tables.py DIR   (DIR holds base_1.json new_1.json base_2.json new_2.json sweep.txt)
Writes DIR/summary.json and prints markdown. Per point and side: best CPU seconds over the runs
(the steadier measure on the shared machine) and best wall seconds. Estimated ratio vs PyTorch's
SDPA: the speedup over base measured here (CPU seconds) times the longctx/SDPA ratio that the
peer harness measured for the base code in one run (../2026-12-05-cpu-peers/attention-avx512).
"""
import json, os, sys

d = sys.argv[1]
here = os.path.dirname(os.path.abspath(__file__))
peers = json.load(open(os.path.join(here, "..", "2026-12-05-cpu-peers", "attention-avx512", "peers.json")))
peer = {(p["T"], p["causal"]): p for p in peers["attention"]}
runs = {s: [json.load(open(os.path.join(d, f"{s}_{i}.json"))) for i in (1, 2)] for s in ("base", "new")}
peak = [r["fma_peak"]["gflops_per_cpu_s"] for s in runs for r in runs[s]]
rows = []
for idx, p0 in enumerate(runs["new"][0]["points"]):
    row = {"T": p0["T"], "B": p0["B"], "causal": p0["causal"]}
    for s in ("base", "new"):
        pts = [r["points"][idx] for r in runs[s]]
        for k in ("fwd", "bwd"):
            row[f"{s}_{k}_cpu_s"] = min(p[f"{k}_cpu_s"] for p in pts)
            row[f"{s}_{k}_wall_s"] = min(p[f"{k}_s"] for p in pts)
            row[f"{s}_{k}_gflops_per_cpu_s"] = max(p[f"{k}_gflops_per_cpu_s"] for p in pts)
            row[f"{s}_{k}_peak_fraction"] = max(p[f"{k}_fma_peak_fraction"] for p in pts)
    for k in ("fwd", "bwd"):
        row[f"{k}_speedup_cpu"] = row[f"base_{k}_cpu_s"] / row[f"new_{k}_cpu_s"]
        row[f"{k}_speedup_wall"] = row[f"base_{k}_wall_s"] / row[f"new_{k}_wall_s"]
        pr = peer[(row["T"], row["causal"])][f"{k}_ratio"]
        row[f"{k}_peers_ratio_base"] = pr
        row[f"{k}_est_ratio_vs_sdpa"] = pr * row[f"{k}_speedup_cpu"]
    rows.append(row)
loads = [l.strip() for l in open(os.path.join(d, "sweep.txt")) if l.startswith("==")]
meta = {"machine": runs["new"][0]["device"], "dtype": "f32", "threads": 2,
        "base": "main's attention (src/cpu/attention.cpp at 65c6991), main's build-cpu library",
        "new": "branch attnperf at e1043b0", "bench_binary": "this branch's bench_attention",
        "runs_and_load": loads, "omp_wait_policy": "passive"}
json.dump({"meta": meta, "fma_peak_gflops_per_cpu_s": peak, "points": rows}, open(os.path.join(d, "summary.json"), "w"), indent=1)
print(f"FMA peak per CPU second in the four runs: {', '.join(f'{x:.0f}' for x in peak)} GFLOP\n")
print("| T | B | causal | fwd GF/cpu-s base → new | fwd of peak (new) | fwd speedup cpu (wall) | est. fwd vs SDPA | bwd GF/cpu-s base → new | bwd of peak (new) | bwd speedup cpu (wall) | est. bwd vs SDPA |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    f = lambda k: f"{r[f'base_{k}_gflops_per_cpu_s']:.0f} → {r[f'new_{k}_gflops_per_cpu_s']:.0f} | {100*r[f'new_{k}_peak_fraction']:.0f}% | {r[f'{k}_speedup_cpu']:.2f} ({r[f'{k}_speedup_wall']:.2f}) | {r[f'{k}_peers_ratio_base']:.2f} × {r[f'{k}_speedup_cpu']:.2f} = {r[f'{k}_est_ratio_vs_sdpa']:.2f}"
    print(f"| {r['T']} | {r['B']} | {'yes' if r['causal'] else 'no'} | {f('fwd')} | {f('bwd')} |")
