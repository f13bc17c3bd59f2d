// The CUDA runtime seen from host C++: device discovery, stream-ordered allocation, copies,
// per-Context state. Plain C++ (no CUDA headers), so src/ can include it; defined in runtime.cu
// and compiled only when the build has CUDA (LONGCTX_WITH_CUDA).
#pragma once

#include <cstddef>
#include <cstdint>

#include "longctx/context.h"

namespace longctx::cuda {

CudaStatus status();
void set_device(int device);

// Stream-ordered allocation from the device's default memory pool (cudaMallocAsync).
void* malloc_async(size_t bytes, int device, void* stream);
void free_async(void* ptr, int device, void* stream) noexcept;
// High-water mark of the device's default memory pool (bytes), and its reset to current use.
size_t pool_peak_bytes(int device);
void reset_pool_peak(int device);

// Contiguous copy of `bytes` between any two devices; synchronises when the host is involved.
void copy(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes,
          void* stream);
// dst <- src, both on the same device with any strides (in elements), up to 8 dims.
void copy_strided(void* dst, const int64_t* dst_strides, const void* src,
                  const int64_t* src_strides, size_t element_size, int dims, const int64_t* shape,
                  void* stream);
void fill(void* dst, DType dtype, int64_t count, double value, void* stream);
// dst[i] = src[i] converted (f32, bf16, f16; f32 arithmetic, round to nearest even), contiguous.
void convert(void* dst, DType dst_dtype, const void* src, DType src_dtype, int64_t count,
             void* stream);
void synchronize(void* stream);
void synchronize_device(int device);  // every stream of the device (cudaDeviceSynchronize)
// Raises (once) the out-of-range index a kernel of this context recorded, if any; call after a
// synchronisation of its stream (kernels/common/index_check.cuh). Null state: nothing.
void check_deferred_errors(Context::CudaState* state);

Context::CudaState* create_state(int device);
void destroy_state(Context::CudaState* state);
void* stream_of(const Context::CudaState* state);

}  // namespace longctx::cuda
