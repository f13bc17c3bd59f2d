#!/bin/sh
# bench_gdn (one thread, KDA gate with --kda, else Gated DeltaNet) with the library before (LIB_A)
# and after (LIB_B), alternating:  LIB_A=<dir> LIB_B=<dir> sh ab2.sh ROUNDS [--kda]
export OMP_WAIT_POLICY=passive
for r in $(seq "$1"); do
  for v in A B; do
    eval lib=\$LIB_$v
    echo "== round $r library $v ($lib) $(uptime)"
    LD_LIBRARY_PATH=$lib build-cpu/bench/bench_gdn --threads 1 --no-crossover $2 |
      grep -E "chunked forward|token loop:|speedup"
  done
done
