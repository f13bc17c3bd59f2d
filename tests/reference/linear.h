// Plain reference for linear (out = x @ weight^T + bias), templated on the arithmetic type S:
// S = Oracle gives the oracle, S = float with a rounding `round` a naive same-precision one.
// An empty Ref for bias means no bias.
#pragma once

#include "harness.h"

namespace longctx::ref {

using test::Ref;
using test::Round;

template <class S>
Ref linear_fwd(const Ref& x, const Ref& weight, const Ref& bias, const Round& round) {
  const int64_t Cin = x.shape.back(), Cout = weight.shape[0], M = x.numel() / Cin;
  Shape out_shape = x.shape;
  out_shape.back() = Cout;
  Ref out(out_shape);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t o = 0; o < Cout; ++o) {
      S sum = bias.v.empty() ? S(0) : S(bias[o]);
      for (int64_t k = 0; k < Cin; ++k) sum += S(x[i * Cin + k]) * S(weight[o * Cin + k]);
      out[i * Cout + o] = round(double(sum));
    }
  return out;
}

struct LinearGrads {
  Ref dx, dweight, dbias;
};

template <class S>
LinearGrads linear_bwd(const Ref& dout, const Ref& x, const Ref& weight, const Round& round) {
  const int64_t Cin = x.shape.back(), Cout = weight.shape[0], M = x.numel() / Cin;
  LinearGrads g{Ref(x.shape), Ref(weight.shape), Ref({Cout})};
  for (int64_t i = 0; i < M; ++i)
    for (int64_t k = 0; k < Cin; ++k) {
      S sum = 0;
      for (int64_t o = 0; o < Cout; ++o) sum += S(dout[i * Cout + o]) * S(weight[o * Cin + k]);
      g.dx[i * Cin + k] = round(double(sum));
    }
  for (int64_t o = 0; o < Cout; ++o) {
    for (int64_t k = 0; k < Cin; ++k) {
      S sum = 0;
      for (int64_t i = 0; i < M; ++i) sum += S(dout[i * Cout + o]) * S(x[i * Cin + k]);
      g.dweight[o * Cin + k] = round(double(sum));
    }
    S sum = 0;
    for (int64_t i = 0; i < M; ++i) sum += S(dout[i * Cout + o]);
    g.dbias[o] = round(double(sum));
  }
  return g;
}

}  // namespace longctx::ref
