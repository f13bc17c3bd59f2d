#!/bin/bash
# Per-op profiles, main's library (MAIN_LIB_DIR) against the branch's build-cpu, alternating, the
# training step by each side's own CLI (`longctx bench scaling --profile`, T = 256; MAIN_CLI: a copy
# of main's build-cpu/longctx — the branch's CLI links drivers compiled against the branch's
# ParamArena and crashes on main's library) and the prefill by one probe binary against both
# libraries (prefill_profile.cpp, T = 256, 5 profiled prefills).
# Worktree root. Usage: profile_ab.sh MAIN_LIB_DIR MAIN_CLI [rounds]
set -e
main=$1
main_cli=$2
rounds=${3:-2}
D=bench/results/2026-12-05-cpu-llama-step
g++ -O2 -std=c++17 -fopenmp -I include $D/prefill_profile.cpp -Lbuild-cpu -llongctx -o /tmp/s7-prefillprof
export OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive
for r in $(seq $rounds); do
  for v in main branch; do
    dir=$PWD/build-cpu cli=build-cpu/longctx
    [ $v = main ] && dir=$main cli=$main_cli
    echo "=== $v round $r; uptime: $(uptime)"
    LD_LIBRARY_PATH=$dir $cli bench scaling --device cpu --presets llama --lengths 256 \
      --profile --repeats 1 --out /tmp/s7-scaling-$v.json
    LD_LIBRARY_PATH=$dir /tmp/s7-prefillprof llama 256 5
  done
done
echo "uptime: $(uptime)"
