"""Before/after table of `longctx bench scaling --profile` runs (README.md here says how they ran).

usage: python3 summarize.py DIR  -- reads DIR/prof-{before,after}-{1,2,...}.json, prints markdown.
Every figure is process CPU time (all threads) in ms: the mean of the rounds, and the rounds'
range in brackets; ratio = before / after (above 1: faster after).
"""
import glob
import json
import os
import sys

d = sys.argv[1]
OPS = ("linear_fwd", "linear_bwd", "rope_fwd", "rope_bwd", "attention_fwd", "attention_bwd")
COLS = ("timed step", "profiled step", "prefill") + OPS


def collect(version):
    table = {}
    for path in sorted(glob.glob(os.path.join(d, f"prof-{version}-*.json"))):
        for preset in json.load(open(path))["presets"]:
            for pt in preset["points"]:
                prof = pt["train_step_profile"]
                row = table.setdefault((preset["preset"], pt["T"]), {})
                row.setdefault("timed step", []).append(pt["train_step_cpu_s"])
                row.setdefault("profiled step", []).append(prof["step_cpu_s"])
                row.setdefault("prefill", []).append(pt["prefill_cpu_s"])
                for op in OPS:
                    if op in prof["ops"]:
                        row.setdefault(op, []).append(prof["ops"][op]["cpu_seconds"])
    return table


def fmt(xs):
    m = 1e3 * sum(xs) / len(xs)
    return f"{m:.0f} ({1e3 * min(xs):.0f}-{1e3 * max(xs):.0f})" if len(xs) > 1 else f"{m:.0f}"


before, after = collect("before"), collect("after")
print("| preset | T | " + " | ".join(COLS) + " |")
print("|---|---|" + "---|" * len(COLS))
for key in sorted(before):
    cells = []
    for c in COLS:
        b, a = before[key].get(c), after.get(key, {}).get(c)
        if not b or not a:
            cells.append("")
            continue
        cells.append(f"{fmt(b)} → {fmt(a)} ({sum(b) / len(b) / (sum(a) / len(a)):.2f}×)")
    print(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
