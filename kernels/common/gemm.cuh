// Row-major GEMM on CUDA through cuBLASLt, written like the CPU's cblas call so a launcher reads
// the same on both backends:
//
//   C (M, N) = op(A) @ op(B) [+ bias (N), broadcast over rows]
//
// op(A) is (M, K), op(B) is (K, N); A, B, C and bias share `dtype` (f32, bf16 or f16); the
// product accumulates in f32 (CUBLAS_COMPUTE_32F: no TF32, so f32 results match a CPU f32 GEMM
// to rounding), except that f32 operands are rounded to bf16 for tensor cores when the context's
// matmul precision is bf16 (CUBLAS_COMPUTE_32F_FAST_16BF). C is overwritten, never read.
// Ordered on ctx's stream, using its workspace.
#pragma once

#include <cstdint>

#include "longctx/context.h"

namespace longctx::cuda {

void gemm(const Context& ctx, DType dtype, bool trans_a, bool trans_b, int64_t M, int64_t N,
          int64_t K, const void* A, int64_t lda, const void* B, int64_t ldb, void* C, int64_t ldc,
          const void* bias = nullptr);

}  // namespace longctx::cuda
