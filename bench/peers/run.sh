#!/usr/bin/env bash
# longctx against PyTorch on the CPU, side by side in one run (bench/peers/peers.py says what is
# measured and how). Makes a virtual environment with PyTorch from PyPI if there is none — a
# benchmark dependency only: nothing else in longctx needs Python or PyTorch — builds longctx
# (CPU, Release) and runs. Arguments after it go to peers.py, e.g.
#   bash bench/peers/run.sh --lengths 256,1024 --presets llama --no-compile
#   BUILD_DIR (default build-cpu), OUT_DIR (default bench/results/<UTC date>-cpu-peers),
#   VENV (default .venv-peers), THREADS (default 2)
# PyPI's Linux torch wheel depends on the nvidia-* CUDA wheels (about 5 GB in all) and will not
# import without them; the CPU-only wheels are not on PyPI, so the full install is what this takes.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${BUILD_DIR:-$root/build-cpu}"
out_dir="${OUT_DIR:-$root/bench/results/$(date -u +%F)-cpu-peers}"
venv="${VENV:-$root/.venv-peers}"

if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "torch>=2.4,<3"
fi
cmake -S "$root" -B "$build" -G Ninja -DLONGCTX_CUDA=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j "$(nproc)" --target longctx_cli bench_attention

# Passive OpenMP waiting: spinning threads otherwise take the cores from the other side's work
# on a shared machine (README: 5-10x slower op timings at load average 5).
export OMP_WAIT_POLICY=passive OMP_NUM_THREADS="${THREADS:-2}"
"$venv/bin/python" "$root/bench/peers/peers.py" --build "$build" --out "$out_dir" \
  --threads "${THREADS:-2}" "$@"
