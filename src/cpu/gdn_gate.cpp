// gdn_gate on the CPU (see include/longctx/ops/gdn_gate.h): parallel over rows
// (for_each_row_slice), the backward's ddt_bias and per-channel parts of dA_log summed over fixed
// groups of rows and then the groups in order (for_each_row_slice_summing): deterministic at any
// thread count. A row's slice goes through the vectorized softplus and sigmoid of
// src/cpu/exp_array.h (f64: the same std:: formulas as the scalar ones), exp(A_log) once per head;
// one element took the scalar libm exp and log1p (and exp(A_log)) before: at rows = 4096,
// D = 16 x 128, f32, one thread, 33-35 -> 5.5-5.6 ns an element forward, 38-40 -> 6.3-6.4
// backward (bench/results/2026-12-06-cpu-gates/).
#include <algorithm>
#include <cmath>
#include <vector>

#include "longctx/ops/gdn_gate.h"
#include "src/core/dispatch.h"
#include "src/cpu/exp_array.h"
#include "src/cpu/parallel.h"

namespace longctx::cpu {

void gdn_gate_fwd(const Context& ctx, const Tensor& g, const Tensor& a, const Tensor& A_log,
                  const Tensor& dt_bias) {
  dispatch_cpu_float("gdn_gate_fwd", a.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t D = a.size(a.dim() - 1), rows = D ? a.numel() / D : 0;
    const int64_t Kg = D / A_log.size(0);
    const T *ap = a.data_as<T>(), *alp = A_log.data_as<T>(), *bp = dt_bias.data_as<T>();
    T* gp = g.data_as<T>();
    std::vector<T> neg_A(static_cast<size_t>(A_log.size(0)));  // -exp(A_log)
    for (size_t h = 0; h < neg_A.size(); ++h) neg_A[h] = -std::exp(alp[h]);
    for_each_row_slice(ctx, rows, D, [&](int64_t r, int64_t c0, int64_t c1) {
      const int64_t n = c1 - c0, i0 = r * D + c0;
      T s[kBlockChannels] = {};
      for (int64_t c = 0; c < n; ++c) s[c] = ap[i0 + c] + bp[c0 + c];
      softplus_array(s, s, n);
      for (int64_t c = 0; c < n; ++c) gp[i0 + c] = neg_A[size_t((c0 + c) / Kg)] * s[c];
    });
  });
}

void gdn_gate_bwd(const Context& ctx, const Tensor& da, const Tensor& dA_log,
                  const Tensor& ddt_bias, const Tensor& dg, const Tensor& a, const Tensor& A_log,
                  const Tensor& dt_bias) {
  dispatch_cpu_float("gdn_gate_bwd", a.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t D = a.size(a.dim() - 1), rows = D ? a.numel() / D : 0;
    const int64_t HV = A_log.size(0), Kg = D / HV;
    const T *ap = a.data_as<T>(), *alp = A_log.data_as<T>(), *bp = dt_bias.data_as<T>();
    const T* dgp = dg.data_as<T>();
    T *dap = da.data_as<T>(), *dbp = ddt_bias.data_as<T>(), *dalp = dA_log.data_as<T>();
    std::vector<T> A(static_cast<size_t>(HV));
    for (int64_t h = 0; h < HV; ++h) A[size_t(h)] = std::exp(alp[h]);
    // The sums over the rows: ddt_bias, then each channel's share of dA_log[c / Kg].
    std::vector<T> sums(static_cast<size_t>(2 * D));
    for_each_row_slice_summing(ctx, rows, D, 2, sums.data(),
                               [&](int64_t r, int64_t c0, int64_t c1, T* sum) {
                                 const int64_t n = c1 - c0, i0 = r * D + c0;
                                 T s[kBlockChannels] = {}, sig[kBlockChannels];
                                 for (int64_t c = 0; c < n; ++c) s[c] = ap[i0 + c] + bp[c0 + c];
                                 sigmoid_array(sig, s, n);
                                 softplus_array(s, s, n);
                                 for (int64_t c = 0; c < n; ++c) {
                                   const int64_t i = i0 + c;
                                   const T Ac = A[size_t((c0 + c) / Kg)];
                                   // g = -A softplus(s): dg/ds = -A sigmoid(s), dg/dA_log = g.
                                   const T ds = dgp[i] * -Ac * sig[c];
                                   dap[i] = ds;
                                   sum[c0 + c] += ds;
                                   sum[D + c0 + c] += dgp[i] * -Ac * s[c];
                                 }
                               });
    std::copy(sums.begin(), sums.begin() + D, dbp);
    const T* dA_part = sums.data() + D;
    for (int64_t h = 0; h < HV; ++h) {
      T sum = 0;
      for (int64_t c = h * Kg; c < (h + 1) * Kg; ++c) sum += dA_part[c];
      dalp[h] = sum;
    }
  });
}

}  // namespace longctx::cpu
