#!/usr/bin/env bash
# Builds longctx and runs the whole test suite: `bash scripts/test.sh`.
# Installs what is missing first (scripts/setup.sh). The CUDA backend is compiled whenever nvcc is
# found; tests that need a GPU skip, printing why, on a machine without one.
#   BUILD_DIR=build        where to build
#   LONGCTX_CUDA=AUTO      AUTO | ON | OFF
#   CUDA_ARCHS="90a;80"    architectures to compile kernels for
#   SANITIZE=              e.g. address,undefined (host code; use with LONGCTX_CUDA=OFF)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
[ -d /usr/local/cuda/bin ] && export PATH="/usr/local/cuda/bin:$PATH"

bash "$root/scripts/setup.sh"
cmake -S "$root" -B "$build" -G Ninja \
  -DLONGCTX_CUDA="${LONGCTX_CUDA:-AUTO}" \
  -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHS:-90a;80}" \
  -DLONGCTX_SANITIZE="${SANITIZE:-}" \
  -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}"
cmake --build "$build" -j "$(nproc)"
cd "$build"
# ctest runs one test process per core and each uses every core, so OpenMP threads outnumber the
# cores; spinning at barriers then made the model gradient tests 25-300x slower (84 ms -> 30 s),
# and waiting passively avoids that.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
ctest --output-on-failure -j "$(nproc)"
