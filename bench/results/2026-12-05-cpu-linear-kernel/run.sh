#!/bin/bash
# The prefill's projection shapes: longctx's old (OpenBLAS) and new (small_k_gemm, AVX-512 and
# AVX2 tiles) forward in one binary, then PyTorch's F.linear, twice; uptime between. Worktree root.
set -e
dir=bench/results/2026-12-05-cpu-linear-kernel
g++ -O3 -march=x86-64-v3 -std=c++17 -fopenmp -I. -Iinclude $dir/linear_kernel_probe.cpp \
  -Lbuild-cpu -llongctx -lopenblas -Wl,-rpath,$PWD/build-cpu -o /tmp/linear_kernel_probe
for run in 1 2; do
  uptime
  OMP_WAIT_POLICY=passive /tmp/linear_kernel_probe 21
  uptime
  OMP_WAIT_POLICY=passive .venv-peers/bin/python $dir/torch_linear_probe.py
  uptime
  OMP_WAIT_POLICY=passive OPENBLAS_CORETYPE=Haswell /tmp/linear_kernel_probe 21 | sed 's/^/[OpenBLAS Haswell] /'
done
