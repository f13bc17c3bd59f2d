#!/usr/bin/env bash
# A/B of two liblongctx copies, alternating (order flipped each round): the prefill probe's
# medians and bench scaling's training tokens/s, for the delta-rule presets.
cd /work/main
export OMP_WAIT_POLICY=passive OMP_NUM_THREADS=2
rounds=${1:-6}; shift
libs=("$@")
for r in $(seq 1 $rounds); do
  order=("${libs[@]}"); if (( r % 2 == 0 )); then order=("${libs[1]}" "${libs[0]}"); fi
  for lib in "${order[@]}"; do
    name=$(basename $lib)
    LD_LIBRARY_PATH=$lib /work/scratch/pf/probe gdn,kimi,qwen3next 1024 5 | grep -E "^##|outside" | sed "s/^/$name r$r /"
    LD_LIBRARY_PATH=$lib ./build-cpu/longctx bench scaling --device cpu --presets gdn,kimi,qwen3next --lengths 1024 --tokens 4096 --repeats 2 --out /tmp/ab_s.json | grep -E "^ +1024|^[a-z]" | sed "s/^/$name r$r /"
  done
  echo "load $(cut -d' ' -f1 /proc/loadavg)"
done
