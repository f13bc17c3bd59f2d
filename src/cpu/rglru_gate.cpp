// rglru_gate on the CPU (see include/longctx/ops/rglru_gate.h): parallel over rows
// (for_each_row_slice), the backward's dlambda summed over fixed groups of rows and then the groups
// in order (for_each_row_slice_summing): deterministic at any thread count.
//
// A row's slice goes through the vectorized exp, expm1 and sigmoid of src/cpu/exp_array.h (f64:
// the same std:: functions as the scalar formulas), softplus(lambda) and sigmoid(lambda) once per
// channel. One element took six scalar libm calls before (softplus's exp and log1p, exp, expm1,
// two sigmoids' exp): at rows = 4096, D = 2560, f32, one thread, 61-65 -> 5.0-6.7 ns an element
// forward and 74 -> 8.7-8.8 backward (bench/results/2026-12-06-cpu-gates/, where the stages are);
// in bench_scan (B = 1, T = 1024) the forward went from 0.8-0.9x its plain loop to 4-5x. Work is
// split over rows: at few rows (a decode step's B) it runs on fewer threads, where it is small.
#include <cmath>
#include <vector>

#include "src/core/dispatch.h"
#include "src/cpu/exp_array.h"
#include "src/cpu/parallel.h"
#include "src/ops/rglru_gate.h"

namespace longctx::cpu {

namespace {

// The decay of n channels of a row, shared by the forward and the backward: r = sigmoid(gate_a),
// a = exp(log a) with log a = -8 r softplus(lambda) (sp: the channels' softplus(lambda)), and
// e = expm1(2 log a) = a² − 1.
template <class T>
void decay_slice(const T* gate_a, const T* sp, int64_t n, T* r, T* a, T* e) {
  sigmoid_array(r, gate_a, n);
  for (int64_t c = 0; c < n; ++c) a[c] = T(-8) * r[c] * sp[c];  // log a
  for (int64_t c = 0; c < n; ++c) e[c] = T(2) * a[c];
  exp_array(a, a, n);
  expm1_array(e, e, n);
}

}  // namespace

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
    std::vector<T> sp(static_cast<size_t>(D));  // softplus(lambda)
    softplus_array(sp.data(), lp, D);
    for_each_row_slice(ctx, args.rows, D, [&](int64_t r, int64_t c0, int64_t c1) {
      const int64_t n = c1 - c0, i0 = r * D + c0;
      T gate[kBlockChannels], e[kBlockChannels];
      decay_slice(gap + i0, sp.data() + c0, n, gate, ap + i0, e);
      sigmoid_array(gate, gxp + i0, n);  // i
      for (int64_t c = 0; c < n; ++c) bp[i0 + c] = std::sqrt(-e[c]) * gate[c] * xp[i0 + c];
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
    std::vector<T> sp(static_cast<size_t>(D)), sl(sp.size());  // softplus(lambda), sigmoid(lambda)
    softplus_array(sp.data(), lp, D);
    sigmoid_array(sl.data(), lp, D);
    for_each_row_slice_summing(
        ctx, args.rows, D, 1, dlp, [&](int64_t r, int64_t c0, int64_t c1, T* dl_sum) {
          const int64_t n = c1 - c0, i0 = r * D + c0;
          T ra[kBlockChannels], ix[kBlockChannels], a[kBlockChannels], e[kBlockChannels];
          decay_slice(gap + i0, sp.data() + c0, n, ra, a, e);
          sigmoid_array(ix, gxp + i0, n);
          for (int64_t c = 0; c < n; ++c) {
            const int64_t i = i0 + c;
            const T mult = std::sqrt(-e[c]);
            // d mult / d log a = -a^2 / mult (unbounded as a -> 1, where mult -> 0: taken as 0
            // there).
            const T dlog_a = dap[i] * a[c] +
                             (mult > T(0) ? dbp[i] * ix[c] * xp[i] * (-a[c] * a[c] / mult) : T(0));
            dgap[i] = dlog_a * T(-8) * sp[size_t(c0 + c)] * ra[c] * (T(1) - ra[c]);
            dl_sum[c0 + c] += dlog_a * T(-8) * ra[c] * sl[size_t(c0 + c)];
            dgxp[i] = dbp[i] * mult * xp[i] * ix[c] * (T(1) - ix[c]);
            dxp[i] = dbp[i] * mult * ix[c];
          }
        });
  });
}

}  // namespace longctx::cpu
