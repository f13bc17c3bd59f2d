#!/usr/bin/env python3
"""longctx (main's library and this branch's) against PyTorch's CPU SDPA in CPU seconds, point by
point in one run: base, new, SDPA at each sweep point, the three alternating.

    python sdpa_cpu.py --bench BUILD/bench/bench_attention --base-lib DIR --new-lib DIR --out F

Why CPU seconds: on the shared 2-core machine at load 12-18 the wall-clock times of the peer
harness (bench/peers/peers.py) move 5x between neighbouring points. CPU seconds (process-wide,
all threads; OMP_WAIT_POLICY=passive, so waiting threads do not spin) are bench_attention's steadier
measure ("GF/cpu-s"); here SDPA is timed the same way: time.process_time() around each call, best
of --reps after a warm-up. Inputs and calls as peers.py: (B, H, T, D) f32 in [-1, 1),
F.scaled_dot_product_attention, the backward alone through torch.autograd.grad.
"""
import argparse, json, os, subprocess, tempfile, time
import torch
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--bench", required=True)
p.add_argument("--base-lib", required=True)
p.add_argument("--new-lib", required=True)
p.add_argument("--reps", type=int, default=3)
p.add_argument("--out", required=True)
args = p.parse_args()
torch.set_num_threads(2)


def best_cpu(fn, reps):
    fn()
    cpu, wall = [], []
    for _ in range(reps):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return min(cpu), min(wall)


def longctx(lib, T):
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        env = dict(os.environ, LD_LIBRARY_PATH=lib)
        subprocess.run([args.bench, "--t-min", str(T), "--t-max", str(T), "--no-naive", "--reps",
                        str(args.reps), "--json", f.name], env=env, check=True,
                       capture_output=True)
        return {q["causal"]: q for q in json.load(open(f.name))["points"]}


H, D, tokens = 8, 64, 4096
points = []
T = 512
while T <= tokens:
    B = tokens // T
    base = longctx(args.base_lib, T)
    new = longctx(args.new_lib, T)
    for causal in (False, True):
        g = torch.Generator().manual_seed(T)
        q, k, v, dout = (torch.rand(B, H, T, D, generator=g) * 2 - 1 for _ in range(4))
        with torch.no_grad():
            fc, fw = best_cpu(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal),
                              args.reps)
        qg, kg, vg = (t.clone().requires_grad_() for t in (q, k, v))
        out = F.scaled_dot_product_attention(qg, kg, vg, is_causal=causal)
        bc, bw = best_cpu(lambda: torch.autograd.grad(out, (qg, kg, vg), dout, retain_graph=True),
                          args.reps)
        flops = 4.0 * B * T * T * H * D * (0.5 if causal else 1.0)
        b, n = base[causal], new[causal]
        assert b["check_ok"] and n["check_ok"]
        pt = {"T": T, "B": B, "causal": causal, "load": os.getloadavg()[0],
              "sdpa_fwd_cpu_s": fc, "sdpa_bwd_cpu_s": bc, "sdpa_fwd_wall_s": fw, "sdpa_bwd_wall_s": bw}
        for name, r in (("base", b), ("new", n)):
            for kk in ("fwd", "bwd"):
                pt[f"{name}_{kk}_cpu_s"] = r[f"{kk}_cpu_s"]
                pt[f"{name}_{kk}_gflops_per_cpu_s"] = r[f"{kk}_gflops_per_cpu_s"]
                pt[f"{name}_{kk}_peak_fraction"] = r[f"{kk}_fma_peak_fraction"]
                pt[f"{name}_{kk}_ratio_cpu"] = pt[f"sdpa_{kk}_cpu_s"] / r[f"{kk}_cpu_s"]
        pt["sdpa_fwd_gflops_per_cpu_s"] = flops / fc * 1e-9
        pt["sdpa_bwd_gflops_per_cpu_s"] = 2.5 * flops / bc * 1e-9
        print(f"T={T:5d} B={B} causal={causal!s:5} load {pt['load']:5.1f}  fwd GF/cpu-s base "
              f"{b['fwd_gflops_per_cpu_s']:6.1f} new {n['fwd_gflops_per_cpu_s']:6.1f} sdpa "
              f"{pt['sdpa_fwd_gflops_per_cpu_s']:6.1f} (new/sdpa {pt['new_fwd_ratio_cpu']:.2f}x)  "
              f"bwd base {b['bwd_gflops_per_cpu_s']:6.1f} new {n['bwd_gflops_per_cpu_s']:6.1f} "
              f"sdpa {pt['sdpa_bwd_gflops_per_cpu_s']:6.1f} (new/sdpa {pt['new_bwd_ratio_cpu']:.2f}x)",
              flush=True)
        points.append(pt)
    T *= 2
json.dump({"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "points": points}, open(args.out, "w"), indent=1)
