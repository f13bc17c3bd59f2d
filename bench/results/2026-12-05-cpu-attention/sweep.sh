#!/bin/sh
# A/B in one run: the same bench binary (this branch's bench_attention) against the base
# library (main's attention code) and this branch's, alternating.
cd /tmp/attn_runs
for i in 1 2; do for b in base new; do
  if [ $b = base ]; then lib=/tmp/attn_base; else lib=/tmp/attn_runs; fi
  echo "== $b run $i start $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
  LD_LIBRARY_PATH=$lib OMP_WAIT_POLICY=passive /usr/bin/time -f "%U user %S sys %e wall" ./bench_new --no-naive --json ${b}_$i.json
  echo "== end $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
done; done
