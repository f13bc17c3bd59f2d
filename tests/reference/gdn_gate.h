// Plain reference for gdn_gate (g = -exp(A_log[c / Kg]) softplus(a + dt_bias[c])) and for the
// sigmoid ops, templated on the arithmetic type S.
#pragma once

#include <cmath>

#include "harness.h"

namespace longctx::ref {

using test::Ref;
using test::Round;

template <class S>
S softplus_ref(S s) {
  return s > S(20) ? s : std::log1p(std::exp(s));
}

template <class S>
S sigmoid_ref(S s) {
  return S(1) / (S(1) + std::exp(-s));
}

template <class S>
Ref gdn_gate_fwd(const Ref& a, const Ref& A_log, const Ref& dt_bias, const Round& round) {
  const int64_t D = dt_bias.numel(), Kg = D / A_log.numel();
  Ref g(a.shape);
  for (int64_t i = 0; i < a.numel(); ++i) {
    const int64_t c = i % D;
    g[i] = round(double(-std::exp(S(A_log[c / Kg])) * softplus_ref(S(a[i]) + S(dt_bias[c]))));
  }
  return g;
}

struct GdnGateGrads {
  Ref da, dA_log, ddt_bias;
};

// The parameter gradients summed in S, row by row (a naive same-precision sum).
template <class S>
GdnGateGrads gdn_gate_bwd(const Ref& dg, const Ref& a, const Ref& A_log, const Ref& dt_bias,
                          const Round& round) {
  const int64_t D = dt_bias.numel(), HV = A_log.numel(), Kg = D / HV;
  GdnGateGrads r{Ref(a.shape), Ref(A_log.shape), Ref(dt_bias.shape)};
  std::vector<S> dA(size_t(HV), S(0)), db(size_t(D), S(0));
  for (int64_t i = 0; i < a.numel(); ++i) {
    const int64_t c = i % D;
    const S A = std::exp(S(A_log[c / Kg])), s = S(a[i]) + S(dt_bias[c]), d = S(dg[i]);
    const S ds = d * -A * sigmoid_ref(s);
    r.da[i] = round(double(ds));
    db[size_t(c)] += ds;
    dA[size_t(c / Kg)] += d * -A * softplus_ref(s);
  }
  for (int64_t c = 0; c < D; ++c) r.ddt_bias[c] = round(double(db[size_t(c)]));
  for (int64_t h = 0; h < HV; ++h) r.dA_log[h] = round(double(dA[size_t(h)]));
  return r;
}

template <class S>
Ref sigmoid_gate_fwd(const Ref& gate, const Ref& up, const Round& round) {
  Ref out(gate.shape);
  for (int64_t i = 0; i < gate.numel(); ++i)
    out[i] = round(double(sigmoid_ref(S(gate[i])) * S(up[i])));
  return out;
}

struct SigmoidGateGrads {
  Ref dgate, dup;
};

template <class S>
SigmoidGateGrads sigmoid_gate_bwd(const Ref& dout, const Ref& gate, const Ref& up,
                                  const Round& round) {
  SigmoidGateGrads r{Ref(gate.shape), Ref(gate.shape)};
  for (int64_t i = 0; i < gate.numel(); ++i) {
    const S s = sigmoid_ref(S(gate[i])), dy = S(dout[i]);
    r.dgate[i] = round(double(dy * S(up[i]) * s * (S(1) - s)));
    r.dup[i] = round(double(dy * s));
  }
  return r;
}

}  // namespace longctx::ref
