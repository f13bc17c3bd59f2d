// Plain reference for rglru_gate, templated on the arithmetic type S (see rmsnorm.h).
#pragma once

#include <cmath>

#include "harness.h"

namespace longctx::ref {

using test::Ref;
using test::Round;

struct RGLRUGateOut {
  Ref a, b;
};

template <class S>
S sigmoid_s(S s) {
  return S(1) / (S(1) + std::exp(-s));
}
template <class S>
S softplus_s(S s) {
  return std::log1p(std::exp(s));
}

template <class S>
RGLRUGateOut rglru_gate_fwd(const Ref& x, const Ref& gate_a, const Ref& gate_x, const Ref& lambda,
                            const Round& round) {
  const int64_t D = x.shape.back(), rows = x.numel() / D;
  RGLRUGateOut r{Ref(x.shape), Ref(x.shape)};
  for (int64_t i = 0; i < rows * D; ++i) {
    const S log_a = S(-8) * sigmoid_s(S(gate_a[i])) * softplus_s(S(lambda[i % D]));
    r.a[i] = round(double(std::exp(log_a)));
    r.b[i] =
        round(double(std::sqrt(-std::expm1(S(2) * log_a)) * sigmoid_s(S(gate_x[i])) * S(x[i])));
  }
  return r;
}

struct RGLRUGateGrads {
  Ref dx, dgate_a, dgate_x, dlambda;
};

template <class S>
RGLRUGateGrads rglru_gate_bwd(const Ref& da, const Ref& db, const Ref& x, const Ref& gate_a,
                              const Ref& gate_x, const Ref& lambda, const Round& round) {
  const int64_t D = x.shape.back(), rows = x.numel() / D;
  RGLRUGateGrads g{Ref(x.shape), Ref(x.shape), Ref(x.shape), Ref({D})};
  std::vector<S> dl(static_cast<size_t>(D), S(0));
  for (int64_t i = 0; i < rows * D; ++i) {
    const int64_t c = i % D;
    const S ra = sigmoid_s(S(gate_a[i])), ix = sigmoid_s(S(gate_x[i])),
            sp = softplus_s(S(lambda[c]));
    const S log_a = S(-8) * ra * sp, a = std::exp(log_a), mult = std::sqrt(S(1) - a * a);
    const S dlog_a = S(da[i]) * a - S(db[i]) * ix * S(x[i]) * a * a / mult;
    g.dgate_a[i] = round(double(dlog_a * S(-8) * sp * ra * (S(1) - ra)));
    dl[size_t(c)] += dlog_a * S(-8) * ra * sigmoid_s(S(lambda[c]));
    g.dgate_x[i] = round(double(S(db[i]) * mult * S(x[i]) * ix * (S(1) - ix)));
    g.dx[i] = round(double(S(db[i]) * mult * ix));
  }
  for (int64_t c = 0; c < D; ++c) g.dlambda[c] = round(double(dl[size_t(c)]));
  return g;
}

}  // namespace longctx::ref
