// Row-major strided-batched GEMM through cuBLASLt (see gemm_batched.cuh).
//
// As in gemm.cu, a row-major (r, c) matrix with leading dimension ld is the column-major (c, r)
// one, so each C_i = op(A_i) op(B_i) runs as column-major C_iᵀ (N, M) = op(B_i)ᵀ @ op(A_i)ᵀ:
// cuBLASLt's first operand is our B, its second our A, with the same transpose flags; the batch
// strides carry over unchanged.
#include <utility>

#include "kernels/common/blaslt.cuh"
#include "kernels/common/context_state.cuh"
#include "kernels/common/gemm_batched.cuh"

namespace longctx::cuda {

void gemm_strided_batched(const Context& ctx, DType dtype, int64_t batch, bool trans_a,
                          bool trans_b, int64_t M, int64_t N, int64_t K, const void* A, int64_t lda,
                          int64_t stride_a, const void* B, int64_t ldb, int64_t stride_b, void* C,
                          int64_t ldc, int64_t stride_c) {
  using namespace blaslt;
  LONGCTX_CHECK(batch > 0 && M > 0 && N > 0 && K > 0,
                "gemm_strided_batched: dimensions must be positive, got batch = ", batch,
                ", M = ", M, ", N = ", N, ", K = ", K);
  Context::CudaState& state = state_of(ctx);
  const cudaDataType_t type = data_type(dtype);

  // bf16 matmul precision: f32 operands rounded to bf16 on tensor cores, f32 accumulation.
  const bool fast_bf16 = dtype == DType::f32 && ctx.matmul_precision() == MatmulPrecision::bf16;
  cublasLtMatmulDesc_t raw_desc = nullptr;
  LONGCTX_CUBLASLT_CHECK(cublasLtMatmulDescCreate(
      &raw_desc, fast_bf16 ? CUBLAS_COMPUTE_32F_FAST_16BF : CUBLAS_COMPUTE_32F, CUDA_R_32F));
  Owned<cublasLtMatmulDesc_t> desc(raw_desc);
  const cublasOperation_t op_first = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_second = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  LONGCTX_CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(desc.get(), CUBLASLT_MATMUL_DESC_TRANSA,
                                                        &op_first, sizeof(op_first)));
  LONGCTX_CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(desc.get(), CUBLASLT_MATMUL_DESC_TRANSB,
                                                        &op_second, sizeof(op_second)));

  // Stored column-major shapes: our row-major (r, c) with ld is column-major (c, r) with ld.
  auto first = trans_b ? matrix_layout(type, K, N, ldb, batch, stride_b)
                       : matrix_layout(type, N, K, ldb, batch, stride_b);
  auto second = trans_a ? matrix_layout(type, M, K, lda, batch, stride_a)
                        : matrix_layout(type, K, M, lda, batch, stride_a);
  auto out = matrix_layout(type, N, M, ldc, batch, stride_c);

  cublasLtMatmulPreference_t raw_pref = nullptr;
  LONGCTX_CUBLASLT_CHECK(cublasLtMatmulPreferenceCreate(&raw_pref));
  Owned<cublasLtMatmulPreference_t> pref(raw_pref);
  const uint64_t workspace_bytes = state.workspace_bytes;
  LONGCTX_CUBLASLT_CHECK(
      cublasLtMatmulPreferenceSetAttribute(pref.get(), CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                           &workspace_bytes, sizeof(workspace_bytes)));
  // Every batch entry's pointer counts (a single entry has no stride).
  const int64_t elem = batch > 1 ? int64_t(dtype_size(dtype)) : 0;
  const uint32_t align_first = alignment_of(B, stride_b * elem);
  const uint32_t align_second = alignment_of(A, stride_a * elem);
  const uint32_t align_out = alignment_of(C, stride_c * elem);
  const std::pair<cublasLtMatmulPreferenceAttributes_t, const uint32_t*> alignments[] = {
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_first},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_second},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_out},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_out}};
  for (const auto& [attribute, value] : alignments)
    LONGCTX_CUBLASLT_CHECK(
        cublasLtMatmulPreferenceSetAttribute(pref.get(), attribute, value, sizeof(uint32_t)));

  cublasLtMatmulHeuristicResult_t heuristic{};
  int found = 0;
  LONGCTX_CUBLASLT_CHECK(cublasLtMatmulAlgoGetHeuristic(state.blaslt, desc.get(), first.get(),
                                                        second.get(), out.get(), out.get(),
                                                        pref.get(), 1, &heuristic, &found));
  LONGCTX_CHECK(found > 0, "gemm_strided_batched: cuBLASLt has no algorithm for ",
                dtype_name(dtype), " batch = ", batch, ", M = ", M, ", N = ", N, ", K = ", K,
                " (trans_a = ", trans_a, ", trans_b = ", trans_b, ", lda = ", lda, ", ldb = ", ldb,
                ", ldc = ", ldc, ", strides ", stride_a, ", ", stride_b, ", ", stride_c, ")");
  const float alpha = 1.f, beta = 0.f;  // beta = 0: C is not read
  LONGCTX_CUBLASLT_CHECK(cublasLtMatmul(
      state.blaslt, desc.get(), &alpha, B, first.get(), A, second.get(), &beta, C, out.get(), C,
      out.get(), &heuristic.algo, state.workspace, state.workspace_bytes, state.stream));
}

}  // namespace longctx::cuda
