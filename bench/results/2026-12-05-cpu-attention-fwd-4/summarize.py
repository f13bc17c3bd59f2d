import sys, glob, re, statistics as st, collections
out = sys.argv[1]; libs = sys.argv[2:]
d = collections.defaultdict(lambda: collections.defaultdict(list))  # (point, fb) -> lib -> [gf]
sums = collections.defaultdict(set)
for lib in libs:
    for f in sorted(glob.glob(f"{out}/{lib}-r*.txt")):
        for line in open(f):
            kv = dict(x.split("=") for x in line.split())
            pt = f"T={kv['T']} causal={kv['causal']}"
            for fb in ("fwd", "bwd"):
                g = float(kv[f"{fb}_gf_cpu"])
                if g > 0: d[(pt, fb)][lib].append(g)
            sums[pt].add((kv['out_sum'], kv['grad_sum']))
print("| point | pass | " + " | ".join(f"{l} median (min-max)" for l in libs) + " | " + " | ".join(f"{l} / {libs[0]}" for l in libs[1:]) + " |")
print("|" + "---|" * (2 + 2 * len(libs) - 1))
for (pt, fb), per in d.items():
    base = st.median(per[libs[0]])
    cells = [f"{st.median(per[l]):.1f} ({min(per[l]):.1f}-{max(per[l]):.1f})" for l in libs]
    rat = [f"{st.median(per[l]) / base:.3f}" for l in libs[1:]]
    print(f"| {pt} | {fb} | " + " | ".join(cells) + " | " + " | ".join(rat) + " |")
print()
print("same checksums across libraries at every point:", all(len(v) == 1 for v in sums.values()))
