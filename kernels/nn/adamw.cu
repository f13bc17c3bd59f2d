// adamw on CUDA: one grid-stride elementwise kernel over f32 params, m, v, grad; the bias
// corrections come resolved in the params (double, rounded to f32 here). The optional 16-bit copy
// is written in the same pass (it costs 2 bytes of the 18 per element the step moves anyway).
#include <algorithm>
#include <cmath>

#include "kernels/common/context_state.cuh"
#include "kernels/common/cuda_check.cuh"
#include "kernels/common/types.cuh"
#include "src/ops/adamw.h"

namespace longctx::cuda {

namespace {

constexpr int kThreads = 256;

struct AdamWScalars {
  float decay;         // 1 - lr * weight_decay
  float step_size;     // lr / (1 - beta1^step)
  float inv_sqrt_bc2;  // 1 / sqrt(1 - beta2^step)
  float beta1, beta2, eps, grad_scale;
  float one_minus_beta1, one_minus_beta2;  // formed in double (AdamWArgs)
};

// Copy = __nv_bfloat16 or __half; copy == nullptr writes no copy.
template <class Copy>
__global__ void __launch_bounds__(kThreads)
    adamw_kernel(float* __restrict__ param, float* __restrict__ m, float* __restrict__ v,
                 const float* __restrict__ grad, Copy* __restrict__ copy, int64_t n,
                 AdamWScalars s) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float g = grad[i] * s.grad_scale;
    const float mi = s.beta1 * m[i] + s.one_minus_beta1 * g;
    const float vi = s.beta2 * v[i] + s.one_minus_beta2 * g * g;
    m[i] = mi;
    v[i] = vi;
    const float p = param[i] * s.decay - s.step_size * mi / (sqrtf(vi) * s.inv_sqrt_bc2 + s.eps);
    param[i] = p;
    if (copy) copy[i] = store_as<Copy>(p);
  }
}

}  // namespace

void adamw_step(const Context& ctx, const AdamWArgs& args) {
  const int64_t n = args.n;
  if (n == 0) return;
  AdamWScalars s;
  s.decay = float(args.decay);
  s.step_size = float(args.step_size);
  s.inv_sqrt_bc2 = float(args.inv_sqrt_bc2);
  s.beta1 = float(args.beta1);
  s.beta2 = float(args.beta2);
  s.one_minus_beta1 = float(args.one_minus_beta1);
  s.one_minus_beta2 = float(args.one_minus_beta2);
  s.eps = float(args.eps);
  s.grad_scale = float(args.grad_scale);
  const unsigned blocks = unsigned(std::min<int64_t>((n + kThreads - 1) / kThreads, 65535 * 8));
  cudaStream_t stream = state_of(ctx).stream;
  auto* p = static_cast<float*>(args.param);
  auto* mp = static_cast<float*>(args.m);
  auto* vp = static_cast<float*>(args.v);
  const auto* g = static_cast<const float*>(args.grad);
  if (args.param_copy && args.copy_dtype == DType::f16) {
    adamw_kernel<__half><<<blocks, kThreads, 0, stream>>>(
        p, mp, vp, g, static_cast<__half*>(args.param_copy), n, s);
  } else {
    auto* copy = static_cast<__nv_bfloat16*>(args.param_copy);
    adamw_kernel<__nv_bfloat16><<<blocks, kThreads, 0, stream>>>(p, mp, vp, g, copy, n, s);
  }
  LONGCTX_CHECK_LAUNCH();
}

}  // namespace longctx::cuda
