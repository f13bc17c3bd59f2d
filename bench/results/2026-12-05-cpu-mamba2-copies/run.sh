#!/bin/bash
# A/B of two builds of liblongctx.so in one run, alternating: the same step_probe binary with
# each library directory in turn, `rounds` times, `uptime` before each.
#   bash run.sh ROUNDS REPS PRESETS LENGTHS label1=libdir1 label2=libdir2 ...
# (each libdir holds a liblongctx.so.0 copied from a build-cpu). Run from the worktree root.
set -euo pipefail
rounds=$1 reps=$2 presets=$3 lengths=$4
shift 4
probe=${PROBE:-/tmp/s6m2c-step_probe}
for r in $(seq 1 "$rounds"); do
  for pair in "$@"; do
    label=${pair%%=*} dir=${pair#*=}
    echo "# round $r $label: $(uptime)"
    OMP_WAIT_POLICY=passive LD_LIBRARY_PATH="$dir" "$probe" "$presets" "$lengths" "$reps" "$label"
  done
done
