#!/usr/bin/env bash
# Regenerates this folder's table from the working tree: ptxas's report of every kernel
# (ptxas_pass.sh), the attention kernels' block sizes and dynamic shared memory from their traits
# (launch_shapes.cu, run on the host), and the table with occupancy (resource_table.py).
#
#   regenerate.sh BUILD_DIR [JOBS]
#
# BUILD_DIR: a build configured with -DLONGCTX_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="90a;80"
# (nothing in it is rebuilt). Writes raw/ptxas.txt, raw/launch.json and table.md. No GPU needed;
# about 25 minutes of compiling on 2 cores.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(git -C "$here" rev-parse --show-toplevel)
build=${1:?usage: regenerate.sh BUILD_DIR [JOBS]}
jobs=${2:-2}
nvcc=${NVCC:-/usr/local/cuda/bin/nvcc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$here/ptxas_pass.sh" "$build" "$here/raw/ptxas.txt" "$jobs"
"$nvcc" -std=c++17 --expt-relaxed-constexpr -arch=sm_80 -I"$root" -I"$root/include" \
  -o "$tmp/launch_shapes" "$here/launch_shapes.cu"
"$tmp/launch_shapes" > "$here/raw/launch.json"
python3 "$here/resource_table.py" "$here/raw/ptxas.txt" "$here/raw/launch.json" > "$here/table.md"
echo "wrote $here/table.md"
