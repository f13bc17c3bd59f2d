"""Summarises ab.sh's runs: per preset and T, the median over rounds of main's (A) and the
branch's (B) process CPU seconds for a training step and a prefill (each run's value is already
the median of its repeats), and B/A per round (the two runs of a round are back to back)."""
import glob
import json
import statistics
import sys

out = sys.argv[1]


def load(side):
    runs = []
    for path in sorted(glob.glob(f"{out}/{side}-*.json")):
        d = json.load(open(path))
        runs.append({(p["preset"], pt["T"]): pt for p in d["presets"] for pt in p["points"]})
    return runs


A, B = load("A"), load("B")
rounds = min(len(A), len(B))
print(f"{rounds} rounds; CPU ms (all threads), median over rounds; B/A per round")
print("| preset | T | metric | main (A) | branch (B) | B/A of medians | B/A per round |")
print("|---|---|---|---|---|---|---|")
for key in A[0]:
    for metric in ("train_step_cpu_s", "prefill_cpu_s"):
        a = [A[r][key][metric] for r in range(rounds)]
        b = [B[r][key][metric] for r in range(rounds)]
        per = " ".join(f"{b[r] / a[r]:.3f}" for r in range(rounds))
        ma, mb = statistics.median(a), statistics.median(b)
        print(f"| {key[0]} | {key[1]} | {metric[:-2]} | {ma * 1e3:.1f} | {mb * 1e3:.1f} "
              f"| {mb / ma:.3f} | {per} |")
