#!/usr/bin/env bash
# MQAR (Multi-Query Associative Recall, Zoology) accuracy of 2-layer attention, Mamba, Mamba-2,
# Hawk, a Mamba-2 + attention hybrid, Gated DeltaNet and a Qwen3-Next-style Gated DeltaNet + gated
# attention hybrid (models/mqar/*.json), trained with `longctx train`.
#
#   bash scripts/mqar.sh            the CPU preset: (L, K) = (64, 4) at d_model 64, 2500 steps,
#                                   attention at lr 3e-3 and the others at 1e-2 (~10 min)
#   bash scripts/mqar.sh full       (64, 4), (128, 8), (256, 16) at d_model 64 and 128, 1500
#                                   steps, each model at lr 3e-3 and 1e-2, each run from scratch
#   bash scripts/mqar.sh curriculum the same settings in order, each run starting from the run of
#                                   the setting before it (same model, width and learning rate;
#                                   `longctx train --init`), each model at its better learning
#                                   rate at (64, 4) — what Zoology's mixture of settings gives its
#                                   models, in stages. From scratch, attention sat on the 1/K
#                                   plateau at (128, 8) for 6000 steps; from the (64, 4) run it
#                                   reached 0.999 in 250.
#
# Zoology's recipe scaled to a 2-core CPU: vocabulary 256 instead of 8192 (the output layer
# dominated the step time), 1500-2500 steps of 4096 tokens from a fresh stream of sequences
# instead of 64 epochs over 100k examples, two learning rates instead of four. Each run's
# directory, results.jsonl (appended to: several invocations make one table) and table.md (the
# best accuracy over the learning rates, per model and setting) go to OUT_DIR.
# Environment: BUILD_DIR, OUT_DIR (bench/results/mqar-latest), MODELS ("attention mamba mamba2
# hawk hybrid gdn qwen3next"), SETTINGS ("L:K ...", by preset), WIDTHS (by preset), LRS (by
# preset), STEPS (by preset), TOKENS_PER_STEP (4096: batch 64 at L = 64, 16 at L = 256), DEVICE
# (auto), THREADS (0: all), PRECISION (f32; bf16 for mixed precision on CUDA), REUSE (1: keep a run that
# finished before, its result.json, instead of training it again), LONGCTX_NO_SETUP (1: do not
# run scripts/setup.sh, e.g. on the GPU lease machine, which has no apt; the lease's packages
# come from CMAKE_PREFIX_PATH).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
out_dir="${OUT_DIR:-$root/bench/results/mqar-latest}"
preset="${1:-cpu}"
[ -d /usr/local/cuda/bin ] && export PATH="/usr/local/cuda/bin:$PATH"

case "$preset" in
  cpu) settings="${SETTINGS:-64:4}" widths="${WIDTHS:-64}" steps="${STEPS:-2500}" ;;
  full | curriculum)
    settings="${SETTINGS:-64:4 128:8 256:16}" widths="${WIDTHS:-64 128}" steps="${STEPS:-1500}" ;;
  *) echo "mqar: unknown preset '$preset' (cpu, full or curriculum)" >&2; exit 2 ;;
esac
models="${MODELS:-attention mamba mamba2 hawk hybrid gdn qwen3next}"
# The learning rates of model $1 at width $2: the CPU preset's (attention 3e-3, the others 1e-2)
# and the curriculum's are the better ones at (64, 4) in the committed 1500-step runs
# (bench/results/2026-11-30-mqar-cpu, and -curriculum for the hybrid at d_model 128).
lrs_for() {
  if [ -n "${LRS:-}" ]; then echo "$LRS"
  elif [ "$preset" = full ]; then echo "3e-3 1e-2"
  elif [ "$preset" = cpu ]; then
    if [ "$1" = attention ]; then echo 3e-3; else echo 1e-2; fi
  elif [ "$2" = 64 ]; then
    case "$1" in attention | hawk) echo 3e-3 ;; *) echo 1e-2 ;; esac
  else
    case "$1" in attention) echo 1e-3 ;; hybrid) echo 3e-3 ;; *) echo 1e-2 ;; esac
  fi
}

bash "$root/scripts/setup.sh"  # returns at once under LONGCTX_NO_SETUP=1
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHS:-90a;80}" >/dev/null
cmake --build "$build" -j "$(nproc)" --target longctx_cli

mkdir -p "$out_dir/runs"
results="$out_dir/results.jsonl"
for d in $widths; do
  previous=""  # the setting before this one, for the curriculum
  for setting in $settings; do
    L="${setting%%:*}" K="${setting##*:}"
    batch=$((${TOKENS_PER_STEP:-4096} / L))  # the same tokens per step at every length
    for model in $models; do
      for lr in $(lrs_for "$model" "$d"); do
        run="$out_dir/runs/$model-L$L-K$K-d$d-lr$lr"
        if [ "${REUSE:-0}" = 1 ] && [ -f "$run/result.json" ]; then
          echo "mqar: $model, L=$L K=$K d_model=$d lr=$lr: kept from before"
          continue
        fi
        init=()
        if [ "$preset" = curriculum ] && [ -n "$previous" ]; then
          init=(--init "$out_dir/runs/$model-L${previous%%:*}-K${previous##*:}-d$d-lr$lr")
        fi
        rm -rf "$run"
        echo "mqar: $model, L=$L K=$K d_model=$d lr=$lr ${init[*]}"
        start=$(date +%s)
        line=$("$build/longctx" train --task mqar --out "$run" --model "$root/models/mqar/$model.json" \
          --d-model "$d" --vocab "${VOCAB:-256}" --seq-len "$L" --num-pairs "$K" \
          --steps "$steps" --batch "$batch" --lr "$lr" --warmup 100 --weight-decay 0.1 \
          --eval-every 250 --eval-sequences 1000 --log-every 250 "${init[@]}" \
          --device "${DEVICE:-auto}" --threads "${THREADS:-0}" --precision "${PRECISION:-f32}")
        seconds=$(($(date +%s) - start))
        echo "$line" > "$run/result.json"
        echo "{\"model\": \"$model\", \"L\": $L, \"K\": $K, \"d_model\": $d, \"lr\": \"$lr\", \"steps\": $steps, \"seconds\": $seconds, \"preset\": \"$preset\", \"result\": $line}" >> "$results"
      done
    done
    previous="$setting"
  done
done

/usr/bin/python3 - "$results" > "$out_dir/table.md" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
models = list(dict.fromkeys(r["model"] for r in rows))
cols = sorted({(r["d_model"], r["L"], r["K"]) for r in rows})
best = {}
for r in rows:
    key = (r["model"], r["d_model"], r["L"], r["K"])
    if key not in best or r["result"]["eval_accuracy"] > best[key]["result"]["eval_accuracy"]:
        best[key] = r
print("| model | " + " | ".join(f"d={d} L={L} K={K}" for d, L, K in cols) + " |")
print("|---" * (len(cols) + 1) + "|")
for m in models:
    cells = []
    for c in cols:
        r = best.get((m, *c))
        cells.append(f'{r["result"]["eval_accuracy"]:.3f} (lr {r["lr"]})' if r else "—")
    print(f"| {m} | " + " | ".join(cells) + " |")
total = sum(r["seconds"] for r in rows)
print(f"\n{len(rows)} runs, {total // 60} min {total % 60} s in all; test accuracy over 1000 "
      "held-out sequences, best over the learning rates tried")
PY
cat "$out_dir/table.md"
