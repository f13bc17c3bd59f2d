"""The llama preset's eight projection GEMMs (y = x W^T, M = 4096; see linear_fwd_gemms.cpp) and
their backward (dx = dy W, dW = dy^T x) in PyTorch, one thread, process CPU time per pass: the
rate PyTorch's own GEMM reaches on the shapes longctx runs through OpenBLAS.
  .venv-peers/bin/python torch_linear_gemms.py REPS M     (here: 20 4096)
"""
import sys
import time

import torch

torch.set_num_threads(1)
reps, M = int(sys.argv[1]), int(sys.argv[2])
shapes = [(128, 128), (128, 64), (128, 64), (128, 128), (128, 384), (128, 384), (384, 128),
          (128, 256)]
bufs = [(torch.full((M, i), 0.5), torch.full((o, i), 0.25), torch.full((M, o), 0.1))
        for i, o in shapes]
flops = sum(2 * M * i * o for i, o in shapes)
for name, f in (("fwd", lambda x, w, dy: torch.mm(x, w.t())),
                ("bwd", lambda x, w, dy: (torch.mm(dy, w), torch.mm(dy.t(), x)))):
    total = 0.0
    for rep in range(reps + 1):
        c = time.process_time()
        for x, w, dy in bufs:
            f(x, w, dy)
        if rep:
            total += time.process_time() - c
    ms = 1e3 * total / reps
    n = flops * (2 if name == "bwd" else 1)
    print(f"torch {name}: {ms:.2f} ms CPU a pass, {n / ms / 1e6:.1f} GFLOP/s")
