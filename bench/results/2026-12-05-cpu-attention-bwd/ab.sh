#!/usr/bin/env bash
# A/B of the backward by CPU time: probe_bwd against main's library (A) and this branch's (B),
# alternating A and B at each shape, `rounds` times. Usage: ab.sh LIB_A LIB_B ROUNDS > ab.txt
# (probe_bwd built by: g++ -O2 -std=c++17 -Iinclude -I. probe_bwd.cpp -L<build> -llongctx).
set -euo pipefail
a=$1 b=$2 rounds=$3
probe=${PROBE:-/tmp/s6attnbwd-probe}
export OMP_WAIT_POLICY=passive
shapes=("16 256 4 2 32 1" "4 1024 4 2 32 1" "1 4096 4 2 32 1"
        "8 512 8 8 64 0" "4 1024 8 8 64 0" "2 2048 8 8 64 0" "1 4096 8 8 64 0"
        "8 512 8 8 64 1" "4 1024 8 8 64 1" "2 2048 8 8 64 1" "1 4096 8 8 64 1")
echo "# $(date -u) $(uptime | sed 's/.*load/load/')"
echo "# lib B T H Hkv D causal best_cpu_s GFLOP/cpu_s best_wall_s sum checksum"
for r in $(seq "$rounds"); do
  for s in "${shapes[@]}"; do
    reps=5; [[ $s == 1\ 4096* ]] && reps=3
    for lib in A B; do
      dir=$a; [[ $lib == B ]] && dir=$b
      echo "$lib $(LD_LIBRARY_PATH=$dir $probe $s $reps)"
    done
  done
  echo "# round $r done $(date -u) $(uptime | sed 's/.*load/load/')"
done
