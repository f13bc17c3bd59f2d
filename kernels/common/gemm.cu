// Row-major GEMM through cuBLASLt (see gemm.cuh).
//
// cuBLASLt is column-major. A row-major (r, c) matrix with leading dimension ld is the same
// memory as a column-major (c, r) one, so row-major C = op(A) op(B) is computed as column-major
// C^T (N, M) = op(B)^T (N, K) @ op(A)^T (K, M): cuBLASLt's first operand is our B, its second our
// A, with the same transpose flags. The BIAS epilogue adds a vector of length m = N along the
// column-major rows, which is our bias over the last (N) dimension.
#include <cublasLt.h>

#include <algorithm>
#include <memory>
#include <type_traits>

#include "kernels/common/blaslt.cuh"
#include "kernels/common/context_state.cuh"
#include "kernels/common/cuda_check.cuh"
#include "kernels/common/gemm.cuh"
#include "kernels/common/types.cuh"

namespace longctx::cuda {

namespace {

// C (M, N) += bias (N): the fallback when cuBLASLt offers no algorithm with the bias epilogue.
template <class T>
__global__ void __launch_bounds__(256)
    add_bias_kernel(T* C, const T* bias, int64_t M, int64_t N, int64_t ldc) {
  const int64_t count = M * N;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = i / N, col = i % N;
    T* c = C + row * ldc + col;
    *c = store_as<T>(load_f32(*c) + load_f32(bias[col]));
  }
}

// One cuBLASLt call; returns false (launching nothing) when no algorithm fits. The algorithm is
// the heuristic's first choice, asked once per GemmKey and context (gemm_algo_cache.h).
bool try_gemm(const Context& ctx, DType dtype, bool trans_a, bool trans_b, int64_t M, int64_t N,
              int64_t K, const void* A, int64_t lda, const void* B, int64_t ldb, void* C,
              int64_t ldc, const void* bias) {
  Context::CudaState& state = state_of(ctx);
  const cudaDataType_t type = blaslt::data_type(dtype);

  // bf16 matmul precision: cuBLAS rounds the f32 operands to bf16 and runs tensor cores,
  // accumulating in f32 (the products of torch.autocast with f32 outputs).
  const bool fast_bf16 = dtype == DType::f32 && ctx.matmul_precision() == MatmulPrecision::bf16;
  const cublasComputeType_t compute = fast_bf16 ? CUBLAS_COMPUTE_32F_FAST_16BF : CUBLAS_COMPUTE_32F;
  cublasLtMatmulDesc_t raw_desc = nullptr;
  LONGCTX_CUBLASLT_CHECK(cublasLtMatmulDescCreate(&raw_desc, compute, CUDA_R_32F));
  blaslt::Owned<cublasLtMatmulDesc_t> desc(raw_desc);
  // Column-major view: first operand is our B, second our A (see the file comment).
  const cublasOperation_t op_first = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_second = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  LONGCTX_CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(desc.get(), CUBLASLT_MATMUL_DESC_TRANSA,
                                                        &op_first, sizeof(op_first)));
  LONGCTX_CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(desc.get(), CUBLASLT_MATMUL_DESC_TRANSB,
                                                        &op_second, sizeof(op_second)));
  if (bias) {
    const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    LONGCTX_CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(desc.get(), CUBLASLT_MATMUL_DESC_EPILOGUE,
                                                          &epilogue, sizeof(epilogue)));
    LONGCTX_CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(
        desc.get(), CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
  }

  // Stored column-major shapes: our row-major (r, c) with ld is column-major (c, r) with ld.
  auto first =
      trans_b ? blaslt::matrix_layout(type, K, N, ldb) : blaslt::matrix_layout(type, N, K, ldb);
  auto second =
      trans_a ? blaslt::matrix_layout(type, M, K, lda) : blaslt::matrix_layout(type, K, M, lda);
  auto out = blaslt::matrix_layout(type, N, M, ldc);

  const uint32_t align_first = blaslt::alignment_of(B), align_second = blaslt::alignment_of(A);
  const uint32_t align_out = blaslt::alignment_of(C);
  GemmKey key;
  key.M = M, key.N = N, key.K = K, key.lda = lda, key.ldb = ldb, key.ldc = ldc;
  key.dtype = int(dtype), key.compute = int(compute);
  key.align_a = align_second, key.align_b = align_first, key.align_c = align_out;
  key.trans_a = trans_a, key.trans_b = trans_b, key.bias = bias != nullptr;

  const GemmAlgo choice = state.gemm_algos.get(key, [&] {
    cublasLtMatmulPreference_t raw_pref = nullptr;
    LONGCTX_CUBLASLT_CHECK(cublasLtMatmulPreferenceCreate(&raw_pref));
    blaslt::Owned<cublasLtMatmulPreference_t> pref(raw_pref);
    const uint64_t workspace_bytes = state.workspace_bytes;
    LONGCTX_CUBLASLT_CHECK(
        cublasLtMatmulPreferenceSetAttribute(pref.get(), CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                             &workspace_bytes, sizeof(workspace_bytes)));
    LONGCTX_CUBLASLT_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref.get(), CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_first, sizeof(uint32_t)));
    LONGCTX_CUBLASLT_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref.get(), CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_second, sizeof(uint32_t)));
    LONGCTX_CUBLASLT_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref.get(), CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_out, sizeof(uint32_t)));
    LONGCTX_CUBLASLT_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref.get(), CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_out, sizeof(uint32_t)));
    cublasLtMatmulHeuristicResult_t heuristic{};
    int found = 0;
    LONGCTX_CUBLASLT_CHECK(cublasLtMatmulAlgoGetHeuristic(state.blaslt, desc.get(), first.get(),
                                                          second.get(), out.get(), out.get(),
                                                          pref.get(), 1, &heuristic, &found));
    return GemmAlgo{found > 0, heuristic.algo};
  });
  if (!choice.found) return false;

  const float alpha = 1.f, beta = 0.f;  // beta = 0: C is not read
  LONGCTX_CUBLASLT_CHECK(cublasLtMatmul(
      state.blaslt, desc.get(), &alpha, B, first.get(), A, second.get(), &beta, C, out.get(), C,
      out.get(), &choice.algo, state.workspace, state.workspace_bytes, state.stream));
  return true;
}

}  // namespace

