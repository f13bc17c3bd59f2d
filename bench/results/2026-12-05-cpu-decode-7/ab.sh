#!/bin/bash
# Alternating A/B of the small preset's decode: base = main's liblongctx (9608fdb's build-cpu),
# team = this branch's build-cpu, same bench_decode binary (LD_LIBRARY_PATH), both policies.
# usage: ab.sh ROUNDS [bench_decode args...]
cd "$(dirname "$0")/../../.."
rounds=$1; shift
for r in $(seq 1 "$rounds"); do
  for pol in passive unset; do
    for lib in base team; do
      if [ $lib = base ]; then lp=/tmp/s8base; else lp=build-cpu; fi
      echo "== round $r $pol $lib $(uptime)"
      if [ $pol = passive ]; then export OMP_WAIT_POLICY=passive; else unset OMP_WAIT_POLICY; fi
      LD_LIBRARY_PATH=$lp build-cpu/bench/bench_decode "$@" 2>&1 | grep -E "^small|^big|ms/token"
    done
  done
done
