// Device element types and dtype dispatch for launchers.
//
// Storage is f32, bf16 or f16; arithmetic is f32. load_f32/store_as convert at the edges, so a
// kernel body is written once over `T` and reads as plain float math.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "longctx/dtype.h"
#include "longctx/error.h"

namespace longctx::cuda {

__device__ __forceinline__ float load_f32(float x) {
  return x;
}
__device__ __forceinline__ float load_f32(__nv_bfloat16 x) {
  return __bfloat162float(x);
}
__device__ __forceinline__ float load_f32(__half x) {
  return __half2float(x);
}

template <class T>
__device__ __forceinline__ T store_as(float x);
template <>
__device__ __forceinline__ float store_as<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __nv_bfloat16 store_as<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}
template <>
__device__ __forceinline__ __half store_as<__half>(float x) {
  return __float2half_rn(x);
}

template <class T>
struct DeviceTag {
  using type = T;
};

// Calls f(DeviceTag<T>{}) with T the device storage type of `dtype` (float, __nv_bfloat16, __half).
template <class F>
decltype(auto) dispatch_cuda_float(const char* op, DType dtype, F&& f) {
  switch (dtype) {
    case DType::f32:
      return f(DeviceTag<float>{});
    case DType::bf16:
      return f(DeviceTag<__nv_bfloat16>{});
    case DType::f16:
      return f(DeviceTag<__half>{});
    default:
      throw Error(detail::concat(op, ": the CUDA backend supports f32, bf16 and f16, got ",
                                 dtype_name(dtype)));
  }
}

}  // namespace longctx::cuda
