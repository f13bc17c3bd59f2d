#!/bin/sh
# The A/B sweep: base (main 84a19c0's library, /tmp/attnfwd_base) and new (this branch's at
# 74c249d, /tmp/attnfwd_runs/lib_new) alternating twice, the same bench binary (bench/ is the same
# on both). Output: sweep.txt, {base,new}_{1,2}.json.
cd /tmp/attnfwd_runs
for i in 1 2; do for b in base new; do
  if [ $b = base ]; then lib=/tmp/attnfwd_base; else lib=/tmp/attnfwd_runs/lib_new; fi
  echo "== $b run $i start $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
  LD_LIBRARY_PATH=$lib OMP_WAIT_POLICY=passive /usr/bin/time -f "%U user %S sys %e wall" \
    /work/wt/attnfwd/build-ab/bench/bench_attention --no-naive --json ${b}_$i.json "$@" 2>&1 |
    grep -v "^attention\|wrote"
done; done
