#!/bin/bash
# Runs both probes preset by preset (longctx's, then PyTorch's), 2 threads, passive waiting,
# with `uptime` before each. From the worktree root, after building build-cpu (liblongctx.so).
set -e
D=bench/results/2026-12-05-cpu-prefill-profile
g++ -O2 -std=c++17 -fopenmp -I include $D/prefill_profile.cpp -Lbuild-cpu -llongctx \
  -Wl,-rpath,$PWD/build-cpu -o /tmp/prefillprof-probe
export OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive
for preset in ${PRESETS:-llama hybrid mamba2}; do
  echo "uptime: $(uptime)"
  /tmp/prefillprof-probe $preset 256,1024,4096 5
  echo "uptime: $(uptime)"
  .venv-peers/bin/python $D/torch_prefill_profile.py $preset 256,1024,4096 2>&1 |
    grep -E '^(##|op )'
done
echo "uptime: $(uptime)"
