#!/bin/bash
# A/B of the CPU attention forward: one probe binary (fwd_probe.cpp) run against copies of
# liblongctx.so (LD_LIBRARY_PATH), alternating each round. Usage, from build-cpu/ab (holding the
# probe and one folder per library): ab.sh ROUNDS OUTDIR LIB...
set -e
rounds=$1 out=$2
shift 2
mkdir -p "$out"
export OMP_WAIT_POLICY=passive
for r in $(seq 1 "$rounds"); do
  for v in "$@"; do
    echo "== round $r $v $(uptime)" >> "$out/log.txt"
    LD_LIBRARY_PATH=$PWD/$v ./probe 3 > "$out/$v-r$r.txt"
  done
done
echo "== end $(uptime)" >> "$out/log.txt"
