# Per-symbol CPU ms per GFLOP from `perf report -n --sort sym` counts (cpu-clock at 4999 Hz).
# args: counts_1024.tsv calls_1024 counts_4096.tsv calls_4096
import re, sys
def load(p):
    d = {}
    for line in open(p):
        n, sym = line.rstrip("\n").split("\t", 1)
        sym = re.sub(r"longctx::cpu::\(anonymous namespace\)::", "", sym)
        sym = re.sub(r"\(longctx::Context const&, longctx::AttentionArgs const&\)", "", sym)
        sym = re.sub(r"std::mersenne_twister_engine<.*>::", "mt19937::", sym)
        d[sym] = d.get(sym, 0) + int(n)
    return d
a, ca, b, cb = load(sys.argv[1]), int(sys.argv[2]), load(sys.argv[3]), int(sys.argv[4])
gf = lambda T: 4.0 * 4096 * T * 8 * 64 * 1e-9  # per call, B*T = 4096
ua, ub = 1e3 / 4999 / (ca * gf(1024)), 1e3 / 4999 / (cb * gf(4096))  # ms/GFLOP per sample
setup = ("random_tensor", "mt19937", "checksum", "Tensor::numel")  # the probe's own set-up
KERNEL = set()
rows = sorted(set(a) | set(b), key=lambda s: -(a.get(s, 0) * ua))
ta = tb = 0.0
print("| symbol | T=1024 ms/GFLOP | T=4096 ms/GFLOP | diff | share of gap |")
print("|---|---:|---:|---:|---:|")
out = []
for s in rows:
    if any(k in s for k in setup) or s in KERNEL: continue
    x, y = a.get(s, 0) * ua, b.get(s, 0) * ub
    ta += x; tb += y
    out.append((s, x, y))
gap = ta - tb
for s, x, y in out:
    if max(x, y) < 0.005: continue
    print(f"| {s[:90]} | {x:.4f} | {y:.4f} | {x-y:+.4f} | {100*(x-y)/gap:+.0f}% |")
print(f"| **total (setup/kernel excluded)** | {ta:.4f} | {tb:.4f} | {gap:+.4f} | 100% |")
print(f"\nGFLOP per CPU second from these totals: T=1024 {1000/ta:.1f}, T=4096 {1000/tb:.1f} ({100*gap/tb:.1f}% more time per FLOP at 1024)")
