// gdn_gate on the CPU (see include/longctx/ops/gdn_gate.h): parallel over blocks of channels,
// each block walking every row in order, so ddt_bias and the per-channel parts of dA_log are
// summed in a fixed order (deterministic at any thread count).
#include <algorithm>
#include <cmath>
#include <vector>

#include "longctx/ops/gdn_gate.h"
#include "src/core/activations.h"
#include "src/core/dispatch.h"
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
    for_each_by_channel(ctx, rows, D, [&](int64_t r, int64_t c) {
      const int64_t i = r * D + c;
      gp[i] = -std::exp(alp[c / Kg]) * softplus(ap[i] + bp[c]);
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
    std::vector<T> dA_part(size_t(D), T(0));  // channel c's share of dA_log[c / Kg]
    std::fill(dbp, dbp + D, T(0));
    for_each_by_channel(ctx, rows, D, [&](int64_t r, int64_t c) {
      const int64_t i = r * D + c;
      const T A = std::exp(alp[c / Kg]), s = ap[i] + bp[c];
      // g = -A softplus(s): dg/ds = -A sigmoid(s), dg/dA_log = g.
      const T ds = dgp[i] * -A * sigmoid(s);
      dap[i] = ds;
      dbp[c] += ds;
      dA_part[size_t(c)] += dgp[i] * -A * softplus(s);
    });
    for (int64_t h = 0; h < HV; ++h) {
      T sum = 0;
      for (int64_t c = h * Kg; c < (h + 1) * Kg; ++c) sum += dA_part[size_t(c)];
      dalp[h] = sum;
    }
  });
}

}  // namespace longctx::cpu
