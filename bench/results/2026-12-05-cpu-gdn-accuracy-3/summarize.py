"""Summarises probe.inc's output (README.md): per gradient, medians over the cases of the per-case
ratios of the largest error over 4 consecutive tokens, in units of u x magnitude.
usage: summarize.py PROBE_OUTPUT [SWEEP_RESULTS]  (with SWEEP_RESULTS: only the (case, gradient)
pairs that the -gdn-accuracy-2 sweep found over the 2x rule at t >= 293 with dfinal_state)."""
import re
import statistics as st
import sys

fails = None
if len(sys.argv) > 2:
    fails = set()
    pat = r"f32 K=(\d+) (head|chan) (\w+) seed=(\d+) h0=(\d) dfin=1 ratio=([\d.]+) .*\(t=(-?\d+)\)"
    for line in open(sys.argv[2]):
        m = re.match(pat, line)
        if m and float(m.group(6)) > 1 and int(m.group(7)) >= 293:
            K, g, w, seed, h0 = m.group(1, 2, 3, 4, 5)
            fails.add((K, g, h0, seed, w))
rows, case = [], None
num = r"([\d.]+)/([\d.]+)/([\d.]+)"
pat = (r"(\w+)\s+2x-rule ([\d.]+) f64 ([\d.]+) \| mag last4/median ([\d.]+) \| max abs err at t op "
       rf"(\d+) loop (\d+) \| op32 {num} \| loop32 {num} \| op64 {num} \| loop64 {num}")
for line in open(sys.argv[1]):
    m = re.match(r"== K=(\d+) (head|chan) h0=(\d) seed=(\d+)", line)
    if m:
        case = m.groups()
        continue
    m = re.match(pat, line)
    if m and (fails is None or (*case, m.group(1)) in fails):
        rows.append((m.group(1), [float(x) for x in m.groups()[1:]]))
# columns: 0 rule, 1 rule64, 2 mag ratio, 3 op t, 4 loop t, then (win, pos, last4) for op32 5-7,
# loop32 8-10, op64 11-13, loop64 14-16
print("grad   n  f32>1 f64>1  mag  | own last4/pos: op32 loop32 op64 loop64 | op/loop f32: last4 pos "
      "all | op/loop f64: last4 pos all")
for w in ("dq", "dk", "dv", "dg", "dbeta", "out"):
    sub = [v for name, v in rows if name == w]
    if not sub:
        continue
    R = lambda a, b: st.median([v[a] / max(v[b], 1e-9) for v in sub])
    print(f"{w:5s} {len(sub):3d} {sum(v[0] > 1 for v in sub):5d} {sum(v[1] > 1 for v in sub):5d} "
          f"{st.median(v[2] for v in sub):5.1f} | {R(7, 6):17.2f} {R(10, 9):6.2f} {R(13, 12):4.2f} "
          f"{R(16, 15):6.2f} | {R(7, 10):17.2f} {R(6, 9):4.2f} {R(5, 8):4.2f} | {R(13, 16):17.2f} "
          f"{R(12, 15):4.2f} {R(11, 14):4.2f}")
