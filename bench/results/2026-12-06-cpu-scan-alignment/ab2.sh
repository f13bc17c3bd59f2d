#!/bin/bash
# alternate old and $4, args: threads rounds reps variant
export OMP_WAIT_POLICY=passive
for r in $(seq 1 $2); do
  for v in old $4; do
    echo "## round $r $v threads $1 load $(cut -d' ' -f1-3 /proc/loadavg)"
    LD_LIBRARY_PATH=/tmp/gemm_$v /tmp/gemm_probe $1 $3
  done
done
