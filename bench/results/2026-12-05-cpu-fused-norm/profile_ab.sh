#!/bin/bash
# The same A/B as ab.sh, but one --profile training step per point: its per-op CPU times show
# the residual adds and norms in place, which the whole step's CPU time (noise of a few % under
# load) cannot resolve. Usage: profile_ab.sh A_DIR B_DIR PRESETS_DIR OUT_DIR FIRST LAST
set -euo pipefail
A=$1 B=$2 PRESETS=$3 OUT=$4 FIRST=$5 LAST=$6
mkdir -p "$OUT"
export OMP_WAIT_POLICY=passive
for r in $(seq "$FIRST" "$LAST"); do
  for side in A B; do
    dir=$A
    [ "$side" = B ] && dir=$B
    uptime >>"$OUT/load.txt"
    LD_LIBRARY_PATH=$dir "$dir/longctx" bench scaling --device cpu --presets llama hybrid mamba2 \
      --lengths 256 4096 --repeats 1 --profile --presets-dir "$PRESETS" \
      --out "$OUT/$side-$r.json" >"$OUT/$side-$r.log" 2>&1
  done
done
