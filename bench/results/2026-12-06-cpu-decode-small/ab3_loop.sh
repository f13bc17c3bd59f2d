#!/bin/bash
# usage: ab3_loop.sh ROUNDS; decode_loop (T = 256..296, 50 rounds of 40 steps) alternating the
# old library (/tmp/dec_old), the new one with XP_NOTWO=1 (rope memo only), the new one.
cd /work/wt/decode
for r in $(seq $1); do for w in f32 bf16; do for v in old rope new; do
  L=build-cpu; E=""
  [ $v = old ] && L=/tmp/dec_old
  [ $v = rope ] && E="XP_NOTWO=1"
  echo "$v $(env $E LD_LIBRARY_PATH=$L /tmp/dloop models/presets/llama.json $w 50 40)"
done; done; done
uptime
