// Plain reference for selective_scan (Mamba-1's S6), templated on the arithmetic type S (see
// rmsnorm.h): the definition as a sequential loop over t per (batch, channel, state), keeping
// every state for the backward. `round` is applied where a naive implementation stores a
// tensor of the main dtype (out, du, ddelta, dz, dB, dC); the f32 parameter and state tensors
// (last_state, dA, dD, ddelta_bias, dh0) are not rounded.
#pragma once

#include <cmath>

#include "harness.h"

namespace longctx::ref {

using test::Ref;
using test::Round;

// The inputs as float64 arrays; optional ones are empty (numel() == 0).
struct SelectiveScanRefs {
  Ref u, delta, A, B, C;  // (B, Dm, T), (B, Dm, T), (Dm, N), (B, G, N, T), (B, G, N, T)
  Ref D, z, delta_bias, h0;
  bool delta_softplus = false;
};

struct SelectiveScanOut {
  Ref out, last_state;
};

template <class S>
S softplus_ref(S v) {
  return v > S(20) ? v : std::log1p(std::exp(v));
}

namespace detail_ss {
struct Dims {
  int64_t batch, Dm, L, N, G;
};
inline Dims dims(const SelectiveScanRefs& in) {
  return {in.u.shape[0], in.u.shape[1], in.u.shape[2], in.A.shape[1], in.B.shape[1]};
}
}  // namespace detail_ss

template <class S>
SelectiveScanOut selective_scan_fwd(const SelectiveScanRefs& in, const Round& round) {
  const auto [batch, Dm, L, N, G] = detail_ss::dims(in);
  SelectiveScanOut r{Ref(in.u.shape), Ref({batch, Dm, N})};
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t d = 0; d < Dm; ++d) {
      const int64_t row = b * Dm + d, grp = (b * G + d / (Dm / G)) * N;
      std::vector<S> h(static_cast<size_t>(N));
      for (int64_t n = 0; n < N; ++n) h[size_t(n)] = in.h0.numel() ? S(in.h0[row * N + n]) : S(0);
      for (int64_t t = 0; t < L; ++t) {
        S dt = S(in.delta[row * L + t]) + (in.delta_bias.numel() ? S(in.delta_bias[d]) : S(0));
        if (in.delta_softplus) dt = softplus_ref(dt);
        const S ut = S(in.u[row * L + t]);
        S y = 0;
        for (int64_t n = 0; n < N; ++n) {
          const S a = std::exp(dt * S(in.A[d * N + n]));
          h[size_t(n)] = a * h[size_t(n)] + dt * ut * S(in.B[(grp + n) * L + t]);
          y += S(in.C[(grp + n) * L + t]) * h[size_t(n)];
        }
        if (in.D.numel()) y += S(in.D[d]) * ut;
        if (in.z.numel()) {
          const S zv = S(in.z[row * L + t]);
          y *= zv / (S(1) + std::exp(-zv));
        }
        r.out[row * L + t] = round(double(y));
      }
      for (int64_t n = 0; n < N; ++n) r.last_state[row * N + n] = double(h[size_t(n)]);
    }
  return r;
}

struct SelectiveScanGradRefs {
  Ref du, ddelta, dA, dB, dC, dD, dz, ddelta_bias, dh0;
};