void gemm(const Context& ctx, DType dtype, bool trans_a, bool trans_b, int64_t M, int64_t N,
          int64_t K, const void* A, int64_t lda, const void* B, int64_t ldb, void* C, int64_t ldc,
          const void* bias) {
  LONGCTX_CHECK(M > 0 && N > 0 && K > 0, "gemm: dimensions must be positive, got M = ", M,
                ", N = ", N, ", K = ", K);
  if (try_gemm(ctx, dtype, trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, bias)) return;
  const bool plain = bias && try_gemm(ctx, dtype, trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc,
                                      /*bias=*/nullptr);
  LONGCTX_CHECK(plain, "gemm: cuBLASLt has no algorithm for ", dtype_name(dtype), " M = ", M,
                ", N = ", N, ", K = ", K, " (trans_a = ", trans_a, ", trans_b = ", trans_b,
                ", lda = ", lda, ", ldb = ", ldb, ", ldc = ", ldc, ")");
  const int64_t blocks = std::min<int64_t>((M * N + 255) / 256, 65535 * 8);
  dispatch_cuda_float("gemm", dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    add_bias_kernel<T><<<unsigned(blocks), 256, 0, state_of(ctx).stream>>>(
        static_cast<T*>(C), static_cast<const T*>(bias), M, N, ldc);
  });
  LONGCTX_CHECK_LAUNCH();
}

}  // namespace longctx::cuda
