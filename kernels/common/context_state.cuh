// What a CUDA Context holds: its device, its stream, a cuBLASLt handle and a workspace for it.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include "longctx/context.h"

namespace longctx {

struct Context::CudaState {
  int device = 0;
  cudaStream_t stream = nullptr;
  cublasLtHandle_t blaslt = nullptr;
  void* workspace = nullptr;  // cuBLASLt workspace
  size_t workspace_bytes = 0;
};

namespace cuda {
// The stream and state of a CUDA context; throws Error for a CPU context.
Context::CudaState& state_of(const Context& ctx);
}  // namespace cuda

}  // namespace longctx
