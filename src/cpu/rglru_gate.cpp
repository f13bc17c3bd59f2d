// rglru_gate on the CPU (see include/longctx/ops/rglru_gate.h): parallel over blocks of channels,
// each block walking every row, so dlambda sums its rows in order (deterministic).
#include <algorithm>
#include <cmath>
#include <vector>

#include "src/core/activations.h"
#include "src/core/dispatch.h"
#include "src/cpu/parallel.h"
#include "src/ops/rglru_gate.h"

namespace longctx::cpu {

void rglru_gate_fwd(const Context& ctx, const RGLRUGateArgs& args) {
  dispatch_cpu_float("rglru_gate_fwd", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t D = args.D;
    const T* xp = static_cast<const T*>(args.x);
    const T* gap = static_cast<const T*>(args.gate_a);
    const T* gxp = static_cast<const T*>(args.gate_x);
    const T* lp = static_cast<const T*>(args.lambda);
    T* ap = static_cast<T*>(args.a);
    T* bp = static_cast<T*>(args.b);
    for_each_by_channel(ctx, args.rows, D, [&](int64_t r, int64_t c) {
      const int64_t i = r * D + c;
      const T log_a = T(-8) * sigmoid(gap[i]) * softplus(lp[c]);
      ap[i] = std::exp(log_a);
      bp[i] = std::sqrt(-std::expm1(T(2) * log_a)) * sigmoid(gxp[i]) * xp[i];
    });
  });
}

void rglru_gate_bwd(const Context& ctx, const RGLRUGateArgs& args) {
  dispatch_cpu_float("rglru_gate_bwd", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t D = args.D;
    const T* xp = static_cast<const T*>(args.x);
    const T* gap = static_cast<const T*>(args.gate_a);
    const T* gxp = static_cast<const T*>(args.gate_x);
    const T* lp = static_cast<const T*>(args.lambda);
    const T* dap = static_cast<const T*>(args.da);
    const T* dbp = static_cast<const T*>(args.db);
    T* dxp = static_cast<T*>(args.dx);
    T* dgap = static_cast<T*>(args.dgate_a);
    T* dgxp = static_cast<T*>(args.dgate_x);
    T* dlp = static_cast<T*>(args.dlambda);
    std::fill(dlp, dlp + D, T(0));
    for_each_by_channel(ctx, args.rows, D, [&](int64_t r, int64_t c) {
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
