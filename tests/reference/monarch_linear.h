// Plain reference for monarch_linear, the four steps of its header as loops, templated on the
// arithmetic type S: S = Oracle gives the oracle, S = float with a rounding `round` a naive
// same-precision one that stores y1 (= y1t), y2 and out, and in the backward dw2, dy1t (= dy1),
// dx and dw1. An empty Ref for bias means no bias.
#pragma once

#include "harness.h"

namespace longctx::ref {

using test::Ref;
using test::Round;

// Dimensions of x (M, n_in), w1 (k, q, p), w2 (l, s, r).
struct MonarchDims {
  int64_t M, k, q, p, l, s, r;
  MonarchDims(const Ref& x, const Ref& w1, const Ref& w2)
      : M(x.numel() / (w1.shape[0] * w1.shape[2])),
        k(w1.shape[0]),
        q(w1.shape[1]),
        p(w1.shape[2]),
        l(w2.shape[0]),
        s(w2.shape[1]),
        r(w2.shape[2]) {}
};

struct MonarchOut {
  Ref out;  // (..., l·s)
  Ref mid;  // (..., l·r): y1t[m, a, c] at m·l·r + a·r + c
};

template <class S>
MonarchOut monarch_linear_fwd(const Ref& x, const Ref& w1, const Ref& w2, const Ref& bias,
                              const Round& round) {
  const MonarchDims d(x, w1, w2);
  const int64_t n_in = d.k * d.p, n_out = d.l * d.s, kq = d.k * d.q;
  Shape out_shape = x.shape, mid_shape = x.shape;
  out_shape.back() = n_out;
  mid_shape.back() = kq;
  MonarchOut res{Ref(out_shape), Ref(mid_shape)};
  Ref y1({kq}), y2({n_out});  // one row's
  for (int64_t m = 0; m < d.M; ++m) {
    // 1. y1[i, j] = sum_c x[i·p + c] · w1[i, j, c]
    for (int64_t i = 0; i < d.k; ++i)
      for (int64_t j = 0; j < d.q; ++j) {
        S sum = 0;
        for (int64_t c = 0; c < d.p; ++c)
          sum += S(x[m * n_in + i * d.p + c]) * S(w1[(i * d.q + j) * d.p + c]);
        y1[i * d.q + j] = round(double(sum));
      }
    // 2. y1t[a, c] = y1[c·l + a]
    for (int64_t a = 0; a < d.l; ++a)
      for (int64_t c = 0; c < d.r; ++c) res.mid[m * kq + a * d.r + c] = y1[c * d.l + a];
    // 3. y2[a, b] = sum_c y1t[a, c] · w2[a, b, c]
    for (int64_t a = 0; a < d.l; ++a)
      for (int64_t b = 0; b < d.s; ++b) {
        S sum = 0;
        for (int64_t c = 0; c < d.r; ++c)
          sum += S(res.mid[m * kq + a * d.r + c]) * S(w2[(a * d.s + b) * d.r + c]);
        y2[a * d.s + b] = round(double(sum));
      }
    // 4. out[b·l + a] = y2[a, b] + bias[b·l + a]
    for (int64_t a = 0; a < d.l; ++a)
      for (int64_t b = 0; b < d.s; ++b) {
        const int64_t o = b * d.l + a;
        const S value = S(y2[a * d.s + b]) + (bias.v.empty() ? S(0) : S(bias[o]));
        res.out[m * n_out + o] = round(double(value));
      }
  }
  return res;
}

struct MonarchGrads {
  Ref dx, dw1, dw2, dbias;
};

template <class S>
MonarchGrads monarch_linear_bwd(const Ref& dout, const Ref& x, const Ref& w1, const Ref& w2,
                                const Round& round) {
  const MonarchDims d(x, w1, w2);
  const int64_t n_in = d.k * d.p, n_out = d.l * d.s, kq = d.k * d.q;
  const Ref mid = monarch_linear_fwd<S>(x, w1, w2, Ref(), round).mid;  // y1t
  MonarchGrads g{Ref(x.shape), Ref(w1.shape), Ref(w2.shape), Ref({n_out})};
  // dy2[m, a, b] = dout[m, b·l + a]
  auto dy2 = [&](int64_t m, int64_t a, int64_t b) { return dout[m * n_out + b * d.l + a]; };
  // dw2[a, b, c] = sum_m dy2[m, a, b] · y1t[m, a, c]
  for (int64_t a = 0; a < d.l; ++a)
    for (int64_t b = 0; b < d.s; ++b)
      for (int64_t c = 0; c < d.r; ++c) {
        S sum = 0;
        for (int64_t m = 0; m < d.M; ++m) sum += S(dy2(m, a, b)) * S(mid[m * kq + a * d.r + c]);
        g.dw2[(a * d.s + b) * d.r + c] = round(double(sum));
      }
  // dy1[m, c·l + a] = dy1t[m, a, c] = sum_b dy2[m, a, b] · w2[a, b, c]
  Ref dy1({d.M, kq});
  for (int64_t m = 0; m < d.M; ++m)
    for (int64_t a = 0; a < d.l; ++a)
      for (int64_t c = 0; c < d.r; ++c) {
        S sum = 0;
        for (int64_t b = 0; b < d.s; ++b) sum += S(dy2(m, a, b)) * S(w2[(a * d.s + b) * d.r + c]);
        dy1[m * kq + c * d.l + a] = round(double(sum));
      }
  // dx[m, i·p + e] = sum_j dy1[m, i·q + j] · w1[i, j, e];  dw1[i, j, e] = sum_m dy1 · x
  for (int64_t i = 0; i < d.k; ++i)
    for (int64_t e = 0; e < d.p; ++e) {
      for (int64_t m = 0; m < d.M; ++m) {
        S sum = 0;
        for (int64_t j = 0; j < d.q; ++j)
          sum += S(dy1[m * kq + i * d.q + j]) * S(w1[(i * d.q + j) * d.p + e]);
        g.dx[m * n_in + i * d.p + e] = round(double(sum));
      }
      for (int64_t j = 0; j < d.q; ++j) {
        S sum = 0;
        for (int64_t m = 0; m < d.M; ++m)
          sum += S(dy1[m * kq + i * d.q + j]) * S(x[m * n_in + i * d.p + e]);
        g.dw1[(i * d.q + j) * d.p + e] = round(double(sum));
      }
    }
  // dbias[o] = sum_m dout[m, o]
  for (int64_t o = 0; o < n_out; ++o) {
    S sum = 0;
    for (int64_t m = 0; m < d.M; ++m) sum += S(dout[m * n_out + o]);
    g.dbias[o] = round(double(sum));
  }
  return g;
}

// The dense weight (n_out, n_in) of the Monarch matrix (w1, w2), in linear's layout
// (out = x @ weightᵀ): the forward applied to the rows of the identity, transposed.
inline Ref monarch_dense(const Ref& w1, const Ref& w2) {
  const int64_t n_in = w1.shape[0] * w1.shape[2], n_out = w2.shape[0] * w2.shape[1];
  Ref eye({n_in, n_in});
  for (int64_t i = 0; i < n_in; ++i) eye[i * n_in + i] = 1;
  const Ref columns = monarch_linear_fwd<test::Oracle>(eye, w1, w2, Ref(), test::no_round).out;
  Ref weight({n_out, n_in});
  for (int64_t o = 0; o < n_out; ++o)
    for (int64_t i = 0; i < n_in; ++i) weight[o * n_in + i] = columns[i * n_out + o];
  return weight;
}

}  // namespace longctx::ref
