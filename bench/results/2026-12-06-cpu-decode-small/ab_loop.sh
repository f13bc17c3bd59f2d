#!/bin/bash
# usage: ab_loop.sh ROUNDS; decode_loop (T = 256..296, 50 rounds of 40 steps) alternating the
# old library (/tmp/dec_old: e102004) and the new one (build-cpu).
cd /work/wt/decode
for r in $(seq $1); do for w in f32 bf16; do for v in old new; do
  L=build-cpu; [ $v = old ] && L=/tmp/dec_old
  echo "$v $(LD_LIBRARY_PATH=$L /tmp/dloop models/presets/llama.json $w 50 40)"
done; done; done
uptime
