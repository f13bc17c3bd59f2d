#!/bin/sh
# bench_decode with the library before (LIB_A) and after (LIB_B) the change, alternating.
#   LIB_A=/path/to/old/lib LIB_B=/path/to/new/lib sh ab.sh ROUNDS > ab.txt
# (each a folder holding liblongctx.so.0; bench_decode from build-cpu, OMP_WAIT_POLICY unset)
for r in $(seq "$1"); do
  for v in A B; do
    eval lib=\$LIB_$v
    echo "== round $r library $v ($lib) $(uptime)"
    LD_LIBRARY_PATH=$lib build-cpu/bench/bench_decode --tokens 40 | grep -E "f32|bf16"
  done
done
