#!/bin/sh
# Makes the probe's two renamed copies (old: the base commit's small_k_gemm, new: the worktree's)
# and builds it. From the worktree root, after `cmake --build build-cpu --target longctx`.
set -e
D=bench/results/2026-12-06-cpu-small-k-gemm
BASE=${BASE:-e102004}
O=/tmp/skg_probe; mkdir -p $O
for v in old new; do
  if [ $v = old ]; then git show $BASE:src/cpu/small_k_gemm.h > $O/h; git show $BASE:src/cpu/small_k_gemm.cpp > $O/c
  else cp src/cpu/small_k_gemm.h $O/h; cp src/cpu/small_k_gemm.cpp $O/c; fi
  sed "s/namespace longctx::cpu {/namespace longctx::cpu_$v { using namespace longctx::cpu;/" $O/h > $O/${v}_small_k_gemm.h
  sed -e "s/namespace longctx::cpu {/namespace longctx::cpu_$v {/" -e "s#src/cpu/small_k_gemm.h#${v}_small_k_gemm.h#" $O/c > $O/${v}_small_k_gemm.cpp
done
g++ -O3 -march=x86-64-v3 -std=c++17 -fopenmp -I. -Iinclude -I$O $D/gemm_ab_probe.cpp $O/old_small_k_gemm.cpp $O/new_small_k_gemm.cpp \
  -Lbuild-cpu -llongctx -Wl,-rpath,$PWD/build-cpu -o /tmp/gemm_ab_probe
