// rglru_gate on the CPU (see include/longctx/ops/rglru_gate.h): parallel over blocks of channels,
// each block walking every row, so dlambda sums its rows in order (deterministic).
#include <algorithm>
#include <cmath>
#include <vector>

#include "longctx/ops/rglru_gate.h"
#include "src/core/activations.h"
#include "src/core/dispatch.h"
#include "src/cpu/parallel.h"

namespace longctx::cpu {

namespace {

constexpr int64_t kChannelBlock = 64;

// Calls f(row, c) for every element, parallel over channel blocks, rows in order within each.
template <class F>
void for_each_by_channel(const Context& ctx, int64_t rows, int64_t D, F&& f) {
  parallel_for(ctx, (D + kChannelBlock - 1) / kChannelBlock, [&](int64_t block) {
    const int64_t c0 = block * kChannelBlock, c1 = std::min(D, c0 + kChannelBlock);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = c0; c < c1; ++c) f(r, c);
  });
}

}  // namespace

void rglru_gate_fwd(const Context& ctx, const Tensor& a, const Tensor& b, const Tensor& x,
                    const Tensor& gate_a, const Tensor& gate_x, const Tensor& lambda) {
  dispatch_cpu_float("rglru_gate_fwd", x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t D = x.size(x.dim() - 1), rows = D ? x.numel() / D : 0;
    const T *xp = x.data_as<T>(), *gap = gate_a.data_as<T>(), *gxp = gate_x.data_as<T>();
    const T* lp = lambda.data_as<T>();
    T *ap = a.data_as<T>(), *bp = b.data_as<T>();
    for_each_by_channel(ctx, rows, D, [&](int64_t r, int64_t c) {
      const int64_t i = r * D + c;
      const T log_a = T(-8) * sigmoid(gap[i]) * softplus(lp[c]);
      ap[i] = std::exp(log_a);
      bp[i] = std::sqrt(-std::expm1(T(2) * log_a)) * sigmoid(gxp[i]) * xp[i];
    });
  });
}

void rglru_gate_bwd(const Context& ctx, const Tensor& dx, const Tensor& dgate_a,
                    const Tensor& dgate_x, const Tensor& dlambda, const Tensor& da,
                    const Tensor& db, const Tensor& x, const Tensor& gate_a, const Tensor& gate_x,
                    const Tensor& lambda) {
  dispatch_cpu_float("rglru_gate_bwd", x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t D = x.size(x.dim() - 1), rows = D ? x.numel() / D : 0;
    const T *xp = x.data_as<T>(), *gap = gate_a.data_as<T>(), *gxp = gate_x.data_as<T>();
    const T *lp = lambda.data_as<T>(), *dap = da.data_as<T>(), *dbp = db.data_as<T>();
    T *dxp = dx.data_as<T>(), *dgap = dgate_a.data_as<T>(), *dgxp = dgate_x.data_as<T>();
    T* dlp = dlambda.data_as<T>();
    std::fill(dlp, dlp + D, T(0));
    for_each_by_channel(ctx, rows, D, [&](int64_t r, int64_t c) {
      const int64_t i = r * D + c;
      const T ra = sigmoid(gap[i]), ix = sigmoid(gxp[i]), sp = softplus(lp[c]);
      const T log_a = T(-8) * ra * sp, a = std::exp(log_a);
      const T mult = std::sqrt(-std::expm1(T(2) * log_a));
      // d mult / d log a = -a^2 / mult (unbounded as a -> 1, where mult -> 0: taken as 0 there).
      const T dlog_a = dap[i] * a + (mult > T(0) ? dbp[i] * ix * xp[i] * (-a * a / mult) : T(0));
      dgap[i] = dlog_a * T(-8) * sp * ra * (T(1) - ra);
      dlp[c] += dlog_a * T(-8) * ra * sigmoid(lp[c]);
      dgxp[i] = dbp[i] * mult * xp[i] * ix * (T(1) - ix);
      dxp[i] = dbp[i] * mult * ix;
    });
  });
}

}  // namespace longctx::cpu
