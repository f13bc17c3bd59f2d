// swiglu on CUDA: one grid-stride elementwise kernel per direction, f32 math (expf, not the
// approximate __expf: the op is bandwidth-bound, so the accurate exp costs nothing measurable).
#include <algorithm>

#include "kernels/common/context_state.cuh"
#include "kernels/common/cuda_check.cuh"
#include "kernels/common/types.cuh"
#include "longctx/ops/swiglu.h"

namespace longctx::cuda {

namespace {

constexpr int kThreads = 256;

unsigned blocks_for(int64_t n) {
  return unsigned(std::min<int64_t>((n + kThreads - 1) / kThreads, 65535 * 8));
}

// No __restrict__: an output may be exactly an input (in place); each element is read first.
template <class T>
__global__ void __launch_bounds__(kThreads)
    swiglu_fwd_kernel(T* out, const T* gate, const T* up, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float g = load_f32(gate[i]), u = load_f32(up[i]);
    out[i] = store_as<T>(g / (1.f + expf(-g)) * u);
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    swiglu_bwd_kernel(T* dgate, T* dup, const T* dout, const T* gate, const T* up, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float g = load_f32(gate[i]), u = load_f32(up[i]), dy = load_f32(dout[i]);
    const float sig = 1.f / (1.f + expf(-g));
    dgate[i] = store_as<T>(dy * u * sig * (1.f + g * (1.f - sig)));
    dup[i] = store_as<T>(dy * g * sig);
  }
}

}  // namespace

void swiglu_fwd(const Context& ctx, const Tensor& out, const Tensor& gate, const Tensor& up) {
  const int64_t n = gate.numel();
  if (n == 0) return;
  dispatch_cuda_float("swiglu_fwd", gate.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    swiglu_fwd_kernel<T><<<blocks_for(n), kThreads, 0, state_of(ctx).stream>>>(
        static_cast<T*>(out.data()), static_cast<const T*>(gate.data()),
        static_cast<const T*>(up.data()), n);
  });
  LONGCTX_CHECK_LAUNCH();
}

void swiglu_bwd(const Context& ctx, const Tensor& dgate, const Tensor& dup, const Tensor& dout,
                const Tensor& gate, const Tensor& up) {
  const int64_t n = gate.numel();
  if (n == 0) return;
  dispatch_cuda_float("swiglu_bwd", gate.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    swiglu_bwd_kernel<T><<<blocks_for(n), kThreads, 0, state_of(ctx).stream>>>(
        static_cast<T*>(dgate.data()), static_cast<T*>(dup.data()),
        static_cast<const T*>(dout.data()), static_cast<const T*>(gate.data()),
        static_cast<const T*>(up.data()), n);
  });
  LONGCTX_CHECK_LAUNCH();
}

}  // namespace longctx::cuda
