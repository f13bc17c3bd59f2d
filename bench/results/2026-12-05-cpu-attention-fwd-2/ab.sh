#!/bin/bash
# A/B/C of the CPU attention forward: one bench_attention binary (this branch's build) run
# against three copies of liblongctx.so (LD_LIBRARY_PATH), alternating, forward only, the
# default sweep. main = 2dff8f4, step1 = ebdfdb3 (row max 4 chains + vscalefps exp2),
# lazy = step1 + lazy rescaling. Usage: ab.sh ROUNDS OUTDIR (run from build-cpu/ab).
set -e
rounds=$1 out=$2
mkdir -p "$out"
export OMP_WAIT_POLICY=passive
for r in $(seq 1 "$rounds"); do
  for v in main step1 lazy; do
    echo "== round $r $v $(uptime)" | tee -a "$out/log.txt"
    LD_LIBRARY_PATH=$PWD/$v ./bench_attention --no-bwd --no-naive --json "$out/$v-r$r.json" \
      >> "$out/log.txt" 2>&1
  done
done
echo "== end $(uptime)" | tee -a "$out/log.txt"
