#!/bin/bash
# Before/after A/B of the llama training-step profile: the same longctx binary run against two
# builds of liblongctx.so.0 (in $LIBS/before: main; $LIBS/after: this branch), alternating,
# $ROUNDS rounds (default 2).
#   LIBS=/tmp/libs OUT=bench/results/2026-12-05-cpu-train-2 bash ab.sh   (from the repo root)
set -u
for round in $(seq 1 "${ROUNDS:-2}"); do
  for v in before after; do
    echo "== $v round $round $(date -u +%T) $(uptime | sed 's/.*load/load/')"
    LD_LIBRARY_PATH="$LIBS"/$v OMP_WAIT_POLICY=passive build-cpu/longctx bench scaling \
      --device cpu --presets llama --lengths 256 1024 4096 --profile --repeats 1 \
      --out "$OUT"/prof-$v-$round.json > "$OUT"/prof-$v-$round.txt 2>&1
    echo "   done $(date -u +%T) $(uptime | sed 's/.*load/load/')"
  done
done
