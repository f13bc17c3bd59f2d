// rglru_gate on CUDA (see include/longctx/ops/rglru_gate.h): one thread per channel walks the
// rows with a grid-stride over channels, so loads are coalesced across a warp and dlambda sums
// its rows in order in a register (deterministic, no atomics). f32 math.
#include "kernels/common/context_state.cuh"
#include "kernels/common/cuda_check.cuh"
#include "kernels/common/types.cuh"
#include "longctx/ops/rglru_gate.h"

namespace longctx::cuda {

namespace {

__device__ float sigmoidf(float s) {
  return 1.f / (1.f + expf(-s));
}
__device__ float softplusf(float s) {
  return s > 20.f ? s : log1pf(expf(s));
}

template <class T>
__global__ void rglru_gate_fwd_kernel(T* a, T* b, const T* x, const T* gate_a, const T* gate_x,
                                      const T* lambda, int64_t rows, int64_t D) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < D;
       c += int64_t(gridDim.x) * blockDim.x) {
    const float sp = softplusf(load_f32(lambda[c]));
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = r * D + c;
      const float log_a = -8.f * sigmoidf(load_f32(gate_a[i])) * sp;
      a[i] = store_as<T>(expf(log_a));
      b[i] =
          store_as<T>(sqrtf(-expm1f(2.f * log_a)) * sigmoidf(load_f32(gate_x[i])) * load_f32(x[i]));
    }
  }
}

template <class T>
__global__ void rglru_gate_bwd_kernel(T* dx, T* dgate_a, T* dgate_x, T* dlambda, const T* da,
                                      const T* db, const T* x, const T* gate_a, const T* gate_x,
                                      const T* lambda, int64_t rows, int64_t D) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < D;
       c += int64_t(gridDim.x) * blockDim.x) {
    const float lam = load_f32(lambda[c]), sp = softplusf(lam), sl = sigmoidf(lam);
    float dl = 0.f;
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = r * D + c;
      const float ra = sigmoidf(load_f32(gate_a[i])), ix = sigmoidf(load_f32(gate_x[i]));
      const float xv = load_f32(x[i]), dbv = load_f32(db[i]);
      const float log_a = -8.f * ra * sp, av = expf(log_a), mult = sqrtf(-expm1f(2.f * log_a));
      const float dlog_a =
          load_f32(da[i]) * av + (mult > 0.f ? dbv * ix * xv * (-av * av / mult) : 0.f);
      dgate_a[i] = store_as<T>(dlog_a * -8.f * sp * ra * (1.f - ra));
      dl += dlog_a * -8.f * ra * sl;
      dgate_x[i] = store_as<T>(dbv * mult * xv * ix * (1.f - ix));
      dx[i] = store_as<T>(dbv * mult * ix);
    }
    dlambda[c] = store_as<T>(dl);
  }
}

unsigned channel_blocks(int64_t D) {
  return unsigned(std::min<int64_t>((D + 127) / 128, 65535));
}

}  // namespace

void rglru_gate_fwd(const Context& ctx, const Tensor& a, const Tensor& b, const Tensor& x,
                    const Tensor& gate_a, const Tensor& gate_x, const Tensor& lambda) {
  const int64_t D = x.size(x.dim() - 1), rows = D ? x.numel() / D : 0;
  if (D == 0 || rows == 0) return;
  dispatch_cuda_float("rglru_gate_fwd", x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    rglru_gate_fwd_kernel<T><<<channel_blocks(D), 128, 0, state_of(ctx).stream>>>(
        static_cast<T*>(a.data()), static_cast<T*>(b.data()), static_cast<const T*>(x.data()),
        static_cast<const T*>(gate_a.data()), static_cast<const T*>(gate_x.data()),
        static_cast<const T*>(lambda.data()), rows, D);
  });
  LONGCTX_CHECK_LAUNCH();
}

void rglru_gate_bwd(const Context& ctx, const Tensor& dx, const Tensor& dgate_a,
                    const Tensor& dgate_x, const Tensor& dlambda, const Tensor& da,
                    const Tensor& db, const Tensor& x, const Tensor& gate_a, const Tensor& gate_x,
                    const Tensor& lambda) {
  const int64_t D = x.size(x.dim() - 1), rows = D ? x.numel() / D : 0;
  if (D == 0) return;
  dispatch_cuda_float("rglru_gate_bwd", x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    rglru_gate_bwd_kernel<T><<<channel_blocks(D), 128, 0, state_of(ctx).stream>>>(
        static_cast<T*>(dx.data()), static_cast<T*>(dgate_a.data()),
        static_cast<T*>(dgate_x.data()), static_cast<T*>(dlambda.data()),
        static_cast<const T*>(da.data()), static_cast<const T*>(db.data()),
        static_cast<const T*>(x.data()), static_cast<const T*>(gate_a.data()),
        static_cast<const T*>(gate_x.data()), static_cast<const T*>(lambda.data()), rows, D);
  });
  LONGCTX_CHECK_LAUNCH();
}

}  // namespace longctx::cuda
