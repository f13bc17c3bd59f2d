// CPU GEMM through OpenBLAS: row-major cblas_?gemm and the unit lower-triangular solve overloaded
// on float/double, the guard that makes a BLAS call use the context's thread count, a
// strided-batched GEMM over them, and the kernels OpenBLAS runs (chosen with the CPU in mind).
#pragma once

#include <cblas.h>

#include <cstdint>
#include <string>

#include "longctx/context.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace longctx::cpu {

// The kernels OpenBLAS runs: `core`, its name for them (e.g. "SkylakeX"), and `replaced`, the
// core OpenBLAS had chosen itself where longctx replaced it ("" where not).
struct BlasKernels {
  std::string core;
  std::string replaced;
};

// Where OpenBLAS runs its SSE3 fallback on a CPU with AVX2 + FMA (a CPU newer than its model
// table), makes it run the kernels of the CPU's widest ISA instead, for the whole process; a
// user's OPENBLAS_CORETYPE is left alone (blas.cpp says why and what it measured). Done once as
// the library loads; callable again (tests).
BlasKernels choose_blas_kernels();

// Runs OpenBLAS's core selection again as if OPENBLAS_CORETYPE were `core` (the environment is
// left as it was); false, doing nothing, where OpenBLAS has no run-time selection (a build
// without DYNAMIC_ARCH, or another BLAS). Swaps the kernels for the whole process: no BLAS call
// may run meanwhile.
bool select_openblas_core(const char* core);

// What that choice at load time gave. Every wrapper below calls it, so that a static link keeps
// blas.cpp and its load-time choice wherever a BLAS call is linked.
const BlasKernels& blas_kernels();

// OpenBLAS's OpenMP build reads omp_get_max_threads() at every call (and runs single-threaded
// inside a parallel region, so never call it from inside parallel_for). This guard sets that
// value to the context's thread count for the guard's lifetime and restores it after.
class BlasThreads {
 public:
  explicit BlasThreads(const Context& ctx) {
#ifdef _OPENMP
    saved_ = omp_get_max_threads();
    omp_set_num_threads(ctx.cpu_threads());
#else
    (void)ctx;
#endif
  }
  ~BlasThreads() {
#ifdef _OPENMP
    omp_set_num_threads(saved_);
#endif
  }
  BlasThreads(const BlasThreads&) = delete;
  BlasThreads& operator=(const BlasThreads&) = delete;

 private:
  int saved_ = 1;
};

// C (M, N) = alpha * op(A) @ op(B) + beta * C, all row-major; op(A) is (M, K), op(B) is (K, N).
// With beta = 0, C is not read (it may hold NaN).
inline void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                 const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                 int64_t ldc) {
  blas_kernels();
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, blasint(M), blasint(N), blasint(K), alpha, A,
              blasint(lda), B, blasint(ldb), beta, C, blasint(ldc));
}
inline void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha,
                 const double* A, int64_t lda, const double* B, int64_t ldb, double beta, double* C,
                 int64_t ldc) {
  blas_kernels();
  cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, blasint(M), blasint(N), blasint(K), alpha, A,
              blasint(lda), B, blasint(ldb), beta, C, blasint(ldc));
}

// cuBLAS's strided-batched GEMM on the CPU: for i < batch,
//   C_i (M, N) = alpha * op(A_i) @ op(B_i) + beta * C_i,  A_i = A + i * stride_a (B_i, C_i alike),
// every operand row-major with its own leading dimension, so each batch entry can be a strided
// view (a block of columns of a wider matrix) and nothing is copied. The entries run one after
// another on the calling thread, each GEMM with the threads BLAS is given there (BlasThreads
// outside parallel_for, one inside).
template <class T>
void gemm_strided_batched(int64_t batch, bool trans_a, bool trans_b, int64_t M, int64_t N,
                          int64_t K, T alpha, const T* A, int64_t lda, int64_t stride_a, const T* B,
                          int64_t ldb, int64_t stride_b, T beta, T* C, int64_t ldc,
                          int64_t stride_c) {
  for (int64_t i = 0; i < batch; ++i)
    gemm(trans_a, trans_b, M, N, K, alpha, A + i * stride_a, lda, B + i * stride_b, ldb, beta,
         C + i * stride_c, ldc);
}

// B (M, N) := op(L)⁻¹ B for a unit lower-triangular L (M x M), all row-major: only L's strictly
// lower part is read, its diagonal is taken as 1. op(L) = Lᵀ when trans.
inline void trsm_unit_lower(bool trans, int64_t M, int64_t N, const float* L, int64_t ldl, float* B,
                            int64_t ldb) {
  blas_kernels();
  cblas_strsm(CblasRowMajor, CblasLeft, CblasLower, trans ? CblasTrans : CblasNoTrans, CblasUnit,
              blasint(M), blasint(N), 1.f, L, blasint(ldl), B, blasint(ldb));
}
inline void trsm_unit_lower(bool trans, int64_t M, int64_t N, const double* L, int64_t ldl,
                            double* B, int64_t ldb) {
  blas_kernels();
  cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, trans ? CblasTrans : CblasNoTrans, CblasUnit,
              blasint(M), blasint(N), 1.0, L, blasint(ldl), B, blasint(ldb));
}

}  // namespace longctx::cpu
