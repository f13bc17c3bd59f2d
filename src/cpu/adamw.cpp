// adamw on the CPU: elementwise over fixed blocks of elements (the bias corrections come resolved
// in the params).
#include <algorithm>
#include <cmath>

#include "src/core/dispatch.h"
#include "src/cpu/parallel.h"
#include "src/ops/adamw.h"

namespace longctx::cpu {

namespace {
constexpr int64_t kBlock = 4096;  // elements per work item
}

void adamw_step(const Context& ctx, const AdamWArgs& args) {
  dispatch_cpu_float("adamw_step", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t n = args.n;
    T* p = static_cast<T*>(args.param);
    T* mp = static_cast<T*>(args.m);
    T* vp = static_cast<T*>(args.v);
    const T* g = static_cast<const T*>(args.grad);
    const T decay = T(args.decay), step_size = T(args.step_size);
    const T inv_sqrt_bc2 = T(args.inv_sqrt_bc2);
    const T b1 = T(args.beta1), b2 = T(args.beta2), eps = T(args.eps);
    const T one_minus_b1 = T(args.one_minus_beta1), one_minus_b2 = T(args.one_minus_beta2);
    const T scale = T(args.grad_scale);
    auto* copy_bits = static_cast<uint16_t*>(args.param_copy);
    const bool copy_bf16 = args.copy_dtype == DType::bf16;
    parallel_for(ctx, (n + kBlock - 1) / kBlock, [&](int64_t block) {
      const int64_t end = std::min(n, (block + 1) * kBlock);
      for (int64_t i = block * kBlock; i < end; ++i) {
        const T gi = g[i] * scale;
        const T mi = b1 * mp[i] + one_minus_b1 * gi;
        const T vi = b2 * vp[i] + one_minus_b2 * gi * gi;
        mp[i] = mi;
        vp[i] = vi;
        p[i] = p[i] * decay - step_size * mi / (std::sqrt(vi) * inv_sqrt_bc2 + eps);
      }
      if (!copy_bits) return;
      for (int64_t i = block * kBlock; i < end; ++i)
        copy_bits[i] = copy_bf16 ? to_bf16(float(p[i])).bits : to_f16(float(p[i])).bits;
    });
  });
}

}  // namespace longctx::cpu
