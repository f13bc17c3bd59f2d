// Plain reference for rmsnorm, templated on the arithmetic type S: S = Oracle gives the oracle,
// S = float with a rounding `round` gives a naive same-precision implementation. The fused
// add_rmsnorm is the unfused composition: an add, stored, then rmsnorm (and in the backward
// rmsnorm's dx, stored, then the add of dh).
#pragma once

#include <cmath>

#include "harness.h"

namespace longctx::ref {

using test::Ref;
using test::Round;

struct RMSNormOut {
  Ref out, rstd;
};

template <class S>
RMSNormOut rmsnorm_fwd(const Ref& x, const Ref& weight, double eps, const Round& round) {
  const int64_t C = x.shape.back(), rows = x.numel() / C;
  RMSNormOut r{Ref(x.shape), Ref({rows})};
  for (int64_t i = 0; i < rows; ++i) {
    S sum_sq = 0;
    for (int64_t c = 0; c < C; ++c) sum_sq += S(x[i * C + c]) * S(x[i * C + c]);
    const S inv = S(1) / std::sqrt(sum_sq / S(C) + S(eps));
    r.rstd[i] = double(inv);
    for (int64_t c = 0; c < C; ++c)
      r.out[i * C + c] = round(double(S(x[i * C + c]) * inv * S(weight[c])));
  }
  return r;
}

struct RMSNormGrads {
  Ref dx, dweight;
};

template <class S>
RMSNormGrads rmsnorm_bwd(const Ref& dout, const Ref& x, const Ref& weight, double eps,
                         const Round& round) {
  const int64_t C = x.shape.back(), rows = x.numel() / C;
  RMSNormGrads g{Ref(x.shape), Ref({C})};
  std::vector<S> dw(size_t(C), S(0));
  for (int64_t i = 0; i < rows; ++i) {
    S sum_sq = 0, dot = 0;
    for (int64_t c = 0; c < C; ++c) {
      sum_sq += S(x[i * C + c]) * S(x[i * C + c]);
      dot += S(dout[i * C + c]) * S(weight[c]) * S(x[i * C + c]);
    }
    const S inv = S(1) / std::sqrt(sum_sq / S(C) + S(eps));
    for (int64_t c = 0; c < C; ++c) {
      const S xv = S(x[i * C + c]), dy = S(dout[i * C + c]);
      g.dx[i * C + c] = round(double(dy * S(weight[c]) * inv - xv * dot * inv * inv * inv / S(C)));
      dw[size_t(c)] += dy * xv * inv;
    }
  }
  for (int64_t c = 0; c < C; ++c) g.dweight[c] = round(double(dw[size_t(c)]));
  return g;
}

struct AddRMSNormOut {
  Ref h, out, rstd;
};

template <class S>
AddRMSNormOut add_rmsnorm_fwd(const Ref& x, const Ref& residual, const Ref& weight, double eps,
                              const Round& round) {
  Ref h(x.shape);
  for (int64_t i = 0; i < x.numel(); ++i) h[i] = round(double(S(x[i]) + S(residual[i])));
  RMSNormOut norm = rmsnorm_fwd<S>(h, weight, eps, round);
  return {h, norm.out, norm.rstd};
}

// dx = dh + rmsnorm's dx at h (the gradient of both x and residual).
template <class S>
RMSNormGrads add_rmsnorm_bwd(const Ref& dout, const Ref& dh, const Ref& h, const Ref& weight,
                             double eps, const Round& round) {
  RMSNormGrads g = rmsnorm_bwd<S>(dout, h, weight, eps, round);
  for (int64_t i = 0; i < h.numel(); ++i) g.dx[i] = round(double(S(dh[i]) + S(g.dx[i])));
  return g;
}

}  // namespace longctx::ref
