#!/usr/bin/env bash
# The main job: `bash scripts/run.sh`. Installs what is missing, builds, and runs the
# length-scaling comparison (`longctx bench scaling`) on the best device present — the GPU if
# there is one, else the CPU — then turns its JSON into PNG plots.
# Extra arguments go to the benchmark (e.g. --lengths 512,1024 --presets llama,hybrid).
#   BUILD_DIR (default build), OUT_DIR (default bench/results/latest)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
out_dir="${OUT_DIR:-$root/bench/results/latest}"
[ -d /usr/local/cuda/bin ] && export PATH="/usr/local/cuda/bin:$PATH"

bash "$root/scripts/setup.sh"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHS:-90a;80}" >/dev/null
cmake --build "$build" -j "$(nproc)" --target longctx_cli

"$build/longctx" info
mkdir -p "$out_dir"
(cd "$root" && "$build/longctx" bench scaling --out "$out_dir/scaling.json" "$@")
# Debian's matplotlib lives with the system interpreter.
if /usr/bin/python3 -c "import matplotlib" 2>/dev/null; then
  /usr/bin/python3 "$root/bench/plot.py" "$out_dir/scaling.json"
else
  echo "run: matplotlib not found for /usr/bin/python3; skipping the plots"
fi
