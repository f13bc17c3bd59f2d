#!/bin/sh
# One-shot (--bucket-mb 0) against bucketed gradient sums, 2 ranks, A/B alternating; every run's
# log.jsonl and the load before it go to $OUT (default ./runs). Usage: run.sh LONGCTX ROUNDS
set -e
LONGCTX=${1:-build-cpu/longctx}
ROUNDS=${2:-3}
OUT=${OUT:-runs}
mkdir -p "$OUT"
for round in $(seq 1 "$ROUNDS"); do
  for mb in 0 1 4 25; do
    dir="$OUT/r${round}_mb${mb}"
    rm -rf "$dir"
    echo "round $round bucket-mb $mb $(uptime)" | tee -a "$OUT/load.txt"
    OMP_WAIT_POLICY=passive mpirun -np 2 --oversubscribe --allow-run-as-root "$LONGCTX" train \
      --task mqar --model llama --d-model 384 --pattern '*-*-*-' --vocab 4096 --num-pairs 4 \
      --seq-len 64 --batch 4 --steps 8 --eval-every 0 --eval-sequences 8 --test-sequences 8 \
      --log-every 0 --checkpoint-minutes 0 --bucket-mb "$mb" --out "$dir" > /dev/null 2>&1
  done
done
