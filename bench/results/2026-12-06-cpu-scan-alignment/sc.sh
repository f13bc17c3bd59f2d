#!/bin/bash
export OMP_WAIT_POLICY=passive OMP_NUM_THREADS=${THREADS:-2}
for r in $(seq 1 $1); do
  for v in old new new2; do
    echo "## round $r $v load $(cut -d' ' -f1-3 /proc/loadavg)"
    LD_LIBRARY_PATH=/tmp/gemm_$v /usr/bin/time -f "proc cpu %U+%S s wall %e s" /work/wt/gemm/build-cpu/longctx bench scaling --device cpu --presets mamba,mamba2 --lengths 1024 --tokens 4096 --repeats 5 --out /tmp/gemm_sc_$v_$r.json 2>&1 | grep -E "^ +1024|proc cpu"
  done
done
