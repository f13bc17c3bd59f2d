# Summarises an ab.sh output: per preset, length and measure, each library's median [range]
# over the rounds, and the median ratio (second library over first).
#   python3 summ.py ab.txt b647 m2new > summary.md
import re, sys, statistics as st
from collections import defaultdict
d = defaultdict(list)
cur = {}
for line in open(sys.argv[1]):
    m = re.match(r"(\S+) r(\d+) ## (\w+) T=(\d+) .*prefill median [\d.]+ ms wall, ([\d.]+) ms CPU \((\d+) tok/s\)", line)
    if m:
        lib, r, p, T, cpu, tps = m.groups(); cur[lib] = (p, T)
        d[(p, T, 'prefill tok/s', lib)].append(float(tps)); d[(p, T, 'prefill ms CPU', lib)].append(float(cpu)); continue
    m = re.match(r"(\S+) r(\d+) op \(outside ops\)\s+([\d.]+) ms CPU", line)
    if m:
        lib = m.group(1); p, T = cur[lib]; d[(p, T, 'outside ops ms CPU', lib)].append(float(m.group(3))); continue
    m = re.match(r"(\S+) r(\d+) (\w+)\s+\S+, \d+ parameters", line)
    if m: cur[m.group(1)] = (m.group(3), 'train'); continue
    m = re.match(r"(\S+) r(\d+)\s+(\d+)\s+\d+\s+(\d+)\s+\S+\s+(\d+)\s+\S+\s+([\d.]+) MiB\s+([\d.]+) MiB", line)
    if m:
        lib = m.group(1); p = cur[lib][0]; T = m.group(3)
        d[(p, T, 'train tok/s', lib)].append(float(m.group(4)))
        d[(p, T, 'train MiB / peak MiB', lib)].append((float(m.group(6)), float(m.group(7))))
libs = sys.argv[2:]
keys = sorted({k[:3] for k in d})
print("| preset | T | measure | " + " | ".join(f"{l} median [range]" for l in libs) + " | median ratio |")
print("|---|---|---|" + "---|"*(len(libs)+1))
for k in keys:
    vals = [d[k + (l,)] for l in libs]
    if 'MiB' in k[2]:
        cells = [f"{v[0][0]:.1f} / {v[0][1]:.1f}" for v in vals]; ratio = ""
    else:
        cells = [f"{st.median(v):.1f} [{min(v):.1f}-{max(v):.1f}]" if v[0] < 1000 else f"{st.median(v):.0f} [{min(v):.0f}-{max(v):.0f}]" for v in vals]
        ratio = f"{st.median(vals[1])/st.median(vals[0]):.3f}"
    print(f"| {k[0]} | {k[1]} | {k[2]} | " + " | ".join(cells) + f" | {ratio} |")
