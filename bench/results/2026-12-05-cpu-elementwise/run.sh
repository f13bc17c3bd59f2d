#!/bin/bash
# A/B of model_probe.cpp: the same binary against the library before (main at 2dff8f4) and after
# this branch, by LD_LIBRARY_PATH, alternating, with `uptime` beside each run. From the worktree
# root; BEFORE and AFTER are folders holding liblongctx.so.0 of the two builds.
set -e
D=bench/results/2026-12-05-cpu-elementwise
g++ -O2 -std=c++17 -fopenmp -I include $D/model_probe.cpp -L"$AFTER" -llongctx \
  -o /tmp/s5ew-model-probe
export OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive
for round in ${ROUNDS:-1 2}; do
  for side in before after; do
    lib=$BEFORE
    [ $side = after ] && lib=$AFTER
    echo "=== round $round $side ($lib) uptime: $(uptime)"
    LD_LIBRARY_PATH=$lib /tmp/s5ew-model-probe ${PRESETS:-llama,hybrid} ${LENGTHS:-256,1024,4096} \
      ${REPS:-5}
  done
done
echo "uptime: $(uptime)"
