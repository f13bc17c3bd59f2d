#!/bin/bash
# A/B of the training step and prefill: main's binary (A) and this branch's (B), alternated
# round by round so both see the same load; each run writes its own JSON.
# Usage: ab.sh A_DIR B_DIR PRESETS_DIR OUT_DIR FIRST_ROUND LAST_ROUND
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
      --lengths 256 4096 --repeats 3 --presets-dir "$PRESETS" --out "$OUT/$side-$r.json" \
      >"$OUT/$side-$r.log" 2>&1
  done
done
