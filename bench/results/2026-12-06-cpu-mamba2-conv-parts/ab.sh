#!/usr/bin/env bash
# A/B of two liblongctx copies (folders holding liblongctx.so.0), alternating, the order flipped
# every round: the prefill probe (../2026-12-05-cpu-prefill-profile/prefill_profile.cpp, built
# as /work/scratch/pf/probe) at PROBE_LENGTHS, median of PROBE_REPS, and `bench scaling`'s
# training tokens/s at SCALING_T with SCALING_REPS repeats, for PRESETS (4096 tokens a batch).
#   ab.sh ROUNDS PRESETS PROBE_LENGTHS PROBE_REPS SCALING_T SCALING_REPS LIB_A LIB_B
# This folder's runs: ab.txt     = ab.sh 6 mamba2,hybrid 256,1024 7 256 3 b647 m2new
#                     ab-2.txt   = ab.sh 6 gdn,kimi,qwen3next 1024 5 1024 2 b647 dnnew
#                     ab-3.txt   = ab.sh 6 hawk,griffin 1024 5 1024 2 b647 rgnew
cd /work/main
export OMP_WAIT_POLICY=passive OMP_NUM_THREADS=2
rounds=$1 presets=$2 probe_lengths=$3 probe_reps=$4 T=$5 reps=$6
libs=("$7" "$8")
for r in $(seq 1 "$rounds"); do
  order=("${libs[@]}")
  if ((r % 2 == 0)); then order=("${libs[1]}" "${libs[0]}"); fi
  for lib in "${order[@]}"; do
    name=$(basename "$lib")
    LD_LIBRARY_PATH=$lib /work/scratch/pf/probe "$presets" "$probe_lengths" "$probe_reps" |
      grep -E "^##|outside" | sed "s/^/$name r$r /"
    LD_LIBRARY_PATH=$lib ./build-cpu/longctx bench scaling --device cpu --presets "$presets" \
      --lengths "$T" --tokens 4096 --repeats "$reps" --out /tmp/ab_s.json |
      grep -E "^ +$T|^[a-z]" | sed "s/^/$name r$r /"
  done
  echo "load $(cut -d' ' -f1 /proc/loadavg)"
done
