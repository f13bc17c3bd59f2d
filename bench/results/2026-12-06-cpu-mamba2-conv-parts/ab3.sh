#!/usr/bin/env bash
# A/B of two liblongctx copies, alternating (order flipped each round): the prefill probe's
# medians of 5 and bench scaling's training tokens/s (--repeats 2), for PRESETS at length T.
#   ab3.sh ROUNDS PRESETS T LIB_A LIB_B
cd /work/main
export OMP_WAIT_POLICY=passive OMP_NUM_THREADS=2
rounds=$1 presets=$2 T=$3; shift 3
libs=("$@")
for r in $(seq 1 $rounds); do
  order=("${libs[@]}"); if (( r % 2 == 0 )); then order=("${libs[1]}" "${libs[0]}"); fi
  for lib in "${order[@]}"; do
    name=$(basename $lib)
    LD_LIBRARY_PATH=$lib /work/scratch/pf/probe $presets $T 5 | grep -E "^##|outside" | sed "s/^/$name r$r /"
    LD_LIBRARY_PATH=$lib ./build-cpu/longctx bench scaling --device cpu --presets $presets --lengths $T --tokens 4096 --repeats 2 --out /tmp/ab_s.json | grep -E "^ +$T|^[a-z]" | sed "s/^/$name r$r /"
  done
  echo "load $(cut -d' ' -f1 /proc/loadavg)"
done
