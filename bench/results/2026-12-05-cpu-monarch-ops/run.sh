#!/usr/bin/env bash
# monarch_linear against linear on the CPU (f32, 2048 rows, n = 1024..4096, nblocks 4 and 16,
# best of 3), on one and on two threads, with the machine's load average before and after each.
#   bash bench/results/2026-12-05-cpu-monarch-ops/run.sh   (from a build in build-cpu)
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
here="$root/bench/results/2026-12-05-cpu-monarch-ops"
export OMP_WAIT_POLICY=passive
for threads in 1 2; do
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" > "$here/ops_${threads}thread.txt"
  "$root/build-cpu/bench/bench_monarch" --device cpu --dtype f32 --rows 2048 --reps 3 \
    --threads "$threads" --json "$here/ops_${threads}thread.json" >> "$here/ops_${threads}thread.txt"
  echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$here/ops_${threads}thread.txt"
done
# The widths of the quality runs' MLPs (d_model 128: 128 -> 384 -> 128), where the blocks are
# 32 x 32 to 128 x 128: small_n_1thread.*.
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" > "$here/small_n_1thread.txt"
"$root/build-cpu/bench/bench_monarch" --device cpu --dtype f32 --sizes 128,256,384,512 --blocks 4 \
  --rows 4096 --reps 5 --threads 1 --json "$here/small_n_1thread.json" >> "$here/small_n_1thread.txt"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$here/small_n_1thread.txt"
