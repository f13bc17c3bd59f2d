# Medians over the rounds of ab_prefill.sh's output (the llama preset at T = 256, 4096 tokens):
# prefill and training-step CPU seconds per library and each library's median per-round
# speedup over the first (its CPU time / theirs). Usage: python3 summarize_prefill.py OUTDIR LIB...
import glob, re, json, statistics, sys

out, libs = sys.argv[1], sys.argv[2:]
runs = {}  # (lib, round) -> point
for lib in libs:
    for path in glob.glob(f"{out}/{lib}-r*.json"):
        rnd = int(re.search(r"-r(\d+)\.json$", path).group(1))
        runs[(lib, rnd)] = json.load(open(path))["presets"][0]["points"][0]
rounds = sorted(r for r in {r for (_, r) in runs} if all((l, r) in runs for l in libs))
print("| measure | " + " | ".join(libs) + " | "
      + " | ".join(f"{libs[0]} / {l} (speedup)" for l in libs[1:]) + " |")
print("|" + "---|" * (1 + 2 * len(libs) - 1))
for key in ["prefill_cpu_s", "train_step_cpu_s", "prefill_s"]:
    med = [statistics.median(runs[(l, r)][key] for r in rounds) for l in libs]
    sp = [statistics.median(runs[(libs[0], r)][key] / runs[(l, r)][key] for r in rounds)
          for l in libs[1:]]
    print(f"| {key} (ms) | " + " | ".join(f"{m * 1e3:.2f}" for m in med) + " | "
          + " | ".join(f"{x:.3f}" for x in sp) + " |")
print(f"\n{len(rounds)} rounds; median over the rounds; speedup: median of the per-round ratios.")
for l in libs[1:]:
    print(f"per-round prefill CPU speedup {l}: "
          + " ".join(f"{runs[(libs[0], r)]['prefill_cpu_s'] / runs[(l, r)]['prefill_cpu_s']:.3f}"
                     for r in rounds))
