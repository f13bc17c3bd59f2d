#!/usr/bin/env python3
"""Summarises run.sh's runs: summary.json and summary.md, and the per-step logs as raw/*.jsonl.gz.

Per mode, the median over the rounds of a run's CPU seconds per step (user + sys of the
one-thread process over its steps; run.sh says why CPU time), and beside it the median wall time
of every logged step (the first two of each run dropped: allocation and warm-up). From the CPU
time: tokens/s (every token a step computes), labelled targets/s (targets that count in the
loss) and, for the padded shape, the real tokens it holds. Usage: summarize.py RUNS_DIR
MACHINE_JSON
"""
import glob
import gzip
import json
import os
import shutil
import statistics
import sys

T, B = 256, 16
runs, machine_path = sys.argv[1], sys.argv[2]
here = os.path.dirname(os.path.abspath(__file__))


def steps(path):
    lines = [json.loads(l) for l in open(path)]
    return [l for l in lines if "tokens_per_s" in l][2:]


modes = {}
for mode in ("pack", "nopack", "padded"):
    logs = sorted(glob.glob(f"{runs}/{mode}-*/log.jsonl"))
    rows = {json.load(open(os.path.dirname(p) + "/options.json"))["batch"] for p in logs}
    step_s, cpu_step_s = [], []
    for p in logs:
        name = os.path.basename(os.path.dirname(p))
        opts = json.load(open(os.path.dirname(p) + "/options.json"))
        step_s += [opts["batch"] * T / s["tokens_per_s"] for s in steps(p)]
        wall, user, sys_ = map(float, open(f"{runs}/time-{name}.txt").read().split()[-3:])
        cpu_step_s.append((user + sys_) / opts["steps"])
    modes[mode] = {"runs": len(logs), "rows": sorted(rows),
                   "cpu_s_per_step_each_round": cpu_step_s,
                   "median_cpu_s_per_step": statistics.median(cpu_step_s),
                   "steps_wall_timed": len(step_s),
                   "median_wall_step_s": statistics.median(step_s),
                   "wall_step_s_quartiles": statistics.quantiles(step_s, n=4)}

pack_steps = [s for p in sorted(glob.glob(f"{runs}/pack-*/log.jsonl")) for s in steps(p)]
docs = statistics.median(s["documents"] for s in pack_steps)
budget = B * T
pack, nopack, padded = modes["pack"], modes["nopack"], modes["padded"]
# Per CPU second (one thread: per second of an otherwise idle core).
pack["tokens_per_s"] = budget / pack["median_cpu_s_per_step"]
pack["labelled_per_s"] = (budget - docs) / pack["median_cpu_s_per_step"]  # a doc's last byte: -100
nopack["tokens_per_s"] = budget / nopack["median_cpu_s_per_step"]
nopack["labelled_per_s"] = budget / nopack["median_cpu_s_per_step"]
rows = padded["rows"][0]
padded["tokens_per_s"] = rows * T / padded["median_cpu_s_per_step"]  # slots, padding included
padded["real_tokens_per_s"] = budget / padded["median_cpu_s_per_step"]  # packed's documents
padded["labelled_per_s"] = (budget - docs) / padded["median_cpu_s_per_step"]

