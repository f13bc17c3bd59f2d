#!/bin/bash
# llama prefill and training step, the library before (OLD: a copy of liblongctx.so.0 built from
# the branch's base, 2dff8f4) and after small_k_gemm (build-cpu), alternating, same probe binary.
# Worktree root. Usage: run_model.sh OLD_LIB_DIR [rounds]
set -e
old=$1
rounds=${2:-3}
g++ -O2 -std=c++17 -fopenmp -I include bench/results/2026-12-05-cpu-linear-kernel/model_probe.cpp \
  -Lbuild-cpu -llongctx -o /tmp/s5gemm_model_probe
for r in $(seq $rounds); do
  for v in before after; do
    dir=build-cpu
    [ $v = before ] && dir=$old
    uptime
    LD_LIBRARY_PATH=$dir OMP_WAIT_POLICY=passive /tmp/s5gemm_model_probe llama 256,1024,4096 7 $v
  done
done
uptime
