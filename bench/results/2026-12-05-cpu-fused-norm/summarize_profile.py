"""Summarises profile_ab.sh's runs: per preset and T, the CPU ms of one training step spent in
the residual adds and norms (add_fwd, rmsnorm_fwd/bwd, add_rmsnorm_fwd/bwd: calls and time)
and the whole step, median over rounds for main (A) and the branch (B)."""
import glob
import json
import statistics
import sys

out = sys.argv[1]
OPS = ("add_fwd", "rmsnorm_fwd", "rmsnorm_bwd", "add_rmsnorm_fwd", "add_rmsnorm_bwd")


def load(side):
    runs = []
    for path in sorted(glob.glob(f"{out}/{side}-*.json")):
        d = json.load(open(path))
        runs.append({(p["preset"], pt["T"]): pt["train_step_profile"] for p in d["presets"]
                     for pt in p["points"]})
    return runs


def calls(prof):
    return " ".join(f"{op} {prof['ops'][op]['calls']}" for op in OPS if op in prof["ops"])


def norm_ms(prof):
    return 1e3 * sum(prof["ops"][op]["cpu_seconds"] for op in OPS if op in prof["ops"])


A, B = load("A"), load("B")
n = min(len(A), len(B))
print(f"{n} rounds; one profiled training step; CPU ms (all threads), median over rounds")
print("| preset | T | main: add/norm calls | main add+norm ms | branch: calls | branch add+norm ms"
      " | saved ms | main step ms | branch step ms |")
print("|---|---|---|---|---|---|---|---|---|")
for key in A[0]:
    a = statistics.median(norm_ms(A[r][key]) for r in range(n))
    b = statistics.median(norm_ms(B[r][key]) for r in range(n))
    sa = statistics.median(1e3 * A[r][key]["step_cpu_s"] for r in range(n))
    sb = statistics.median(1e3 * B[r][key]["step_cpu_s"] for r in range(n))
    print(f"| {key[0]} | {key[1]} | {calls(A[0][key])} | {a:.1f} | {calls(B[0][key])} | {b:.1f} "
          f"| {a - b:.1f} ({100 * (a - b) / sa:.1f}% of the step) | {sa:.0f} | {sb:.0f} |")
