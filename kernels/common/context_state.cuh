// What a CUDA Context holds: its device, its stream, a cuBLASLt handle, a workspace for it, the
// algorithms its heuristic chose, and where kernels leave errors for the host (index_check.cuh).
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include "kernels/common/gemm_algo_cache.h"
#include "longctx/context.h"

namespace longctx {

namespace cuda {
struct GemmAlgo {
  bool found = false;  // false: cuBLASLt has no algorithm for the key (gemm.cu falls back)
  cublasLtMatmulAlgo_t algo{};
};

constexpr unsigned long long kNoBadIndex = ~0ull;

// The first out-of-range index found since the last check (index_check.cuh).
struct IndexErrorRecord {
  unsigned long long key;  // position << 32 | uint32(value); kNoBadIndex: none
  long long bound;         // V
  int check;               // IndexCheck
  int extra;               // cross_entropy: ignore_index
};
}  // namespace cuda

struct Context::CudaState {
  int device = 0;
  cudaStream_t stream = nullptr;
  cublasLtHandle_t blaslt = nullptr;
  void* workspace = nullptr;  // cuBLASLt workspace
  size_t workspace_bytes = 0;
  cuda::GemmAlgoCache<cuda::GemmAlgo> gemm_algos;  // the heuristic's answer per GEMM (gemm.cu)
  unsigned long long* index_flag = nullptr;        // device; kNoBadIndex between checks
  cuda::IndexErrorRecord* index_error = nullptr;   // pinned, mapped: written by the device
};

namespace cuda {
// The stream and state of a CUDA context; throws Error for a CPU context.
Context::CudaState& state_of(const Context& ctx);
}  // namespace cuda

}  // namespace longctx
