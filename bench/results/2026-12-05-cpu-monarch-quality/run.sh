#!/usr/bin/env bash
# The quality runs of this directory: llama vs llama-monarch at equal width and at equal
# parameter count, on byte-level text (fortunes) and on MQAR, each run on one CPU thread, two
# lanes at a time (the machine is shared). README.md gives the commit each run was made at.
#   bash bench/results/2026-12-05-cpu-monarch-quality/run.sh LANE   (LANE = a, b or hybrid)
# BIN: a directory holding the longctx binary and liblongctx.so (copied out of the build
# directory so that rebuilding does not change a run midway). The runs land in $RUNS; the
# committed runs/ holds their options.json, result.json and gzipped log.jsonl.
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
here="$root/bench/results/2026-12-05-cpu-monarch-quality"
bin="${BIN:-$root/out/bin}"
runs="${RUNS:-$root/out/monarch-runs}"
export LD_LIBRARY_PATH="$bin" OMP_WAIT_POLICY=passive
mkdir -p "$runs"

text() {  # name model: README's fortunes recipe (1000 steps of 16 x 256 bytes, lr 3e-3)
  "$bin/longctx" train --task text --model "$2" --batch 16 --steps 1000 --lr 3e-3 \
    --eval-sequences 256 --threads 1 --log-every 100 --out "$runs/text-$1" > "$runs/text-$1.out"
}
mqar() {  # config lr: (L, K) = (64, 4), d_model 64, 1500 steps of 64 x 64 tokens
  "$bin/longctx" train --task mqar --model "$here/configs/$1.json" --vocab 256 --seq-len 64 \
    --num-pairs 4 --steps 1500 --batch 64 --lr "$2" --warmup 100 --weight-decay 0.1 \
    --eval-every 250 --eval-sequences 1000 --threads 1 --log-every 250 \
    --out "$runs/$1" > "$runs/$1.out"
}

case "${1:-}" in
  a) text llama llama
     text llama-monarch-h1408 "$here/configs/llama-monarch-h1408.json"
     mqar mqar-attention-mlp 3e-3 ;;
  b) text llama-monarch llama-monarch
     mqar mqar-attention-monarch 3e-3
     mqar mqar-attention-monarch-h704 3e-3 ;;
  hybrid) mqar mqar-hybrid-mlp 1e-2 & mqar mqar-hybrid-monarch 1e-2; wait ;;
  *) echo "usage: run.sh a|b|hybrid" >&2; exit 2 ;;
esac
