#!/usr/bin/env bash
# longctx's training and prefill speed on OpenBLAS's Prescott (SSE3) kernels against the kernels
# longctx now chooses (src/cpu/blas.cpp), one binary, alternating round by round.
#   bash ab.sh ROUNDS OUT_DIR [BUILD_DIR]
set -euo pipefail
rounds=$1 out=$2 build=${3:-build-cpu}
mkdir -p "$out"
export OMP_WAIT_POLICY=passive OMP_NUM_THREADS=2
for r in $(seq "$rounds"); do
  for preset in llama hybrid mamba2; do
    for T in 256 4096; do
      for core in Prescott chosen; do
        f="$out/$preset-$T-$core-$r.json"
        if [ "$core" = Prescott ]; then env=(OPENBLAS_CORETYPE=Prescott); else env=(); fi
        echo "$(date -u +%T) round $r $preset T=$T $core load $(cut -d' ' -f1 /proc/loadavg)" >> "$out/log.txt"
        env "${env[@]}" "$build/longctx" bench scaling --device cpu --presets "$preset" \
          --lengths "$T" --tokens 4096 --repeats 3 --out "$f" > /dev/null
      done
    done
  done
done
