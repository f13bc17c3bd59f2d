#!/usr/bin/env bash
# MQAR (Multi-Query Associative Recall, Zoology) accuracy of 2-layer attention, Mamba, Mamba-2,
# Hawk and a Mamba-2 + attention hybrid (models/mqar/*.json), trained with `longctx train`.
#
#   bash scripts/mqar.sh            the CPU preset: (L, K) = (64, 4) at d_model 64, a few minutes
#   bash scripts/mqar.sh full       (64, 4), (128, 8), (256, 16) at d_model 64 and 128
#
# Zoology's recipe scaled to a 2-core CPU: vocabulary 256 instead of 8192 (the output layer
# dominated the step time), a fresh stream of training sequences instead of 100k examples for 64
# epochs, one learning rate instead of the best of four. Writes every run's directory, a
# results.jsonl and a Markdown table (table.md) under OUT_DIR (default bench/results/mqar-latest).
# Environment: BUILD_DIR, OUT_DIR, MODELS ("attention mamba mamba2 hawk hybrid"), VOCAB (256),
# LR (3e-3), STEPS (1500), TOKENS_PER_STEP (4096: batch 64 at L = 64, 16 at L = 256),
# DEVICE (auto), THREADS (0: all).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
out_dir="${OUT_DIR:-$root/bench/results/mqar-latest}"
preset="${1:-cpu}"
[ -d /usr/local/cuda/bin ] && export PATH="/usr/local/cuda/bin:$PATH"

case "$preset" in
  cpu) settings=("64 4") widths=(64) ;;
  full) settings=("64 4" "128 8" "256 16") widths=(64 128) ;;
  *) echo "mqar: unknown preset '$preset' (cpu or full)" >&2; exit 2 ;;
esac
models=(${MODELS:-attention mamba mamba2 hawk hybrid})

bash "$root/scripts/setup.sh"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHS:-90a;80}" >/dev/null
cmake --build "$build" -j "$(nproc)" --target longctx_cli

mkdir -p "$out_dir/runs"
results="$out_dir/results.jsonl"
: > "$results"
for d in "${widths[@]}"; do
  for setting in "${settings[@]}"; do
    read -r L K <<< "$setting"
    batch=$((${TOKENS_PER_STEP:-4096} / L))  # the same tokens per step at every length
    for model in "${models[@]}"; do
      run="$out_dir/runs/$model-L$L-K$K-d$d"
      rm -rf "$run"
      echo "mqar: $model, L=$L K=$K d_model=$d"
      start=$(date +%s)
      line=$("$build/longctx" train --task mqar --out "$run" --model "$root/models/mqar/$model.json" \
        --d-model "$d" --vocab "${VOCAB:-256}" --seq-len "$L" --num-pairs "$K" \
        --steps "${STEPS:-1500}" --batch "$batch" --lr "${LR:-3e-3}" --warmup 100 \
        --weight-decay 0.1 --eval-every 250 --eval-sequences 1000 --log-every 250 \
        --device "${DEVICE:-auto}" --threads "${THREADS:-0}")
      seconds=$(($(date +%s) - start))
      echo "{\"model\": \"$model\", \"L\": $L, \"K\": $K, \"d_model\": $d, \"seconds\": $seconds, \"result\": $line}" >> "$results"
    done
  done
done

/usr/bin/python3 - "$results" "${models[@]}" > "$out_dir/table.md" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
models = sys.argv[2:]
cols = sorted({(r["L"], r["K"], r["d_model"]) for r in rows})
acc = {(r["model"], r["L"], r["K"], r["d_model"]): r["result"]["eval_accuracy"] for r in rows}
print("| model | " + " | ".join(f"L={L} K={K} d={d}" for L, K, d in cols) + " |")
print("|---" * (len(cols) + 1) + "|")
for m in models:
    print(f"| {m} | " + " | ".join(f"{acc[(m, *c)]:.3f}" for c in cols) + " |")
total = sum(r["seconds"] for r in rows)
print(f"\n{len(rows)} runs, {total // 60} min {total % 60} s in all")
EOF
cat "$out_dir/table.md"
