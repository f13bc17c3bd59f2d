#!/bin/bash
# llama prefill and training step, main's library (MAIN_LIB_DIR: a copy of main's
# build-cpu/liblongctx.so.0* at 9608fdb) against this branch's build-cpu, alternating round by
# round, the same probe binary. Worktree root. Usage: ab.sh MAIN_LIB_DIR [rounds]
set -e
main=$1
rounds=${2:-3}
D=bench/results/2026-12-05-cpu-llama-step-2
g++ -O2 -std=c++17 -fopenmp -I include $D/model_probe.cpp -Lbuild-cpu -llongctx -o /tmp/s8_model_probe
export OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive
for r in $(seq $rounds); do
  for v in main branch; do
    dir=$PWD/build-cpu
    [ $v = main ] && dir=$main
    echo "uptime: $(uptime)"
    LD_LIBRARY_PATH=$dir /tmp/s8_model_probe llama ${LENGTHS:-256,1024,4096} ${REPS:-5} $v
  done
done
echo "uptime: $(uptime)"
