#!/bin/bash
# alternate old and the variants given after threads rounds reps
export OMP_WAIT_POLICY=passive
t=$1; n=$2; reps=$3; shift 3
for r in $(seq 1 $n); do
  for v in old "$@"; do
    echo "## round $r $v threads $t load $(cut -d' ' -f1-3 /proc/loadavg)"
    LD_LIBRARY_PATH=/tmp/gemm_$v /tmp/gemm_probe $t $reps
  done
done