// dlast_state may be empty.
template <class S>
SelectiveScanGradRefs selective_scan_bwd(const Ref& dout, const Ref& dlast_state,
                                         const SelectiveScanRefs& in, const Round& round) {
  const auto [batch, Dm, L, N, G] = detail_ss::dims(in);
  auto opt = [](const Ref& like) { return Ref(like.numel() ? like.shape : Shape{0}); };
  SelectiveScanGradRefs gr{Ref(in.u.shape), Ref(in.u.shape),    Ref(in.A.shape),
                           Ref(in.B.shape), Ref(in.C.shape),    opt(in.D),
                           opt(in.z),       opt(in.delta_bias), opt(in.h0)};
  std::vector<S> dA(size_t(Dm * N), S(0)), dB(size_t(in.B.numel()), S(0)),
      dC(size_t(in.C.numel()), S(0)), dD(size_t(Dm), S(0)), dbias(size_t(Dm), S(0));
  std::vector<S> hs(static_cast<size_t>((L + 1) * N)), dts(static_cast<size_t>(L)),
      g(static_cast<size_t>(N));
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t d = 0; d < Dm; ++d) {
      const int64_t row = b * Dm + d, grp = (b * G + d / (Dm / G)) * N;
      auto Bv = [&](int64_t n, int64_t t) { return S(in.B[(grp + n) * L + t]); };
      auto Cv = [&](int64_t n, int64_t t) { return S(in.C[(grp + n) * L + t]); };
      // Forward, keeping h_{t} in hs[(t + 1) * N + n] and h_{-1} in hs[n].
      for (int64_t n = 0; n < N; ++n) hs[size_t(n)] = in.h0.numel() ? S(in.h0[row * N + n]) : S(0);
      for (int64_t t = 0; t < L; ++t) {
        S dt = S(in.delta[row * L + t]) + (in.delta_bias.numel() ? S(in.delta_bias[d]) : S(0));
        if (in.delta_softplus) dt = softplus_ref(dt);
        dts[size_t(t)] = dt;
        for (int64_t n = 0; n < N; ++n)
          hs[size_t((t + 1) * N + n)] = std::exp(dt * S(in.A[d * N + n])) * hs[size_t(t * N + n)] +
                                        dt * S(in.u[row * L + t]) * Bv(n, t);
      }
      for (int64_t n = 0; n < N; ++n)
        g[size_t(n)] = dlast_state.numel() ? S(dlast_state[row * N + n]) : S(0);
      // Per-sequence sums of the parameter gradients, added over the batch afterwards.
      std::vector<S> dA_row(static_cast<size_t>(N), S(0));
      S dD_row = 0, dbias_row = 0;
      for (int64_t t = L - 1; t >= 0; --t) {
        const S dt = dts[size_t(t)], ut = S(in.u[row * L + t]);
        S dy = S(dout[row * L + t]);
        if (in.z.numel()) {
          S y = 0;
          for (int64_t n = 0; n < N; ++n) y += Cv(n, t) * hs[size_t((t + 1) * N + n)];
          if (in.D.numel()) y += S(in.D[d]) * ut;
          const S zv = S(in.z[row * L + t]), sg = S(1) / (S(1) + std::exp(-zv));
          gr.dz[row * L + t] = round(double(dy * y * sg * (S(1) + zv * (S(1) - sg))));
          dy = dy * (zv * sg);
        }
        S ddt = 0, du = 0;
        for (int64_t n = 0; n < N; ++n) {
          const S An = S(in.A[d * N + n]), a = std::exp(dt * An);
          g[size_t(n)] += dy * Cv(n, t);  // now d loss / d h_t[n]
          const S hprev = hs[size_t(t * N + n)];
          dC[size_t((grp + n) * L + t)] += dy * hs[size_t((t + 1) * N + n)];
          dB[size_t((grp + n) * L + t)] += g[size_t(n)] * dt * ut;
          du += g[size_t(n)] * dt * Bv(n, t);
          ddt += g[size_t(n)] * (hprev * a * An + Bv(n, t) * ut);
          dA_row[size_t(n)] += g[size_t(n)] * hprev * a * dt;
          g[size_t(n)] *= a;  // into h_{t-1}
        }
        if (in.D.numel()) {
          du += dy * S(in.D[d]);
          dD_row += dy * ut;
        }
        if (in.delta_softplus) {
          const S v =
              S(in.delta[row * L + t]) + (in.delta_bias.numel() ? S(in.delta_bias[d]) : S(0));
          ddt *= S(1) / (S(1) + std::exp(-v));
        }
        dbias_row += ddt;
        gr.du[row * L + t] = round(double(du));
        gr.ddelta[row * L + t] = round(double(ddt));
      }
      if (in.h0.numel())
        for (int64_t n = 0; n < N; ++n) gr.dh0[row * N + n] = double(g[size_t(n)]);
      for (int64_t n = 0; n < N; ++n) dA[size_t(d * N + n)] += dA_row[size_t(n)];
      dD[size_t(d)] += dD_row;
      dbias[size_t(d)] += dbias_row;
    }
  for (int64_t i = 0; i < Dm * N; ++i) gr.dA[i] = double(dA[size_t(i)]);
  for (int64_t i = 0; i < in.B.numel(); ++i) {
    gr.dB[i] = round(double(dB[size_t(i)]));
    gr.dC[i] = round(double(dC[size_t(i)]));
  }
  if (in.D.numel())
    for (int64_t d = 0; d < Dm; ++d) gr.dD[d] = double(dD[size_t(d)]);
  if (in.delta_bias.numel())
    for (int64_t d = 0; d < Dm; ++d) gr.ddelta_bias[d] = double(dbias[size_t(d)]);
  return gr;
}

}  // namespace longctx::ref
