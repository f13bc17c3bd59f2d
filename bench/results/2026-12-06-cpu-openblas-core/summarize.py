"""Medians (min-max) of ab.sh's runs: train and prefill tokens/s per preset and T, Prescott against the
chosen kernels, and their ratio.  python3 summarize.py OUT_DIR"""
import glob, json, statistics, sys
from collections import defaultdict

runs = defaultdict(list)
for path in glob.glob(f"{sys.argv[1]}/*.json"):
    preset, T, core, _ = path.rsplit("/", 1)[1][:-5].split("-")
    point = json.load(open(path))["presets"][0]["points"][0]
    runs[(preset, int(T), core)].append(point)
print("| preset | T | train Prescott | train chosen | ratio | prefill Prescott | prefill chosen | ratio |")
print("|---|---|---|---|---|---|---|---|")
for preset, T in sorted({(p, t) for p, t, _ in runs}):
    row = [preset, str(T)]
    for key in ["train_tokens_per_s", "prefill_tokens_per_s"]:
        a = [p[key] for p in runs[(preset, T, "Prescott")]]
        b = [p[key] for p in runs[(preset, T, "chosen")]]
        old, new = statistics.median(a), statistics.median(b)
        row += [f"{old:.0f} ({min(a):.0f}-{max(a):.0f})", f"{new:.0f} ({min(b):.0f}-{max(b):.0f})",
                f"{new / old:.2f}"]
    print("| " + " | ".join(row) + " |")
