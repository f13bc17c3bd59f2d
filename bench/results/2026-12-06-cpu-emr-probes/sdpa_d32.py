import torch, time, torch.nn.functional as F
torch.set_num_threads(2)
for D, H in ((32, 4), (64, 4)):
  for causal in (False, True):
    q = torch.randn(1, H, 4096, D, requires_grad=True); k = torch.randn(1, H, 4096, D, requires_grad=True); v = torch.randn(1, H, 4096, D, requires_grad=True)
    fl = 4 * H * 4096 * 4096 * D / (2 if causal else 1)
    bf = bb = 1e9
    for _ in range(4):
        t = time.perf_counter(); o = F.scaled_dot_product_attention(q, k, v, is_causal=causal); bf = min(bf, time.perf_counter() - t)
        g = torch.randn_like(o); t = time.perf_counter(); o.backward(g); bb = min(bb, time.perf_counter() - t)
    print(f"D={D} H={H} causal={causal}: fwd {fl/bf*1e-9:.1f} GFLOP/s, bwd {2.5*fl/bb*1e-9:.1f}")
