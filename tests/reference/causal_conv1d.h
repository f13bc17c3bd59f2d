// Plain reference for causal_conv1d, templated on the arithmetic type S (see rmsnorm.h): the
// definition summed directly, and its gradient written out by hand.
#pragma once

#include <cmath>

#include "harness.h"

namespace longctx::ref {

using test::Ref;
using test::Round;

template <class S>
S silu(S s) {
  return s / (S(1) + std::exp(-s));
}

// x: (B, D, T); weight: (D, W); bias: (D) or empty. Returns the pre-activation when pre = true.
template <class S>
Ref causal_conv1d_fwd(const Ref& x, const Ref& weight, const Ref& bias, bool use_silu,
                      const Round& round, bool pre = false) {
  const int64_t B = x.shape[0], D = x.shape[1], L = x.shape[2], W = weight.shape[1];
  Ref out(x.shape);
  for (int64_t bi = 0; bi < B; ++bi)
    for (int64_t d = 0; d < D; ++d)
      for (int64_t t = 0; t < L; ++t) {
        S s = bias.numel() ? S(bias[d]) : S(0);
        for (int64_t k = 0; k < W; ++k) {
          const int64_t src = t - (W - 1) + k;
          if (src >= 0) s += S(weight[d * W + k]) * S(x[(bi * D + d) * L + src]);
        }
        out[(bi * D + d) * L + t] = round(double(use_silu && !pre ? silu(s) : s));
      }
  return out;
}

struct CausalConv1dGrads {
  Ref dx, dweight, dbias;
};

template <class S>
CausalConv1dGrads causal_conv1d_bwd(const Ref& dout, const Ref& x, const Ref& weight,
                                    const Ref& bias, bool use_silu, const Round& round) {
  const int64_t B = x.shape[0], D = x.shape[1], L = x.shape[2], W = weight.shape[1];
  const Ref pre = causal_conv1d_fwd<S>(x, weight, bias, use_silu, test::no_round, true);
  Ref g(x.shape);  // d loss / d pre-activation
  for (int64_t i = 0; i < g.numel(); ++i) {
    const S s = S(pre[i]), sg = S(1) / (S(1) + std::exp(-s));
    g[i] = double(S(dout[i]) * (use_silu ? sg * (S(1) + s * (S(1) - sg)) : S(1)));
  }
  CausalConv1dGrads r{Ref(x.shape), Ref(weight.shape), Ref(bias.numel() ? bias.shape : Shape{0})};
  std::vector<S> dw(size_t(D * W), S(0)), db(size_t(D), S(0)), dx(size_t(x.numel()), S(0));
  for (int64_t bi = 0; bi < B; ++bi)
    for (int64_t d = 0; d < D; ++d)
      for (int64_t t = 0; t < L; ++t) {
        const S gv = S(g[(bi * D + d) * L + t]);
        db[size_t(d)] += gv;
        for (int64_t k = 0; k < W; ++k) {
          const int64_t src = t - (W - 1) + k;
          if (src < 0) continue;
          dw[size_t(d * W + k)] += gv * S(x[(bi * D + d) * L + src]);
          dx[size_t((bi * D + d) * L + src)] += gv * S(weight[d * W + k]);
        }
      }
  for (int64_t i = 0; i < x.numel(); ++i) r.dx[i] = round(double(dx[size_t(i)]));
  for (int64_t i = 0; i < D * W; ++i) r.dweight[i] = round(double(dw[size_t(i)]));
  if (bias.numel())
    for (int64_t d = 0; d < D; ++d) r.dbias[d] = round(double(db[size_t(d)]));
  return r;
}

}  // namespace longctx::ref
