#!/bin/bash
# usage: ab_big.sh ROUNDS; bench_decode (93M model + small preset) alternating the old library
# (/tmp/dec_old) and the new one (build-cpu).
cd /work/wt/decode
for r in $(seq $1); do for v in old new; do
  L=build-cpu; [ $v = old ] && L=/tmp/dec_old
  LD_LIBRARY_PATH=$L build-cpu/bench/bench_decode 2>&1 | grep -E "weights" | sed "s/^/$v /" | cut -c1-120
done; done
uptime
