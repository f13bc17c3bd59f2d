// cuBLASLt building blocks: the status check, owning descriptor handles, the dtype mapping, the
// alignment of an operand and matrix layouts (strided-batched when asked). Used by gemm.cu and
// gemm_batched.cu.
#pragma once

#include <cublasLt.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <type_traits>

#include "longctx/error.h"
#include "longctx/tensor.h"

namespace longctx::cuda::blaslt {

#define LONGCTX_CUBLASLT_CHECK(statement)                                                      \
  do {                                                                                         \
    cublasStatus_t longctx_st_ = (statement);                                                  \
    if (longctx_st_ != CUBLAS_STATUS_SUCCESS)                                                  \
      throw ::longctx::Error(::longctx::detail::concat("cuBLASLt error ", int(longctx_st_),    \
                                                       " in `", #statement, "` at ", __FILE__, \
                                                       ":", __LINE__));                        \
  } while (0)

// Owning handles for the descriptors, so an exception on the way does not leak them.
struct DescDeleter {
  void operator()(cublasLtMatmulDescOpaque_t* p) const { cublasLtMatmulDescDestroy(p); }
  void operator()(cublasLtMatrixLayoutOpaque_t* p) const { cublasLtMatrixLayoutDestroy(p); }
  void operator()(cublasLtMatmulPreferenceOpaque_t* p) const { cublasLtMatmulPreferenceDestroy(p); }
};
template <class P>
using Owned = std::unique_ptr<std::remove_pointer_t<P>, DescDeleter>;

inline cudaDataType_t data_type(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return CUDA_R_32F;
    case DType::bf16:
      return CUDA_R_16BF;
    case DType::f16:
      return CUDA_R_16F;
    default:
      throw Error(detail::concat("cuBLASLt: longctx's GEMMs take f32, bf16 and f16, got ",
                                 dtype_name(dtype)));
  }
}

// The alignment in bytes (at most 256, cuBLASLt's default assumption) of every pointer
// base + i * stride_bytes: views into larger buffers (narrowed tensors, arena slices, the blocks
// of a strided batch) can be less aligned than a fresh allocation, so tell cuBLASLt the truth.
inline uint32_t alignment_of(const void* base, int64_t stride_bytes = 0) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(base) | uintptr_t(stride_bytes);
  return a == 0 ? 256u : uint32_t(std::min<uintptr_t>(256, a & (~a + 1)));
}

// A column-major (rows, cols) layout with leading dimension ld; with batch > 1, `batch` such
// matrices stride elements apart.
inline Owned<cublasLtMatrixLayout_t> matrix_layout(cudaDataType_t type, int64_t rows, int64_t cols,
                                                   int64_t ld, int64_t batch = 1,
                                                   int64_t stride = 0) {
  cublasLtMatrixLayout_t raw = nullptr;
  LONGCTX_CUBLASLT_CHECK(
      cublasLtMatrixLayoutCreate(&raw, type, uint64_t(rows), uint64_t(cols), ld));
  Owned<cublasLtMatrixLayout_t> l(raw);
  if (batch > 1) {
    const int32_t count = int32_t(batch);
    LONGCTX_CUBLASLT_CHECK(cublasLtMatrixLayoutSetAttribute(
        l.get(), CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
    LONGCTX_CUBLASLT_CHECK(cublasLtMatrixLayoutSetAttribute(
        l.get(), CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)));
  }
  return l;
}

}  // namespace longctx::cuda::blaslt
