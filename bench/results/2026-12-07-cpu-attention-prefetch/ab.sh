#!/bin/bash
# attn_ab at every point, both orders: ab.sh BASE_DIR NEW_DIR ROUNDS REPS (each dir holds a
# liblongctx.so.0; attn_ab built against either: it resolves the linked one by LD_LIBRARY_PATH).
set -e
base=$1 new=$2 rounds=${3:-6} reps=${4:-5}
export OMP_WAIT_POLICY=passive
for pt in 0 1 2 3 4 5 6 7 8; do
  echo "== point $pt, A = base (dlopen), B = new (linked); uptime: $(uptime | sed 's/.*load/load/')"
  LD_LIBRARY_PATH=$new ./attn_ab $base/liblongctx.so.0 $rounds $reps $pt
  echo "== point $pt, A = new (dlopen), B = base (linked); uptime: $(uptime | sed 's/.*load/load/')"
  LD_LIBRARY_PATH=$base ./attn_ab $new/liblongctx.so.0 $rounds $reps $pt
done
