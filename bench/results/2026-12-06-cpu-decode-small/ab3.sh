#!/bin/bash
# usage: ab3.sh ROUNDS TOKENS; alternates old lib, new lib with XP_NOTWO (rope memo only), new lib
cd /work/wt/decode
R=$1; N=$2; shift 2
for r in $(seq $R); do for v in old rope new; do
  L=build-cpu; E=""
  [ $v = old ] && L=/tmp/dec_old
  [ $v = rope ] && E="XP_NOTWO=1"
  out=$(env $E LD_LIBRARY_PATH=$L build-cpu/bench/bench_decode --layers 0 --tokens $N "$@" | grep small)
  echo "$v $(echo "$out" | awk '{printf "%s med %s best %s cpumed %s | ", $7, $13, $16, $21}')"
done; done
uptime
