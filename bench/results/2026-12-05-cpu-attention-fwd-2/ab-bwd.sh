#!/bin/bash
# The backward (and forward) of main's library against step1's (the backward's recomputed P goes
# through the same exp2, now with vscalefps; lazy does not touch the backward), alternating.
# Usage: ab-bwd.sh ROUNDS OUTDIR (run from build-cpu/ab).
set -e
rounds=$1 out=$2
mkdir -p "$out"
export OMP_WAIT_POLICY=passive
for r in $(seq 1 "$rounds"); do
  for v in main step1; do
    echo "== round $r $v $(uptime)" | tee -a "$out/log.txt"
    LD_LIBRARY_PATH=$PWD/$v ./bench_attention --no-naive --json "$out/$v-r$r.json" \
      >> "$out/log.txt" 2>&1
  done
done
echo "== end $(uptime)" | tee -a "$out/log.txt"
