#!/usr/bin/env bash
# Training throughput of the three text models at the commit in README.md, measured apart from the
# quality runs (whose per-step rates swing 2-5x with the machine's load): 12 steps of 16 x 256
# bytes on one thread each, the models interleaved, twice. Reports per model the CPU time of the
# whole process (user + sys: what the run consumed, whatever else held the cores) and the best
# per-step wall rate from its log.
#   BIN=<dir with longctx> bash bench/results/2026-12-05-cpu-monarch-quality/throughput.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
here="$root/bench/results/2026-12-05-cpu-monarch-quality"
bin="${BIN:-$root/build-cpu}"
tmp="$(mktemp -d)"
export LD_LIBRARY_PATH="$bin" OMP_WAIT_POLICY=passive
steps=12
for rep in 1 2; do
  for m in llama llama-monarch "$here/configs/llama-monarch-h1408.json"; do
    name="$(basename "$m" .json)"
    out="$tmp/$name-$rep"
    /usr/bin/time -f "%U %S %e" -o "$out.time" "$bin/longctx" train --task text --model "$m" \
      --batch 16 --steps $steps --lr 3e-3 --eval-every 0 --eval-sequences 16 --threads 1 \
      --log-every 0 --out "$out" > /dev/null
    python3 - "$name" "$rep" "$out" $steps <<'PY'
import json, sys
name, rep, out, steps = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
user, sys_s, wall = map(float, open(out + ".time").read().split())
rows = [json.loads(l) for l in open(out + "/log.jsonl") if '"tokens_per_s"' in l]
tokens = steps * 16 * 256
print(json.dumps({"model": name, "rep": rep, "steps": steps, "tokens": tokens, "cpu_s": user + sys_s,
                  "wall_s": wall, "tokens_per_cpu_s": tokens / (user + sys_s),
                  "best_step_tokens_per_s": max(r["tokens_per_s"] for r in rows[1:])}))
PY
  done
done
rm -rf "$tmp"
