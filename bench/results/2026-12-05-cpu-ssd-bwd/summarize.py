"""Before/after table of `longctx bench scaling --profile` runs (README.md here says how they ran).

usage: python3 summarize.py DIR  -- reads DIR/prof-{before,after}-{1,2}.json, prints markdown.
Every figure is process CPU time (all threads) in ms: the mean of the rounds, and the
rounds' spread in brackets; ratio = before / after (above 1: faster after).
"""
import json
import os
import sys

d = sys.argv[1]
runs = {v: [json.load(open(os.path.join(d, f"prof-{v}-{r}.json"))) for r in (1, 2)
            if os.path.exists(os.path.join(d, f"prof-{v}-{r}.json"))] for v in ("before", "after")}


def points(run):
    for preset in run["presets"]:
        for pt in preset["points"]:
            yield preset["preset"], pt["T"], pt


def collect(version):
    table = {}
    for run in runs[version]:
        for preset, T, pt in points(run):
            prof = pt["train_step_profile"]
            row = table.setdefault((preset, T), {})
            row.setdefault("timed step", []).append(pt["train_step_cpu_s"])
            row.setdefault("profiled step", []).append(prof["step_cpu_s"])
            for op in ("ssd_bwd", "ssd_fwd", "linear_bwd"):
                if op in prof["ops"]:
                    row.setdefault(op, []).append(prof["ops"][op]["cpu_seconds"])
    return table


before, after = collect("before"), collect("after")
cols = ["timed step", "profiled step", "ssd_bwd", "ssd_fwd", "linear_bwd"]
print("| preset | T | " + " | ".join(cols) + " |")
print("|---|---|" + "---|" * len(cols))


def fmt(xs):
    m = 1e3 * sum(xs) / len(xs)
    return f"{m:.0f} ({1e3 * min(xs):.0f}-{1e3 * max(xs):.0f})" if len(xs) > 1 else f"{m:.0f}"


for key in sorted(before, key=lambda k: (k[0], k[1])):
    cells = []
    for c in cols:
        b, a = before[key].get(c), after.get(key, {}).get(c)
        if not b or not a:
            cells.append("")
            continue
        ratio = sum(b) / sum(a) * len(a) / len(b)
        cells.append(f"{fmt(b)} → {fmt(a)} = **{ratio:.2f}×**")
    print(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
