# Per point: new/base CPU time per round (both orders; < 1: new faster), median and range, and the
# wall GFLOP/s medians. Reads ab.sh's output on stdin.
import re, statistics, sys
pts = {}
pt = order = None
for line in sys.stdin:
    m = re.match(r"== point (\d+), A = (\w+)", line)
    if m:
        pt, order = int(m.group(1)), m.group(2)
        continue
    m = re.search(r"wall A ([\d.]+) B ([\d.]+).*B/A\(cpu time\) ([\d.]+)", line)
    if m:
        a, b, r = float(m.group(1)), float(m.group(2)), float(m.group(3))
        new_w, base_w, ratio = (b, a, r) if order == "base" else (a, b, 1 / r)
        d = pts.setdefault(pt, {"r": [], "nw": [], "bw": []})
        d["r"].append(ratio); d["nw"].append(new_w); d["bw"].append(base_w)
names = ["D=32 causal T=256 (llama prefill)", "T=512", "T=1024", "T=2048", "T=4096",
         "causal T=512", "causal T=1024", "causal T=2048", "causal T=4096"]
print("| point | new/base CPU time, median [range] | new faster | wall GFLOP/s base -> new (medians) |")
print("|---|---|---|---|")
for p, d in sorted(pts.items()):
    r = d["r"]
    print(f"| {names[p]} | {statistics.median(r):.3f} [{min(r):.3f}-{max(r):.3f}] | "
          f"{sum(x < 1 for x in r)} of {len(r)} | {statistics.median(d['bw']):.1f} -> "
          f"{statistics.median(d['nw']):.1f} |")
