// adamw on the CPU: elementwise over fixed blocks of elements; the bias corrections are computed
// once in double.
#include <algorithm>
#include <cmath>

#include "longctx/ops/adamw.h"
#include "src/core/dispatch.h"
#include "src/cpu/parallel.h"

namespace longctx::cpu {

namespace {
constexpr int64_t kBlock = 4096;  // elements per work item
}

void adamw_step(const Context& ctx, const Tensor& param, const Tensor& m, const Tensor& v,
                const Tensor& grad, const AdamWParams& params, const Tensor& param_copy) {
  dispatch_cpu_float("adamw_step", param.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t n = param.numel();
    T* p = param.data_as<T>();
    T* mp = m.data_as<T>();
    T* vp = v.data_as<T>();
    const T* g = grad.data_as<T>();
    const T decay = T(1.0 - params.lr * params.weight_decay);
    const T step_size = T(params.lr / (1.0 - std::pow(params.beta1, double(params.step))));
    const T inv_sqrt_bc2 = T(1.0 / std::sqrt(1.0 - std::pow(params.beta2, double(params.step))));
    const T b1 = T(params.beta1), b2 = T(params.beta2), eps = T(params.eps);
    const T scale = T(params.grad_scale);
    const DType copy_dtype = param_copy.defined() ? param_copy.dtype() : DType::f32;
    auto* copy_bits = param_copy.defined() ? static_cast<uint16_t*>(param_copy.data()) : nullptr;
    parallel_for(ctx, (n + kBlock - 1) / kBlock, [&](int64_t block) {
      const int64_t end = std::min(n, (block + 1) * kBlock);
      for (int64_t i = block * kBlock; i < end; ++i) {
        const T gi = g[i] * scale;
        const T mi = b1 * mp[i] + (T(1) - b1) * gi;
        const T vi = b2 * vp[i] + (T(1) - b2) * gi * gi;
        mp[i] = mi;
        vp[i] = vi;
        p[i] = p[i] * decay - step_size * mi / (std::sqrt(vi) * inv_sqrt_bc2 + eps);
      }
      if (!copy_bits) return;
      for (int64_t i = block * kBlock; i < end; ++i)
        copy_bits[i] =
            copy_dtype == DType::bf16 ? to_bf16(float(p[i])).bits : to_f16(float(p[i])).bits;
    });
  });
}

}  // namespace longctx::cpu
