"""PyTorch CPU SDPA forward against longctx's, in GFLOP per CPU second (process CPU time of all
threads), alternating point by point: wall-time ratios (bench/peers) swung 0.3-3.3x at load 12 on
2 cores. bench_attention's sweep and FLOP convention (4·B·T²·H·D, halved when causal), f32,
H = 8, D = 64, B = 4096 / T; inputs uniform in [-1, 1) on the torch side (values do not matter
for speed). Best of --reps after a warm-up. Usage (from the worktree root, OMP_NUM_THREADS=2
OMP_WAIT_POLICY=passive): python sdpa_cpu.py BENCH_ATTENTION_BINARY OUT.json"""
import json
import os
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

bench, out_path = sys.argv[1], sys.argv[2]
reps = 5
torch.set_num_threads(2)
points = []
for T in (512, 1024, 2048, 4096):
    B, H, D = 4096 // T, 8, 64
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    subprocess.run([bench, "--t-min", str(T), "--t-max", str(T), "--no-bwd", "--no-naive",
                    "--reps", str(reps), "--json", path], check=True, capture_output=True)
    lc = {p["causal"]: p for p in json.load(open(path))["points"]}
    os.unlink(path)
    g = torch.Generator().manual_seed(T)
    q, k, v = (torch.rand(B, H, T, D, generator=g) * 2 - 1 for _ in range(3))
    for causal in (False, True):
        flops = 4.0 * B * T * T * H * D * (0.5 if causal else 1.0)
        with torch.no_grad():
            F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            cpu = []
            for _ in range(reps):
                c0 = time.process_time()
                F.scaled_dot_product_attention(q, k, v, is_causal=causal)
                cpu.append(time.process_time() - c0)
        p = {"T": T, "B": B, "causal": causal, "load": os.getloadavg()[0],
             "longctx_fwd_gflops_per_cpu_s": lc[causal]["fwd_gflops_per_cpu_s"],
             "torch_fwd_gflops_per_cpu_s": flops / min(cpu) * 1e-9}
        p["ratio"] = p["longctx_fwd_gflops_per_cpu_s"] / p["torch_fwd_gflops_per_cpu_s"]
        print(f"T={T:5d} causal={causal!s:5} longctx {p['longctx_fwd_gflops_per_cpu_s']:6.1f} "
              f"torch {p['torch_fwd_gflops_per_cpu_s']:6.1f} GF/cpu-s  {p['ratio']:.2f}x  "
              f"load {p['load']:.1f}", flush=True)
        points.append(p)
json.dump({"torch": torch.__version__, "points": points}, open(out_path, "w"), indent=1)
