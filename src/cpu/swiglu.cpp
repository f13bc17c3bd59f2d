// swiglu on the CPU: elementwise over fixed blocks of elements (one block per work item, so each
// thread streams long contiguous runs).
#include <algorithm>
#include <cmath>

#include "longctx/ops/swiglu.h"
#include "src/core/dispatch.h"
#include "src/cpu/parallel.h"

namespace longctx::cpu {

namespace {
constexpr int64_t kBlock = 4096;  // elements per work item
}

void swiglu_fwd(const Context& ctx, const Tensor& out, const Tensor& gate, const Tensor& up) {
  dispatch_cpu_float("swiglu_fwd", gate.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t n = gate.numel();
    const T* g = gate.data_as<T>();
    const T* u = up.data_as<T>();
    T* y = out.data_as<T>();
    parallel_for(ctx, (n + kBlock - 1) / kBlock, [&](int64_t block) {
      const int64_t end = std::min(n, (block + 1) * kBlock);
      for (int64_t i = block * kBlock; i < end; ++i) {
        const T gv = g[i], uv = u[i];
        y[i] = gv / (T(1) + std::exp(-gv)) * uv;
      }
    });
  });
}

void swiglu_bwd(const Context& ctx, const Tensor& dgate, const Tensor& dup, const Tensor& dout,
                const Tensor& gate, const Tensor& up) {
  dispatch_cpu_float("swiglu_bwd", gate.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t n = gate.numel();
    const T* g = gate.data_as<T>();
    const T* u = up.data_as<T>();
    const T* dy = dout.data_as<T>();
    T* dg = dgate.data_as<T>();
    T* du = dup.data_as<T>();
    parallel_for(ctx, (n + kBlock - 1) / kBlock, [&](int64_t block) {
      const int64_t end = std::min(n, (block + 1) * kBlock);
      for (int64_t i = block * kBlock; i < end; ++i) {
        const T gv = g[i], uv = u[i], dyv = dy[i];  // all read before either write (in place)
        const T sig = T(1) / (T(1) + std::exp(-gv));
        dg[i] = dyv * uv * sig * (T(1) + gv * (T(1) - sig));
        du[i] = dyv * gv * sig;
      }
    });
  });
}

}  // namespace longctx::cpu
