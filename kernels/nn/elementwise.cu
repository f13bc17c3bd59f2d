// Elementwise ops on CUDA: grid-stride kernels, f32 math (see include/longctx/ops/elementwise.h).
#include "kernels/common/context_state.cuh"
#include "kernels/common/cuda_check.cuh"
#include "kernels/common/types.cuh"
#include "longctx/ops/elementwise.h"

namespace longctx::cuda {

namespace {

template <class T>
__global__ void __launch_bounds__(256) neg_exp_kernel(T* out, const T* x, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = store_as<T>(-expf(load_f32(x[i])));
}

template <class T>
__global__ void __launch_bounds__(256) mul_kernel(T* out, const T* a, const T* b, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = store_as<T>(load_f32(a[i]) * load_f32(b[i]));
}

unsigned blocks_for(int64_t n) {
  return unsigned(std::min<int64_t>((n + 255) / 256, 65536));
}

}  // namespace

void neg_exp_fwd(const Context& ctx, const Tensor& out, const Tensor& x) {
  const int64_t n = x.numel();
  if (n == 0) return;
  dispatch_cuda_float("neg_exp_fwd", x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    neg_exp_kernel<T><<<blocks_for(n), 256, 0, state_of(ctx).stream>>>(
        static_cast<T*>(out.data()), static_cast<const T*>(x.data()), n);
  });
  LONGCTX_CHECK_LAUNCH();
}

void neg_exp_bwd(const Context& ctx, const Tensor& dx, const Tensor& dout, const Tensor& out) {
  const int64_t n = out.numel();
  if (n == 0) return;
  dispatch_cuda_float("neg_exp_bwd", out.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    mul_kernel<T><<<blocks_for(n), 256, 0, state_of(ctx).stream>>>(
        static_cast<T*>(dx.data()), static_cast<const T*>(dout.data()),
        static_cast<const T*>(out.data()), n);
  });
  LONGCTX_CHECK_LAUNCH();
}

}  // namespace longctx::cuda
