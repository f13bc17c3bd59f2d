#!/usr/bin/env python3
"""Probe: linear_kernel_probe.cpp's prefill shapes in PyTorch, torch.nn.functional.linear (2 threads,
no_grad), median of 21 calls after 3 warm-ups, wall and process CPU time in microseconds."""
import statistics
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(2)
torch.manual_seed(1)


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
    print(f"torch {name:22s} {statistics.median(cpu)*1e6:10.1f} us CPU {statistics.median(wall)*1e6:10.1f} us wall",
          flush=True)


shapes = [(4096, 128, 128, False), (4096, 64, 128, False), (4096, 384, 128, False),
          (4096, 128, 384, False), (4096, 256, 128, False), (4096, 648, 128, False),
          (4096, 128, 256, False), (4096, 384, 128, True), (4093, 131, 127, True)]
for M, Cout, Cin, bias in shapes:
    x, w, b = torch.randn(M, Cin), torch.randn(Cout, Cin), torch.randn(Cout)
    bench(f"{M}x{Cout}x{Cin}{'+b' if bias else ''}",
          (lambda: F.linear(x, w, b)) if bias else (lambda: F.linear(x, w)))
