#!/bin/bash
# A/B(/C) of builds of liblongctx.so in one run, alternating: the same step_probe binary with
# each library directory in turn, `rounds` times, `uptime` before each.
#   bash run.sh ROUNDS REPS label1=libdir1 label2=libdir2 ...
# (each libdir holds a liblongctx.so.0 copied from a build-cpu). Run from the worktree root.
set -euo pipefail
rounds=$1 reps=$2
shift 2
probe=${PROBE:-/tmp/s5m2-step_probe}
for r in $(seq 1 "$rounds"); do
  for pair in "$@"; do
    label=${pair%%=*} dir=${pair#*=}
    echo "# round $r $label: $(uptime)"
    OMP_WAIT_POLICY=passive LD_LIBRARY_PATH="$dir" "$probe" hybrid,mamba2 256,1024,4096 "$reps" "$label"
  done
done
