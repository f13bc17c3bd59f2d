// Plain reference for ssd (Mamba-2), templated on the arithmetic type S (see rmsnorm.h): the
// recurrence h_t = exp(dt_t A) h_{t-1} + dt_t x_t ⊗ B_t as a sequential loop per (batch, head) —
// no chunks, so it also checks the CPU's chunked forward. `round` is applied where a naive
// implementation stores a tensor of the main dtype (out, dx, ddt, dz, dB, dC); the f32 parameter
// and state tensors are not rounded.
#pragma once

#include <cmath>

#include "harness.h"

namespace longctx::ref {

using test::Ref;
using test::Round;

struct SSDRefs {
  Ref x, dt, A, B, C;  // (B, T, H, P), (B, T, H), (H), (B, T, G, N), (B, T, G, N)
  Ref D, z, dt_bias, initial_states;
  bool dt_softplus = false;
};

struct SSDOut {
  Ref out, final_states;
};

namespace detail_ssd {
struct Dims {
  int64_t batch, L, H, P, G, N;
};
inline Dims dims(const SSDRefs& in) {
  return {in.x.shape[0], in.x.shape[1], in.x.shape[2], in.x.shape[3], in.B.shape[2], in.B.shape[3]};
}
template <class S>
S dt_of(const SSDRefs& in, int64_t i, int64_t h) {
  S v = S(in.dt[i]) + (in.dt_bias.numel() ? S(in.dt_bias[h]) : S(0));
  if (in.dt_softplus) v = v > S(20) ? v : std::log1p(std::exp(v));
  return v;
}
}  // namespace detail_ssd

template <class S>
SSDOut ssd_fwd(const SSDRefs& in, const Round& round) {
  const auto [batch, L, H, P, G, N] = detail_ssd::dims(in);
  SSDOut r{Ref(in.x.shape), Ref({batch, H, P, N})};
  std::vector<S> h(static_cast<size_t>(P * N));
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t hd = 0; hd < H; ++hd) {
      const int64_t g = hd / (H / G), bh = b * H + hd;
      for (int64_t i = 0; i < P * N; ++i)
        h[size_t(i)] = in.initial_states.numel() ? S(in.initial_states[bh * P * N + i]) : S(0);
      for (int64_t t = 0; t < L; ++t) {
        const S dt = detail_ssd::dt_of<S>(in, (b * L + t) * H + hd, hd);
        const S e = std::exp(dt * S(in.A[hd]));
        const int64_t xo = ((b * L + t) * H + hd) * P, bo = ((b * L + t) * G + g) * N;
        for (int64_t p = 0; p < P; ++p) {
          S y = 0;
          for (int64_t n = 0; n < N; ++n) {
            S& s = h[size_t(p * N + n)];
            s = e * s + dt * S(in.x[xo + p]) * S(in.B[bo + n]);
            y += S(in.C[bo + n]) * s;
          }
          if (in.D.numel()) y += S(in.D[hd]) * S(in.x[xo + p]);
          if (in.z.numel()) {
            const S zv = S(in.z[xo + p]);
            y *= zv / (S(1) + std::exp(-zv));
          }
          r.out[xo + p] = round(double(y));
        }
      }
      for (int64_t i = 0; i < P * N; ++i) r.final_states[bh * P * N + i] = double(h[size_t(i)]);
    }
  return r;
}

struct SSDGradRefs {
  Ref dx, ddt, dA, dB, dC, dD, dz, ddt_bias, dinitial_states;
};

