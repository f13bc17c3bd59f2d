// Checked CUDA calls. A failing call throws longctx::Error naming the statement, the CUDA error,
// the current device and file:line; every kernel launch is followed by LONGCTX_CHECK_LAUNCH().
#pragma once

#include <cuda_runtime.h>

#include "longctx/error.h"

namespace longctx::cuda {
[[noreturn]] void throw_cuda_error(cudaError_t err, const char* statement, const char* file,
                                   int line);
}

#define LONGCTX_CUDA_CHECK(statement)                                                  \
  do {                                                                                 \
    cudaError_t longctx_err_ = (statement);                                            \
    if (longctx_err_ != cudaSuccess)                                                   \
      ::longctx::cuda::throw_cuda_error(longctx_err_, #statement, __FILE__, __LINE__); \
  } while (0)

#define LONGCTX_CHECK_LAUNCH() LONGCTX_CUDA_CHECK(cudaGetLastError())
