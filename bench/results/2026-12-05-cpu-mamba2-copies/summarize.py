"""Per label, preset and T: the CPU ms of each round (prefill, training step, profiled prefill
outside ops, ssd_fwd) from run.sh output, and each label's ratio to `main` summed over rounds."""
import re
import sys
from collections import defaultdict

pat = re.compile(r"^(\S+) (\S+) T=(\d+) B=\d+ prefill [\d.]+ ms wall ([\d.]+) ms CPU .*train [\d.]+ "
                 r"ms wall ([\d.]+) ms CPU .*outside ops ([\d.]+), ssd_fwd ([\d.]+) of")
rows = defaultdict(list)
for line in open(sys.argv[1]):
    m = pat.match(line)
    if m:
        label, preset, T = m.group(1), m.group(2), int(m.group(3))
        rows[(preset, T, label)].append([float(m.group(i)) for i in range(4, 8)])
labels = []
for (_, _, label) in rows:
    if label not in labels:
        labels.append(label)
print("| preset | T | label | prefill CPU ms | train CPU ms | outside ops | ssd_fwd | prefill main/label | train main/label |")
print("|---|---|---|---|---|---|---|---|---|")
for preset, T in sorted({(p, t) for (p, t, _) in rows}):
    base = rows[(preset, T, "main")]
    for label in labels:
        r = rows[(preset, T, label)]
        col = lambda i: " / ".join(f"{x[i]:.0f}" if i < 2 else f"{x[i]:.1f}" for x in r)
        ratio = lambda i: sum(x[i] for x in base) / sum(x[i] for x in r)
        print(f"| {preset} | {T} | {label} | {col(0)} | {col(1)} | {col(2)} | {col(3)} | "
              f"{ratio(0):.3f} | {ratio(1):.3f} |")
