"""The table of README.md from the runs' JSON: per preset, C and round, each rank's training-step
CPU time outside the communicator, the slowest rank's and the sum, contiguous against zigzag."""
import glob
import json
import os

here = os.path.dirname(os.path.abspath(__file__))
runs = {}
for path in sorted(glob.glob(os.path.join(here, "C*-*-*.json"))):
    c, layout, rnd = os.path.basename(path)[:-5].split("-")
    report = json.load(open(path))
    for p in report["presets"]:
        point = p["points"][0]
        runs[(p["preset"], int(c[1:]), int(rnd), layout)] = (
            point["train_step_cpu_outside_comm_s_per_rank"],
            point["prefill_cpu_outside_comm_s_per_rank"],
            report["load_average_start"],
        )

print("| preset | C | round | what | contiguous per rank (s) | slowest | sum "
      "| zigzag per rank (s) | slowest | sum | slowest: contiguous / zigzag |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for (preset, C, rnd, layout) in sorted(runs):
    if layout != "contiguous" or (preset, C, rnd, "zigzag") not in runs:
        continue
    for i, what in ((0, "train step"), (1, "prefill")):
        a = runs[(preset, C, rnd, "contiguous")][i]
        b = runs[(preset, C, rnd, "zigzag")][i]
        fmt = lambda v: " ".join(f"{x:.3f}" for x in v)
        print(f"| {preset} | {C} | {rnd} | {what} | {fmt(a)} | {max(a):.3f} | {sum(a):.3f} "
              f"| {fmt(b)} | {max(b):.3f} | {sum(b):.3f} | {max(a) / max(b):.2f}x |")