// dfinal_states may be empty.
template <class S>
SSDGradRefs ssd_bwd(const Ref& dout, const Ref& dfinal_states, const SSDRefs& in,
                    const Round& round) {
  const auto [batch, L, H, P, G, N] = detail_ssd::dims(in);
  auto opt = [](const Ref& like) { return Ref(like.numel() ? like.shape : Shape{0}); };
  SSDGradRefs gr{Ref(in.x.shape), Ref(in.dt.shape), Ref(in.A.shape),
                 Ref(in.B.shape), Ref(in.C.shape),  opt(in.D),
                 opt(in.z),       opt(in.dt_bias),  opt(in.initial_states)};
  const int64_t PN = P * N;
  std::vector<S> dA(size_t(H), S(0)), dD(size_t(H), S(0)), dbias(size_t(H), S(0)),
      dB(size_t(in.B.numel()), S(0)), dC(size_t(in.C.numel()), S(0));
  std::vector<S> hs(static_cast<size_t>((L + 1) * PN)), g(static_cast<size_t>(PN)),
      dts(static_cast<size_t>(L));
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t hd = 0; hd < H; ++hd) {
      const int64_t grp = hd / (H / G), bh = b * H + hd;
      const S A = S(in.A[hd]);
      for (int64_t i = 0; i < PN; ++i)
        hs[size_t(i)] = in.initial_states.numel() ? S(in.initial_states[bh * PN + i]) : S(0);
      for (int64_t t = 0; t < L; ++t) {
        const S dt = detail_ssd::dt_of<S>(in, (b * L + t) * H + hd, hd), e = std::exp(dt * A);
        dts[size_t(t)] = dt;
        const int64_t xo = ((b * L + t) * H + hd) * P, bo = ((b * L + t) * G + grp) * N;
        for (int64_t p = 0; p < P; ++p)
          for (int64_t n = 0; n < N; ++n)
            hs[size_t((t + 1) * PN + p * N + n)] =
                e * hs[size_t(t * PN + p * N + n)] + dt * S(in.x[xo + p]) * S(in.B[bo + n]);
      }
      for (int64_t i = 0; i < PN; ++i)
        g[size_t(i)] = dfinal_states.numel() ? S(dfinal_states[bh * PN + i]) : S(0);
      S dA_h = 0, dD_h = 0, dbias_h = 0;
      for (int64_t t = L - 1; t >= 0; --t) {
        const S dt = dts[size_t(t)], e = std::exp(dt * A);
        const int64_t xo = ((b * L + t) * H + hd) * P, bo = ((b * L + t) * G + grp) * N;
        const S* hc = hs.data() + (t + 1) * PN;
        const S* hp = hs.data() + t * PN;
        S da = 0, ddt = 0;
        for (int64_t p = 0; p < P; ++p) {
          const S xv = S(in.x[xo + p]);
          S dy = S(dout[xo + p]);
          if (in.z.numel()) {
            S y = in.D.numel() ? S(in.D[hd]) * xv : S(0);
            for (int64_t n = 0; n < N; ++n) y += S(in.C[bo + n]) * hc[p * N + n];
            const S zv = S(in.z[xo + p]), sg = S(1) / (S(1) + std::exp(-zv));
            gr.dz[xo + p] = round(double(dy * y * sg * (S(1) + zv * (S(1) - sg))));
            dy = dy * (zv * sg);
          }
          S gb = 0;
          for (int64_t n = 0; n < N; ++n) {
            S& gv = g[size_t(p * N + n)];
            gv += dy * S(in.C[bo + n]);  // now d loss / d h_t[p, n]
            dC[size_t(bo + n)] += dy * hc[p * N + n];
            dB[size_t(bo + n)] += gv * (dt * xv);
            da += gv * hp[p * N + n];
            gb += gv * S(in.B[bo + n]);
            gv *= e;  // into h_{t-1}
          }
          gr.dx[xo + p] = round(double(dt * gb + (in.D.numel() ? dy * S(in.D[hd]) : S(0))));
          ddt += xv * gb;
          if (in.D.numel()) dD_h += dy * xv;
        }
        ddt += da * e * A;
        dA_h += da * e * dt;
        if (in.dt_softplus) {
          const S v =
              S(in.dt[(b * L + t) * H + hd]) + (in.dt_bias.numel() ? S(in.dt_bias[hd]) : S(0));
          ddt *= S(1) / (S(1) + std::exp(-v));
        }
        dbias_h += ddt;
        gr.ddt[(b * L + t) * H + hd] = round(double(ddt));
      }
      if (in.initial_states.numel())
        for (int64_t i = 0; i < PN; ++i) gr.dinitial_states[bh * PN + i] = double(g[size_t(i)]);
      dA[size_t(hd)] += dA_h;
      dD[size_t(hd)] += dD_h;
      dbias[size_t(hd)] += dbias_h;
    }
  for (int64_t h = 0; h < H; ++h) {
    gr.dA[h] = double(dA[size_t(h)]);
    if (in.D.numel()) gr.dD[h] = double(dD[size_t(h)]);
    if (in.dt_bias.numel()) gr.ddt_bias[h] = double(dbias[size_t(h)]);
  }
  for (int64_t i = 0; i < in.B.numel(); ++i) {
    gr.dB[i] = round(double(dB[size_t(i)]));
    gr.dC[i] = round(double(dC[size_t(i)]));
  }
  return gr;
}

}  // namespace longctx::ref
