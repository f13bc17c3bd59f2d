// Row-major strided-batched GEMM on CUDA through cuBLASLt, the batched sibling of gemm.cuh
// (cublasGemmStridedBatchedEx's semantics, written like the CPU's gemm_strided_batched in
// src/cpu/blas.h): for i < batch,
//
//   C_i (M, N) = op(A_i) @ op(B_i),   A_i = A + i * stride_a (B_i and C_i alike, in elements)
//
// op(A_i) is (M, K), op(B_i) is (K, N); every operand row-major with its leading dimension, so a
// batch entry can be a block of columns of a wider matrix. A, B and C share `dtype` (f32, bf16,
// f16); the products accumulate in f32 (no TF32), and f32 operands are rounded to bf16 for tensor
// cores when the context's matmul precision is bf16, as gemm() does. C is overwritten, never
// read. Ordered on ctx's stream, using its workspace.
#pragma once

#include <cstdint>

#include "longctx/context.h"

namespace longctx::cuda {

void gemm_strided_batched(const Context& ctx, DType dtype, int64_t batch, bool trans_a,
                          bool trans_b, int64_t M, int64_t N, int64_t K, const void* A, int64_t lda,
                          int64_t stride_a, const void* B, int64_t ldb, int64_t stride_b, void* C,
                          int64_t ldc, int64_t stride_c);

}  // namespace longctx::cuda
