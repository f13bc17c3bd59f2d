#!/bin/bash
# linear_bwd at the small presets' projection shapes, then the llama, hybrid and mamba2 training
# steps, main's library (BASE) and the branch's (BRANCH) alternating under the same probe
# binaries; uptime between. Worktree root. Usage: run.sh BASE_LIB_DIR BRANCH_LIB_DIR [rounds] [steps: only the step_probe part]
set -e
base=$1
branch=$2
rounds=${3:-2}
only_steps=${4:-}
dir=bench/results/2026-12-05-cpu-linear-bwd
if [ -z "$only_steps" ]; then
g++ -O2 -std=c++17 -fopenmp -I include $dir/linear_bwd_probe.cpp -Lbuild-cpu -llongctx \
  -o /tmp/s6ldw_linear_bwd_probe
g++ -O2 -std=c++17 -fopenmp -I include bench/results/2026-12-05-cpu-linear-kernel/model_probe.cpp \
  -Lbuild-cpu -llongctx -o /tmp/s6ldw_model_probe
for r in $(seq $rounds); do
  for v in main branch; do
    lib=$base
    [ $v = branch ] && lib=$branch
    uptime
    LD_LIBRARY_PATH=$lib OMP_WAIT_POLICY=passive /tmp/s6ldw_linear_bwd_probe 21 $v
  done
done
for r in $(seq $rounds); do
  for preset in llama hybrid mamba2; do
    for v in main branch; do
      lib=$base
      [ $v = branch ] && lib=$branch
      uptime
      LD_LIBRARY_PATH=$lib OMP_WAIT_POLICY=passive /tmp/s6ldw_model_probe $preset 256,4096 5 $v
    done
  done
done
uptime
fi
# The training steps op by op (step_probe.cpp): linear_bwd's and linear_fwd's CPU time inside the
# step, main and branch alternating.
g++ -O2 -std=c++17 -fopenmp -I include $dir/step_probe.cpp -Lbuild-cpu -llongctx \
  -o /tmp/s6ldw_step_probe
for r in $(seq $rounds); do
  for preset in llama hybrid mamba2; do
    for v in main branch; do
      lib=$base
      [ $v = branch ] && lib=$branch
      uptime
      LD_LIBRARY_PATH=$lib OMP_WAIT_POLICY=passive /tmp/s6ldw_step_probe $preset 256,4096 5 $v
    done
  done
done
uptime
