#!/usr/bin/env bash
# The main job: `bash scripts/run.sh`. Installs what is missing, builds, and runs the
# length-scaling comparison on the best device present (the GPU if there is one, else the CPU).
# Extra arguments go to the benchmark. BUILD_DIR (default build) picks the build directory.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
[ -d /usr/local/cuda/bin ] && export PATH="/usr/local/cuda/bin:$PATH"

bash "$root/scripts/setup.sh"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHS:-90a;80}" >/dev/null
cmake --build "$build" -j "$(nproc)" --target longctx_cli

"$build/longctx" info
