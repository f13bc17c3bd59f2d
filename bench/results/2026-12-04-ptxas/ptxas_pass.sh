#!/usr/bin/env bash
# Recompiles every kernels/*.cu object of a configured CUDA build directory with its own nvcc
# command plus `-Xptxas -v --keep`, and keeps what ptxas says about each kernel (registers,
# spills, static shared memory, stack), plus the block size that __launch_bounds__ declares
# (.maxntid in the PTX), for resource_table.py. No GPU needed.
#
#   ptxas_pass.sh BUILD_DIR OUT_FILE [JOBS]
#
# BUILD_DIR: a ninja build configured with -DLONGCTX_CUDA=ON (the architectures it was configured
# for are the ones reported). OUT_FILE: the concatenated ptxas output, one "=== <source>" header
# per file. The objects it compiles go to a temporary directory; the build is not touched.
set -euo pipefail

build=${1:?usage: ptxas_pass.sh BUILD_DIR OUT_FILE [JOBS]}
out=${2:?usage: ptxas_pass.sh BUILD_DIR OUT_FILE [JOBS]}
jobs=${3:-2}
build=$(cd "$build" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

targets=$(ninja -C "$build" -t targets all | sed -n 's|^\(CMakeFiles/[^:]*/kernels/[^:]*\.cu\.o\):.*|\1|p')
[ -n "$targets" ] || { echo "no kernels/*.cu objects in $build (configured with CUDA?)" >&2; exit 1; }

n=0
for target in $targets; do
  n=$((n + 1))
  cmd=$(ninja -C "$build" -t commands "$target" | tail -n 1)
  # Same flags, another object path, no dependency file, and ptxas's report.
  cmd=$(printf '%s' "$cmd" | sed -e "s| -o $target| -o $tmp/$n.o|" -e 's| -MD -MT [^ ]* -MF [^ ]*||')
  src=${target#CMakeFiles/*/}
  src=${src%.o}
  mkdir -p "$tmp/keep$n"
  printf '%s\n%s\n' "$src" "$cmd -Xptxas -v --keep --keep-dir $tmp/keep$n" > "$tmp/$n.job"
done

run_one() {
  local job=$1 src cmd
  src=$(sed -n 1p "$job")
  cmd=$(sed -n 2p "$job")
  {
    echo "=== $src"
    (cd "$build" && eval "$cmd") 2>&1
    # "maxntid <kernel> <x*y*z>" for each kernel with __launch_bounds__, from the PTX.
    awk '/^(\.(visible|weak) )?\.entry /{
           for (i = 1; i < NF; i++) if ($i == ".entry") { name = $(i + 1); sub(/\(.*/, "", name) }
         }
         /^\.maxntid /{ gsub(",", ""); print "maxntid", name, $2 * $3 * $4 }' \
      "$(dirname "$job")/keep$(basename "${job%.job}")"/*.ptx | sort -u
  } > "${job%.job}.log"
}
export -f run_one
export build
ls "$tmp"/*.job | xargs -P "$jobs" -I{} bash -c 'run_one {}'
cat "$tmp"/*.log > "$out"
echo "wrote $out ($(grep -c '^=== ' "$out") files)"
