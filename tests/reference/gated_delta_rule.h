// Plain reference for gated_delta_rule, templated on the arithmetic type S (see rmsnorm.h): the
// token-by-token recurrence (fla's naive recurrent form) per (batch row, value head) — no chunks,
// no triangular solve, so it is an independent check of the op's chunked form. The backward runs
// the recurrence in reverse over the stored states. `round` is applied where a naive
// implementation stores a tensor of the main dtype (out, dq, dk, dv, dbeta); g, the states and
// their gradients are f32 (f64) tensors on every backend and are not rounded here.
#pragma once

#include <cmath>
#include <vector>

#include "harness.h"

namespace longctx::ref {

using test::Ref;
using test::Round;

// q, k: (B, T, H, K); v: (B, T, HV, V); g: (B, T, HV) or (B, T, HV, K); beta: (B, T, HV);
// h0: (B, HV, K, V) or empty.
struct GatedDeltaRuleRefs {
  Ref q, k, v, g, beta, h0;
  double scale = 1.0;  // resolved: the op's default is 1/sqrt(K)
  bool l2norm = false;
};

struct GatedDeltaRuleOut {
  Ref out, final_state;
};

struct GatedDeltaRuleGrads {
  Ref dq, dk, dv, dg, dbeta, dh0;
};

namespace detail_gdr {

struct Dims {
  int64_t B, T, H, HV, K, V, Kg;
};
inline Dims dims(const GatedDeltaRuleRefs& in) {
  const int64_t K = in.q.shape[3];
  return {in.q.shape[0],
          in.q.shape[1],
          in.q.shape[2],
          in.v.shape[2],
          K,
          in.v.shape[3],
          in.g.shape.size() == 4 ? K : 1};
}

// q̂ or k̂ of (b, t, h): the row itself, or over sqrt(Σ x² + 1e-6) with l2norm.
template <class S>
std::vector<S> normalized(const Ref& x, int64_t row, int64_t K, bool l2norm) {
  std::vector<S> out(static_cast<size_t>(K));
  S ss = 0;
  for (int64_t c = 0; c < K; ++c) ss += S(x[row * K + c]) * S(x[row * K + c]);
  const S r = l2norm ? S(1) / std::sqrt(ss + S(1e-6)) : S(1);
  for (int64_t c = 0; c < K; ++c) out[size_t(c)] = S(x[row * K + c]) * r;
  return out;
}

// One step of the recurrence on S (K x V, row-major) from the normalised q̂, k̂ of the token:
// S ← diag(a) S, then S ← S + k̂ (β (v − Sᵀ k̂))ᵀ; returns Sᵀ (scale q̂) in o.
template <class S>
void step(std::vector<S>& St, const std::vector<S>& q, const std::vector<S>& k, const Ref& in_v,
          int64_t v_at, const Ref& g, int64_t g_at, S beta, S scale, const Dims& d, S* o) {
  for (int64_t c = 0; c < d.K; ++c) {
    const S a = std::exp(S(g[g_at + (d.Kg == 1 ? 0 : c)]));
    for (int64_t j = 0; j < d.V; ++j) St[size_t(c * d.V + j)] *= a;
  }
  for (int64_t j = 0; j < d.V; ++j) {
    S ks = 0;
    for (int64_t c = 0; c < d.K; ++c) ks += k[size_t(c)] * St[size_t(c * d.V + j)];
    const S u = beta * (S(in_v[v_at + j]) - ks);
    for (int64_t c = 0; c < d.K; ++c) St[size_t(c * d.V + j)] += k[size_t(c)] * u;
  }
  for (int64_t j = 0; j < d.V; ++j) {
    S acc = 0;
    for (int64_t c = 0; c < d.K; ++c) acc += scale * q[size_t(c)] * St[size_t(c * d.V + j)];
    o[j] = acc;
  }
}

}  // namespace detail_gdr

template <class S>
GatedDeltaRuleOut gated_delta_rule_fwd(const GatedDeltaRuleRefs& in, const Round& round) {
  const detail_gdr::Dims d = detail_gdr::dims(in);
  const int64_t R = d.HV / d.H, KV = d.K * d.V;
  GatedDeltaRuleOut r{Ref(in.v.shape), Ref({d.B, d.HV, d.K, d.V})};
  std::vector<S> o(static_cast<size_t>(d.V));
  for (int64_t b = 0; b < d.B; ++b)
    for (int64_t hv = 0; hv < d.HV; ++hv) {
      const int64_t item = b * d.HV + hv;
      std::vector<S> St(static_cast<size_t>(KV));
      for (int64_t i = 0; i < KV; ++i) St[size_t(i)] = in.h0.numel() ? S(in.h0[item * KV + i]) : 0;
      for (int64_t t = 0; t < d.T; ++t) {
        const int64_t p = b * d.T + t, qk_row = p * d.H + hv / R, at = p * d.HV + hv;
        const auto q = detail_gdr::normalized<S>(in.q, qk_row, d.K, in.l2norm);
        const auto k = detail_gdr::normalized<S>(in.k, qk_row, d.K, in.l2norm);
        detail_gdr::step(St, q, k, in.v, at * d.V, in.g, at * d.Kg, S(in.beta[at]), S(in.scale), d,
                         o.data());
        for (int64_t j = 0; j < d.V; ++j) r.out[at * d.V + j] = round(double(o[size_t(j)]));
      }
      for (int64_t i = 0; i < KV; ++i) r.final_state[item * KV + i] = double(St[size_t(i)]);
    }
  return r;
}

// dout: like v; dfinal: like h0 (B, HV, K, V) or empty. The forward is recomputed in S.
template <class S>
GatedDeltaRuleGrads gated_delta_rule_bwd(const Ref& dout, const Ref& dfinal,
                                         const GatedDeltaRuleRefs& in, const Round& round) {
  const detail_gdr::Dims d = detail_gdr::dims(in);
  const int64_t R = d.HV / d.H, KV = d.K * d.V, K = d.K, V = d.V;
  GatedDeltaRuleGrads gr{Ref(in.q.shape),    Ref(in.k.shape),
                         Ref(in.v.shape),    Ref(in.g.shape),
                         Ref(in.beta.shape), Ref(in.h0.numel() ? in.h0.shape : Shape{0})};
  // dq̂, dk̂ summed over the value heads of each q/k head, in S.
  std::vector<S> dqh(static_cast<size_t>(in.q.numel())), dkh(static_cast<size_t>(in.k.numel()));
  std::vector<S> o(static_cast<size_t>(V)), Sp(static_cast<size_t>(KV)), du(static_cast<size_t>(V)),
      w(static_cast<size_t>(V)), vm(static_cast<size_t>(V));
  const S scale = S(in.scale);
  for (int64_t b = 0; b < d.B; ++b)
    for (int64_t hv = 0; hv < d.HV; ++hv) {
      const int64_t item = b * d.HV + hv;
      // Every state S_0 .. S_T of this row.
      std::vector<S> states(static_cast<size_t>((d.T + 1) * KV));
      for (int64_t i = 0; i < KV; ++i)
        states[size_t(i)] = in.h0.numel() ? S(in.h0[item * KV + i]) : 0;
      for (int64_t t = 0; t < d.T; ++t) {
        const int64_t p = b * d.T + t, qk_row = p * d.H + hv / R, at = p * d.HV + hv;
        std::vector<S> St(states.begin() + t * KV, states.begin() + (t + 1) * KV);
        detail_gdr::step(St, detail_gdr::normalized<S>(in.q, qk_row, K, in.l2norm),
                         detail_gdr::normalized<S>(in.k, qk_row, K, in.l2norm), in.v, at * V, in.g,
                         at * d.Kg, S(in.beta[at]), scale, d, o.data());
        std::copy(St.begin(), St.end(), states.begin() + (t + 1) * KV);
      }
      std::vector<S> dS(static_cast<size_t>(KV));
      for (int64_t i = 0; i < KV; ++i)
        dS[size_t(i)] = dfinal.numel() ? S(dfinal[item * KV + i]) : 0;
      for (int64_t t = d.T - 1; t >= 0; --t) {
        const int64_t p = b * d.T + t, qk_row = p * d.H + hv / R, at = p * d.HV + hv;
        const auto q = detail_gdr::normalized<S>(in.q, qk_row, K, in.l2norm);
        const auto k = detail_gdr::normalized<S>(in.k, qk_row, K, in.l2norm);
        const S* Sprev = states.data() + t * KV;
        const S* Scur = states.data() + (t + 1) * KV;
        const S beta = S(in.beta[at]);
        std::vector<S> a(static_cast<size_t>(K));
        for (int64_t c = 0; c < K; ++c) {
          a[size_t(c)] = std::exp(S(in.g[at * d.Kg + (d.Kg == 1 ? 0 : c)]));
          for (int64_t j = 0; j < V; ++j) Sp[size_t(c * V + j)] = a[size_t(c)] * Sprev[c * V + j];
        }
        for (int64_t j = 0; j < V; ++j) {
          S ks = 0;
          for (int64_t c = 0; c < K; ++c) ks += k[size_t(c)] * Sp[size_t(c * V + j)];
          vm[size_t(j)] = S(in.v[at * V + j]) - ks;
        }
        // o = S_tᵀ (scale q̂)
        for (int64_t c = 0; c < K; ++c) {
          S dq = 0;
          for (int64_t j = 0; j < V; ++j) {
            const S dy = S(dout[at * V + j]);
            dS[size_t(c * V + j)] += scale * q[size_t(c)] * dy;
            dq += Scur[c * V + j] * dy;
          }
          dqh[size_t(qk_row * K + c)] += scale * dq;
        }
        // S_t = Sp + k̂ uᵀ, u = β (v − Spᵀ k̂)
        for (int64_t j = 0; j < V; ++j) {
          S s = 0;
          for (int64_t c = 0; c < K; ++c) s += dS[size_t(c * V + j)] * k[size_t(c)];
          du[size_t(j)] = s;
        }
        S db = 0;
        for (int64_t j = 0; j < V; ++j) {
          db += du[size_t(j)] * vm[size_t(j)];
          gr.dv[at * V + j] = round(double(beta * du[size_t(j)]));
          w[size_t(j)] = -beta * du[size_t(j)];
        }
        gr.dbeta[at] = round(double(db));
        S dg_sum = 0;
        for (int64_t c = 0; c < K; ++c) {
          S dk = 0, da = 0;
          for (int64_t j = 0; j < V; ++j) {
            const size_t i = size_t(c * V + j);
            dk += dS[i] * (beta * vm[size_t(j)]) + Sp[i] * w[size_t(j)];
            const S dsp = dS[i] + k[size_t(c)] * w[size_t(j)];
            da += Sprev[c * V + j] * dsp;
            dS[i] = a[size_t(c)] * dsp;
          }
          dkh[size_t(qk_row * K + c)] += dk;
          if (d.Kg == 1) {
            dg_sum += a[size_t(c)] * da;
          } else {
            gr.dg[at * K + c] = double(a[size_t(c)] * da);
          }
        }
        if (d.Kg == 1) gr.dg[at] = double(dg_sum);
      }
      if (in.h0.numel())
        for (int64_t i = 0; i < KV; ++i) gr.dh0[item * KV + i] = double(dS[size_t(i)]);
    }
  // Through the l2norm: d = rstd (d̂ − x̂ (x̂ · d̂)).
  for (int which = 0; which < 2; ++which) {
    const Ref& x = which == 0 ? in.q : in.k;
    const std::vector<S>& dh = which == 0 ? dqh : dkh;
    Ref& dx = which == 0 ? gr.dq : gr.dk;
    for (int64_t row = 0; row < x.numel() / K; ++row) {
      S ss = 0, dot = 0;
      for (int64_t c = 0; c < K; ++c) ss += S(x[row * K + c]) * S(x[row * K + c]);
      const S r = in.l2norm ? S(1) / std::sqrt(ss + S(1e-6)) : S(1);
      for (int64_t c = 0; c < K; ++c) dot += S(x[row * K + c]) * r * dh[size_t(row * K + c)];
      for (int64_t c = 0; c < K; ++c) {
        const S g = dh[size_t(row * K + c)];
        dx[row * K + c] = round(double(in.l2norm ? r * (g - S(x[row * K + c]) * r * dot) : g));
      }
    }
  }
  return gr;
}

}  // namespace longctx::ref
