# Medians over the rounds of ab.sh's output: GFLOP per CPU second per library and shape, and
# each library's median ratio to the first one (per round, then the median). Checks that the
# outputs' checksums agree between libraries (same bits where the change claims it).
# Usage: python3 summarize.py OUTDIR LIB...
import collections, glob, re, statistics, sys

out, libs = sys.argv[1], sys.argv[2:]
runs = collections.defaultdict(dict)  # (lib, round) -> shape -> (gf, checksum)
for lib in libs:
    for path in glob.glob(f"{out}/{lib}-r*.txt"):
        rnd = int(re.search(r"-r(\d+)\.txt$", path).group(1))
        for line in open(path):
            f = dict(kv.split("=") for kv in line.split())
            shape = (int(f["T"]), int(f["H"]), int(f["Hkv"]), int(f["D"]), int(f["causal"]))
            runs[(lib, rnd)][shape] = (float(f["gf_cpu"]), f["checksum"])
shapes = sorted({s for r in runs.values() for s in r}, key=lambda s: (-s[3], s[0], s[4]))
# Rounds where every library's run is complete (a run still in progress is left out).
rounds = sorted(r for r in {r for (_, r) in runs}
                if all(len(runs.get((l, r), {})) == len(shapes) for l in libs))
print("| T | H | Hkv | D | causal | " + " | ".join(libs) + " | "
      + " | ".join(f"{l} / {libs[0]}" for l in libs[1:]) + " | same checksum |")
print("|" + "---|" * (5 + 2 * len(libs)))
for s in shapes:
    med = [statistics.median(runs[(l, r)][s][0] for r in rounds if True) for l in libs]
    ratios = [statistics.median(runs[(l, r)][s][0] / runs[(libs[0], r)][s][0] for r in rounds)
              for l in libs[1:]]
    sums = {runs[(l, r)][s][1] for l in libs for r in rounds}
    print(f"| {s[0]} | {s[1]} | {s[2]} | {s[3]} | {'yes' if s[4] else 'no'} | "
          + " | ".join(f"{m:.1f}" for m in med) + " | "
          + " | ".join(f"{x:.3f}" for x in ratios) + f" | {'yes' if len(sums) == 1 else 'no'} |")
print(f"\n{len(rounds)} rounds; GFLOP per CPU second, median over the rounds; ratio: median of "
      "the per-round ratios.")
