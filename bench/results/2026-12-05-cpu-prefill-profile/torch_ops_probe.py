#!/usr/bin/env python3
"""Probe: ops_probe.cpp's shapes in PyTorch (2 threads, no_grad), eager and torch.compile, median
of 21 calls after 3 warm-ups, wall and process CPU time in microseconds. The compiled forms are
what inductor fuses in the prefill: silu(g) * u, and (h + y) -> rms_norm (the residual add fused
into the next norm), against the eager chain."""
import statistics
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(2)
torch.manual_seed(1)
M = 4096


def bench(name, fn):
    with torch.no_grad():
        for _ in range(3):
            fn()
        wall, cpu = [], []
        for _ in range(21):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    print(f"{name:40s} {statistics.median(wall)*1e6:9.1f} us wall {statistics.median(cpu)*1e6:9.1f} us CPU",
          flush=True)


for Cout, Cin in [(128, 128), (64, 128), (384, 128), (128, 384), (256, 128), (648, 128), (128, 256)]:
    x, w = torch.randn(M, Cin), torch.randn(Cout, Cin)
    bench(f"linear {Cout}x{Cin}", lambda: F.linear(x, w))
for Fh in [384, 256]:
    g, u = torch.randn(M, Fh), torch.randn(M, Fh)
    swiglu = lambda g, u: F.silu(g) * u
    c = torch.compile(swiglu, dynamic=False)
    bench(f"swiglu {M}x{Fh} eager", lambda: swiglu(g, u))
    bench(f"swiglu {M}x{Fh} compile", lambda: c(g, u))
for C in [128, 256]:
    x, w = torch.randn(M, C), torch.randn(C)
    norm = lambda x: F.rms_norm(x, (C,), w, 1e-5)
    c = torch.compile(norm, dynamic=False)
    bench(f"rmsnorm {M}x{C} eager", lambda: norm(x))
    bench(f"rmsnorm {M}x{C} compile", lambda: c(x))
h, y, w = torch.randn(M, 128), torch.randn(M, 128), torch.randn(128)
bench("add 4096x128 eager", lambda: h + y)
addnorm = lambda h, y: (lambda s: (s, F.rms_norm(s, (128,), w, 1e-5)))(h + y)
c = torch.compile(addnorm, dynamic=False)
bench("add+rmsnorm 4096x128 compile", lambda: c(h, y))
