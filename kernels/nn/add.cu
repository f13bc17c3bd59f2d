// add on CUDA: a grid-stride elementwise kernel, f32 math.
#include "kernels/common/context_state.cuh"
#include "kernels/common/cuda_check.cuh"
#include "kernels/common/types.cuh"
#include "longctx/ops/add.h"

namespace longctx::cuda {

namespace {
template <class T>
__global__ void __launch_bounds__(256) add_kernel(T* out, const T* a, const T* b, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = store_as<T>(load_f32(a[i]) + load_f32(b[i]));
}
}  // namespace

void add_fwd(const Context& ctx, const Tensor& out, const Tensor& a, const Tensor& b) {
  const int64_t n = a.numel();
  if (n == 0) return;
  const unsigned blocks = unsigned(std::min<int64_t>((n + 255) / 256, 65536));
  dispatch_cuda_float("add_fwd", a.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    add_kernel<T><<<blocks, 256, 0, state_of(ctx).stream>>>(static_cast<T*>(out.data()),
                                                            static_cast<const T*>(a.data()),
                                                            static_cast<const T*>(b.data()), n);
  });
  LONGCTX_CHECK_LAUNCH();
}

}  // namespace longctx::cuda
