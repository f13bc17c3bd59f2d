// The projections' GEMM at a small inner dimension, y = x · wᵀ [+ bias] (the forward) or
// y = x · w (the backward's dx = dy · W) in f32, by register-blocked AVX-512 / AVX2 kernels
// (chosen at run time, src/cpu/isa.h) instead of OpenBLAS. At K = 128 (a d_model 128 model's q,
// k, v, gate, up and head) OpenBLAS spends a third of its time outside its kernel: it packs x
// again for every call (sgemm_oncopy) and clears y before accumulating (a memset inside
// sgemm_tn; bench/results/2026-12-05-cpu-prefill-profile, item 3). Here w is packed once per
// call into column panels (it is small: N x K), x is read in place (its rows are K contiguous
// floats) and y is written once.
#pragma once

#include <cstdint>
#include <memory>

#include "longctx/context.h"
#include "src/cpu/isa.h"

namespace longctx::cpu {

// Whether the kernels are built in and faster than OpenBLAS for y (M, N) = x (M, K) · w (see
// the .cpp for the measured bounds).
bool use_small_k_gemm(int64_t M, int64_t N, int64_t K);

// A weight packed for the tiles of cpu_isa() (at construction). Every y[m][n] it computes is
// bias[n] (or 0) followed by FMAs over k in increasing order: the same bits with either ISA, any
// blocking of the rows and any thread count.
class SmallKWeight {
 public:
  // w is (N, K) for y = x · wᵀ, or with `transposed` (K, N) for y = x · w; bias (N) or null.
  // Only where use_small_k_gemm says so.
  SmallKWeight(int64_t N, int64_t K, const float* w, bool transposed, const float* bias);
  // y rows [m0, m1) = x rows [m0, m1) times the weight [+ bias], on the calling thread; x is
  // (rows, K) and y (rows, N), both contiguous; y is not read.
  void rows(const float* x, int64_t m0, int64_t m1, float* y) const;

 private:
  int64_t N_, K_;
  CpuIsa isa_;
  std::unique_ptr<float, void (*)(void*)> pack_;  // the panels, then the padded bias
  float* bias_ = nullptr;
};

// y (M, N) = x (M, K) · w (N, K)ᵀ [+ bias (N)], every operand contiguous row-major; y is not
// read. w packed once (on the calling thread), then blocks of rows across the context's threads
// (each its share, then what is left of the others').
void small_k_gemm(const Context& ctx, int64_t M, int64_t N, int64_t K, const float* x,
                  const float* w, const float* bias, float* y);

}  // namespace longctx::cpu
