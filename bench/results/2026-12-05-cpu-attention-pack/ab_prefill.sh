#!/bin/bash
# A/B of the llama preset's prefill (and training step) at T = 256: one longctx CLI binary run
# against copies of liblongctx.so (LD_LIBRARY_PATH, which precedes the binary's RUNPATH),
# alternating each round. Usage, from build-cpu/ab: ab_prefill.sh ROUNDS OUTDIR LIB...
set -e
rounds=$1 out=$2
shift 2
mkdir -p "$out"
export OMP_WAIT_POLICY=passive
for r in $(seq 1 "$rounds"); do
  for v in "$@"; do
    echo "== round $r $v $(uptime)" >> "$out/log.txt"
    LD_LIBRARY_PATH=$PWD/$v ../longctx bench scaling --device cpu --presets llama --lengths 256 \
      --tokens 4096 --repeats 7 --out "$out/$v-r$r.json" > /dev/null
  done
done
echo "== end $(uptime)" >> "$out/log.txt"
