"""PyTorch CPU SDPA forward at fwd_probe.cpp's shapes, printed in its format: GFLOP per CPU second
(process CPU time of all threads, passive OpenMP waiting), best of REPS after a warm-up, inputs
uniform in [-1, 1), f32, 2 threads. GQA (Hkv < H) through enable_gqa. ab_sdpa.sh alternates it
with the probe. Usage: python sdpa_probe.py [REPS]"""
import sys
import time

import torch
import torch.nn.functional as F

reps = int(sys.argv[1]) if len(sys.argv) > 1 else 3
torch.set_num_threads(2)
shapes = [(T, 8, 8, 64, c) for T in (512, 1024, 2048, 4096) for c in (False, True)]
shapes += [(T, 4, 2, 32, True) for T in (256, 1024, 4096)]
g = torch.Generator().manual_seed(7)
for T, H, Hkv, D, causal in shapes:
    B = 4096 // T
    q = torch.rand(B, H, T, D, generator=g) * 2 - 1
    k, v = (torch.rand(B, Hkv, T, D, generator=g) * 2 - 1 for _ in range(2))
    kw = {"enable_gqa": True} if Hkv != H else {}
    with torch.no_grad():
        F.scaled_dot_product_attention(q, k, v, is_causal=causal, **kw)
        best = float("inf")
        for _ in range(reps):
            c0 = time.process_time()
            F.scaled_dot_product_attention(q, k, v, is_causal=causal, **kw)
            best = min(best, time.process_time() - c0)
    flops = 4.0 * B * T * T * H * D * (0.5 if causal else 1.0)
    print(f"T={T} H={H} Hkv={Hkv} D={D} causal={int(causal)} gf_cpu={flops / best * 1e-9:.2f} "
          f"checksum=torch", flush=True)
