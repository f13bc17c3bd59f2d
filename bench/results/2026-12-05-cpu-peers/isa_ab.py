# A/B of the attention tile kernels in one build: LONGCTX_CPU_ISA=avx2 vs the default (AVX-512),
# alternating per point, `rounds` times each; best fwd/bwd time per side.
import json, os, subprocess, sys, tempfile, time
build, rounds, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = []
T = 512
while T <= 4096:
    best = {}
    for r in range(rounds):
        for isa in ("avx2", "avx512"):
            env = dict(os.environ, OMP_NUM_THREADS="2", OMP_WAIT_POLICY="passive")
            env.pop("LONGCTX_CPU_ISA", None)
            if isa == "avx2":
                env["LONGCTX_CPU_ISA"] = "avx2"
            f = tempfile.mktemp(suffix=".json")
            subprocess.run([f"{build}/bench/bench_attention", "--t-min", str(T), "--t-max", str(T),
                            "--no-naive", "--reps", "3", "--json", f], env=env, check=True,
                           capture_output=True)
            for p in json.load(open(f))["points"]:
                assert p["check_ok"]
                key = (isa, p["causal"])
                b = best.setdefault(key, {"fwd_s": 1e9, "bwd_s": 1e9, "fwd_tflops": 0, "bwd_tflops": 0})
                for k in ("fwd_s", "bwd_s"):
                    b[k] = min(b[k], p[k])
                for k in ("fwd_tflops", "bwd_tflops"):
                    b[k] = max(b[k], p[k])
            os.unlink(f)
    for causal in (False, True):
        a, z = best[("avx2", causal)], best[("avx512", causal)]
        row = {"T": T, "B": 4096 // T, "causal": causal, "load": os.getloadavg()[0],
               "avx2_fwd_gflops": a["fwd_tflops"] * 1e3, "avx512_fwd_gflops": z["fwd_tflops"] * 1e3,
               "avx2_bwd_gflops": a["bwd_tflops"] * 1e3, "avx512_bwd_gflops": z["bwd_tflops"] * 1e3}
        row["fwd_speedup"] = a["fwd_s"] / z["fwd_s"]
        row["bwd_speedup"] = a["bwd_s"] / z["bwd_s"]
        print(f"T={T:5d} causal={causal!s:5}  fwd {row['avx2_fwd_gflops']:6.1f} -> {row['avx512_fwd_gflops']:6.1f} GFLOP/s ({row['fwd_speedup']:.2f}x)   bwd {row['avx2_bwd_gflops']:6.1f} -> {row['avx512_bwd_gflops']:6.1f} ({row['bwd_speedup']:.2f}x)  load {row['load']:.1f}", flush=True)
        rows.append(row)
    T *= 2
json.dump({"what": "attention tile kernels AVX2 vs AVX-512 in one build, alternating; best of rounds x 3 reps",
           "rounds": rounds, "uptime": subprocess.run("uptime", capture_output=True, text=True).stdout.strip(),
           "points": rows}, open(out, "w"), indent=2)
