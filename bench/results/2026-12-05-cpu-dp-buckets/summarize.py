#!/usr/bin/env python3
"""Per --bucket-mb: median seconds per step and median grad_sum_s (the wait for the gradient sums
after the backward) over steps 3.. of every round's log.jsonl (runs/r<round>_mb<mb>), as JSON."""
import json, pathlib, statistics, sys

runs = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "runs")
table = {}
for log in sorted(runs.glob("r*_mb*/log.jsonl")):
    mb = log.parent.name.split("_mb")[1]
    steps = [json.loads(l) for l in log.read_text().splitlines() if '"tokens_per_s"' in l]
    elapsed = [s["elapsed_s"] for s in steps]
    per_step = [b - a for a, b in zip(elapsed[1:], elapsed[2:])]  # steps 3..
    entry = table.setdefault(mb, {"step_s": [], "grad_sum_s": [], "losses": []})
    entry["step_s"] += per_step
    entry["grad_sum_s"] += [s["grad_sum_s"] for s in steps[2:]]
    entry["losses"].append([s["loss"] for s in steps])
out = {}
for mb, e in sorted(table.items(), key=lambda kv: float(kv[0])):
    out[mb] = {"steps": len(e["step_s"]),
               "median_step_s": statistics.median(e["step_s"]),
               "median_grad_sum_s": statistics.median(e["grad_sum_s"]),
               "same_losses_every_round": all(l == e["losses"][0] for l in e["losses"])}
ref = table.get("0", {}).get("losses", [None])[0]
for mb in out:
    out[mb]["losses_equal_one_sum"] = table[mb]["losses"][0] == ref
print(json.dumps(out, indent=2))
