// Elementwise ops on the CPU (see include/longctx/ops/elementwise.h).
#include <cmath>

#include "longctx/ops/elementwise.h"
#include "src/core/dispatch.h"
#include "src/cpu/parallel.h"

namespace longctx::cpu {

namespace {
// Calls f(i) for every element index, in blocks across threads.
template <class F>
void for_each_index(const Context& ctx, int64_t n, F&& f) {
  constexpr int64_t kBlock = 16384;
  parallel_for(ctx, (n + kBlock - 1) / kBlock, [&](int64_t block) {
    const int64_t end = std::min(n, (block + 1) * kBlock);
    for (int64_t i = block * kBlock; i < end; ++i) f(i);
  });
}
}  // namespace

void neg_exp_fwd(const Context& ctx, const Tensor& out, const Tensor& x) {
  dispatch_cpu_float("neg_exp_fwd", x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = x.data_as<T>();
    T* op = out.data_as<T>();
    for_each_index(ctx, x.numel(), [&](int64_t i) { op[i] = -std::exp(xp[i]); });
  });
}

void neg_exp_bwd(const Context& ctx, const Tensor& dx, const Tensor& dout, const Tensor& out) {
  dispatch_cpu_float("neg_exp_bwd", out.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* dy = dout.data_as<T>();
    const T* y = out.data_as<T>();
    T* d = dx.data_as<T>();
    for_each_index(ctx, out.numel(), [&](int64_t i) { d[i] = dy[i] * y[i]; });
  });
}

}  // namespace longctx::cpu
