#!/bin/bash
# ab.sh with PyTorch's SDPA as one more "library" (sdpa_probe.py, the peers venv), alternating
# with the probe on each longctx build. Usage, from build-cpu/ab: ab_sdpa.sh ROUNDS OUTDIR LIB...
set -e
rounds=$1 out=$2
shift 2
here=$(dirname "$(readlink -f "$0")")
mkdir -p "$out"
export OMP_WAIT_POLICY=passive OMP_NUM_THREADS=2
for r in $(seq 1 "$rounds"); do
  for v in "$@" sdpa; do
    echo "== round $r $v $(uptime)" >> "$out/log.txt"
    if [ "$v" = sdpa ]; then
      ../../.venv-peers/bin/python "$here/sdpa_probe.py" 3 > "$out/$v-r$r.txt"
    else
      LD_LIBRARY_PATH=$PWD/$v ./probe 3 > "$out/$v-r$r.txt"
    fi
  done
done
echo "== end $(uptime)" >> "$out/log.txt"
