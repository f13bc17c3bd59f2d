#!/usr/bin/env bash
# longctx train --task text on fortunes: packed documents (--pack) against windows across them
# (--no-pack), same steps, model and budget (16 x 256 bytes a step), one CPU thread each. The two
# modes (and the padded shape, below) alternate in ROUNDS rounds so that the machine's load, which
# changes by the minute on a shared host, falls on all of them alike. Each run's CPU time
# (/usr/bin/time: user + sys of the one-thread process, start-up, one 8-sequence evaluation and
# the final checkpoint included) is what summarize.py compares: on a host at load average 15 a
# step's wall time moved by 2x between rounds, its CPU time far less. The per-step wall times of
# log.jsonl are kept beside it.
#
# "padded": the shape a batch needs when each document gets its own row, padded to 256: as many
# rows as the packed steps hold documents (their median, DOCS below). Its step is timed as a
# --no-pack step of DOCS rows (a step's work does not depend on the token values).
#
# Usage: bash run.sh BUILD_DIR_OR_BINARY OUT_DIR [ROUNDS] [STEPS]
set -euo pipefail
bin=${1:?longctx binary}
out=${2:?output directory}
rounds=${3:-3}
steps=${4:-40}
mkdir -p "$out"
common=(train --task text --model llama --seq-len 256 --lr 3e-3
        --warmup 10 --threads 1 --log-every 0 --eval-every 0 --eval-sequences 8
        --checkpoint-minutes 0)
# timed NAME OPTIONS...: one run in $out/NAME, its wall, user and sys seconds in time-NAME.txt.
timed() { /usr/bin/time -f '%e %U %S' -o "$out/time-$1.txt" env OMP_WAIT_POLICY=passive "$bin" \
  "${common[@]}" --steps "$steps" --out "$out/$1" "${@:2}" > /dev/null; }
for r in $(seq 1 "$rounds"); do
  rm -rf "$out/pack-$r" "$out/nopack-$r"
  timed "pack-$r" --batch 16 --pack
  timed "nopack-$r" --batch 16 --no-pack
  docs=$(python3 -c "
import json, statistics
print(round(statistics.median(json.loads(l)['documents'] for l in open('$out/pack-$r/log.jsonl')
                               if 'documents' in l)))")
  rm -rf "$out/padded-$r"
  timed "padded-$r" --batch "$docs" --no-pack
  echo "round $r done ($(date -u +%H:%M:%S), load: $(cut -d' ' -f1-3 /proc/loadavg))"
done