summary = {
    "benchmark": "longctx train --task text: --pack vs --no-pack (and the padded shape)",
    "machine": json.load(open(machine_path)),
    "setup": {"model": "llama (*-*-*-*-, 820352 parameters)", "seq_len": T, "batch": B,
              "tokens_per_step": budget, "threads": 1, "corpus": "/usr/share/games/fortunes",
              "script": "run.sh (rounds alternate the modes), summarize.py"},
    "median_documents_per_packed_step": docs,
    "padding": {
        "packed_padding_tokens": 0,
        "padded_rows": rows,
        "padded_slots": rows * T,
        "padded_padding_tokens": rows * T - budget,
        "padding_fraction_saved": (rows * T - budget) / (rows * T)},
    "modes": modes,
    "rates_note": "tokens/s per CPU second of the one-thread run (user + sys over its steps)",
    "ratios": {
        "pack_over_nopack_tokens_per_s": pack["tokens_per_s"] / nopack["tokens_per_s"],
        "pack_over_padded_real_tokens_per_s":
            pack["tokens_per_s"] / padded["real_tokens_per_s"],
        "pack_over_nopack_each_round": [n / p for p, n in zip(
            pack["cpu_s_per_step_each_round"], nopack["cpu_s_per_step_each_round"])],
        "pack_over_padded_each_round": [d / p for p, d in zip(
            pack["cpu_s_per_step_each_round"], padded["cpu_s_per_step_each_round"])],
        "wall_pack_over_nopack": nopack["median_wall_step_s"] / pack["median_wall_step_s"]},
}
json.dump(summary, open(f"{here}/summary.json", "w"), indent=2)

m = summary["machine"]
opts_steps = json.load(open(glob.glob(f"{runs}/pack-*/options.json")[0]))["steps"]
rt = summary["ratios"]
md = f"""# `train --task text`: packed documents vs windows across them vs padding (CPU)

{m['date']}, commit {m['commit']}, {m['cpu']}; one thread per run; load average {m['load_before']}
before, {m['load_after']} after. The modes alternate in {pack['runs']} rounds of {opts_steps} steps
each (run.sh); rates are per CPU second of the one-thread process (user + sys), the median over the
rounds: a step's wall time moved by up to 2x between rounds on this shared host. Model `llama`
(0.82 M parameters), {B} x {T} bytes a step.

| mode | rows x T | CPU s / step | tokens/s | labelled targets/s | padding |
|---|---|---|---|---|---|
| `--pack` (documents back to back, none seeing another) | 1 x {budget} | {pack['median_cpu_s_per_step']:.3f} | {pack['tokens_per_s']:.0f} | {pack['labelled_per_s']:.0f} | 0 |
| `--no-pack` (windows across documents) | {B} x {T} | {nopack['median_cpu_s_per_step']:.3f} | {nopack['tokens_per_s']:.0f} | {nopack['labelled_per_s']:.0f} | 0, but documents see each other |
| padded (one document a row, timed as `--no-pack --batch {rows}`) | {rows} x {T} | {padded['median_cpu_s_per_step']:.3f} | {padded['real_tokens_per_s']:.0f} real | {padded['labelled_per_s']:.0f} | {rows * T - budget} of {rows * T} slots ({100 * (rows * T - budget) / (rows * T):.0f}%) |

A packed step holds {docs:.0f} documents (median): a row each, padded, would take {rows} x {T} =
{rows * T} slots for the same {budget} tokens. Packing runs at x{rt['pack_over_nopack_tokens_per_s']:.2f}
the throughput of `--no-pack` (each round: {', '.join(f'x{x:.2f}' for x in rt['pack_over_nopack_each_round'])};
by median wall step x{rt['wall_pack_over_nopack']:.2f}) while keeping documents apart, and at
x{rt['pack_over_padded_real_tokens_per_s']:.2f} the padded batch's real tokens (each round: {', '.join(f'x{x:.2f}' for x in rt['pack_over_padded_each_round'])}).
Per-step logs: raw/*.jsonl.gz; CPU times: raw/time-*.txt. Commands: `bash run.sh LONGCTX RUNS 3 20`
with LONGCTX built at the commit above (Release, CPU), then `python3 summarize.py RUNS
machine.json`, machine.json holding the `machine` object of summary.json.
"""
open(f"{here}/summary.md", "w").write(md)
os.makedirs(f"{here}/raw", exist_ok=True)
for p in sorted(glob.glob(f"{runs}/time-*.txt")):
    shutil.copy(p, f"{here}/raw/")
for p in sorted(glob.glob(f"{runs}/*-*/log.jsonl")):
    name = os.path.basename(os.path.dirname(p))
    with open(p, "rb") as src, gzip.open(f"{here}/raw/{name}.jsonl.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
print(md)
