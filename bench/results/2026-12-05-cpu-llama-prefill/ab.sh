#!/bin/bash
# A/B of the llama prefill (T = 256, B = 16): one probe binary
# (../2026-12-05-cpu-llama-step/prefill_profile.cpp) against library copies by LD_LIBRARY_PATH,
# alternating, with the OpenMP region count of each run (count_regions.c of
# ../2026-12-05-cpu-decode-6) and the per-op profile.
#   bash ab.sh ROUNDS PROBE COUNT_REGIONS_SO LIB_DIR...
# (ab-run-1.txt: an earlier form, two libraries, T = 256 and 1024, no per-op lines.)
rounds=$1 probe=$2 counter=$3
shift 3
export OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive
for r in $(seq 1 "$rounds"); do
  for dir in "$@"; do
    echo "== round $r $(basename "$dir") $(uptime)"
    LD_PRELOAD=$counter LD_LIBRARY_PATH=$dir "$probe" llama 256 10 2>&1 | grep -E "^##|^op |count_regions"
  done
done
