// Plain reference for attention, templated on the arithmetic type S: S = Oracle with no_round is
// the oracle; S = float with rounding_for(dtype) is the naive implementation a PyTorch user
// writes (S = round(scale·QKᵀ), softcap, P = round(softmax(S)), out = round(P·V); autograd's
// backward rounding dP, dS and the gradients). One query row at a time, so a long sequence can
// be checked on a sample of rows; the full op is every row.
//
// Layouts as in include/longctx/ops/attention.h: q, out (B, Tq, H, D); k, v (B, Tk, Hkv, D);
// lse (B, H, Tq). Masking is written from the header's formula, independently of the backends.
//
// Every sum runs over the visible (query, key) pairs only, as the formulas say: a masked position
// is never read, and a NaN or inf at a visible one reaches what it feeds with IEEE arithmetic
// (a softmax whose visible scores are all -inf is NaN, as exp(-inf - -inf) is). A row that sees
// no key has out = 0 and lse = -inf.
#pragma once

#include <cmath>
#include <limits>
#include <vector>

#include "harness.h"
#include "longctx/ops/attention.h"

namespace longctx::ref {

using test::Ref;
using test::Round;

// Query i sees key j iff i + Tk − Tq − window_left <= j <= i + Tk − Tq + window_right (a side of
// -1 is unbounded; causal means window_right = 0).
inline bool attention_visible(int64_t i, int64_t j, int64_t Tq, int64_t Tk,
                              const AttentionParams& p) {
  const int64_t diag = i + Tk - Tq, right = p.causal ? 0 : p.window_right;
  return (p.window_left < 0 || j >= diag - p.window_left) && (right < 0 || j <= diag + right);
}

inline double attention_scale(const AttentionParams& p, int64_t D) {
  return p.softmax_scale != 0.f ? double(p.softmax_scale) : 1.0 / std::sqrt(double(D));
}

// The probabilities of one query row (b, h, i), as a naive implementation stores them.
template <class S>
struct AttentionRow {
  std::vector<S> p;     // (Tk) probabilities, 0 where masked
  std::vector<S> dcap;  // (Tk) d softcap(x)/dx = 1 − tanh², 1 without softcap
  S lse = -std::numeric_limits<S>::infinity();
  bool any = false;  // the row sees at least one key
};

template <class S>
AttentionRow<S> attention_row(const Ref& q, const Ref& k, int64_t b, int64_t h, int64_t i,
                              const AttentionParams& params, const Round& round) {
  const int64_t Tq = q.shape[1], H = q.shape[2], D = q.shape[3];
  const int64_t Tk = k.shape[1], Hkv = k.shape[2], hk = h / (H / Hkv);
  const S scale = S(attention_scale(params, D)), cap = S(params.softcap);
  AttentionRow<S> row;
  row.p.assign(size_t(Tk), S(0));
  row.dcap.assign(size_t(Tk), S(1));
  std::vector<S> s(size_t(Tk), S(0));
  S mx = -std::numeric_limits<S>::infinity();
  const double* qi = q.v.data() + (((b * Tq + i) * H + h) * D);
  for (int64_t j = 0; j < Tk; ++j) {
    if (!attention_visible(i, j, Tq, Tk, params)) continue;
    const double* kj = k.v.data() + (((b * Tk + j) * Hkv + hk) * D);
    S dot = 0;
    for (int64_t d = 0; d < D; ++d) dot += S(qi[d]) * S(kj[d]);
    S x = S(round(double(S(round(double(dot))) * scale)));
    if (cap != S(0)) {
      const S t = std::tanh(x / cap);
      x = S(round(double(cap * t)));
      row.dcap[size_t(j)] = S(1) - t * t;
    }
    s[size_t(j)] = x;
    mx = std::max(mx, x);
    row.any = true;
  }
  if (!row.any) return row;
  S sum = 0;
  for (int64_t j = 0; j < Tk; ++j)
    if (attention_visible(i, j, Tq, Tk, params)) sum += std::exp(s[size_t(j)] - mx);
  for (int64_t j = 0; j < Tk; ++j)
    if (attention_visible(i, j, Tq, Tk, params))
      row.p[size_t(j)] = S(round(double(std::exp(s[size_t(j)] - mx) / sum)));
  row.lse = mx + std::log(sum);
  return row;
}

struct AttentionOut {
  Ref out, lse;
};

// Rows `rows` (indices into the (B, H, Tq) lse layout; empty = all) of the forward. Rows not
// asked for are left 0.
template <class S>
AttentionOut attention_fwd(const Ref& q, const Ref& k, const Ref& v, const AttentionParams& params,
                           const Round& round, const std::vector<int64_t>& rows = {}) {
  const int64_t B = q.shape[0], Tq = q.shape[1], H = q.shape[2], D = q.shape[3];
  const int64_t Tk = k.shape[1], Hkv = k.shape[2];
  AttentionOut r{Ref(q.shape), Ref({B, H, Tq})};
  auto one = [&](int64_t row_index) {
    const int64_t i = row_index % Tq, b = row_index / Tq / H, h = row_index / Tq % H;
    const auto row = attention_row<S>(q, k, b, h, i, params, round);
    r.lse[row_index] = double(row.lse);
    for (int64_t d = 0; d < D; ++d) {
      S acc = 0;
      for (int64_t j = 0; j < Tk; ++j)
        if (attention_visible(i, j, Tq, Tk, params))
          acc += row.p[size_t(j)] * S(v[((b * Tk + j) * Hkv + h / (H / Hkv)) * D + d]);
      r.out[((b * Tq + i) * H + h) * D + d] = round(double(acc));
    }
  };
  if (rows.empty())
    for (int64_t row_index = 0; row_index < B * H * Tq; ++row_index) one(row_index);
  for (int64_t row_index : rows) one(row_index);
  return r;
}

// Autograd of the naive forward for one query row: P, and dS = P∘(dP − Di)∘(1 − tanh²) with
// dP = dO·Vᵀ and Di = Σ_j P∘dP.
template <class S>
struct AttentionBwdRow {
  AttentionRow<S> row;
  std::vector<S> dS;  // (Tk)
};

template <class S>
AttentionBwdRow<S> attention_bwd_row(const Ref& dout, const Ref& q, const Ref& k, const Ref& v,
                                     int64_t b, int64_t h, int64_t i, const AttentionParams& params,
                                     const Round& round) {
  const int64_t Tq = q.shape[1], H = q.shape[2], D = q.shape[3];
  const int64_t Tk = k.shape[1], Hkv = k.shape[2], hk = h / (H / Hkv);
  AttentionBwdRow<S> r{attention_row<S>(q, k, b, h, i, params, round),
                       std::vector<S>(size_t(Tk), S(0))};
  const double* doi = dout.v.data() + (((b * Tq + i) * H + h) * D);
  S Di = 0;
  for (int64_t j = 0; j < Tk; ++j) {
    if (!attention_visible(i, j, Tq, Tk, params)) continue;  // masked: dS = 0
    const double* vj = v.v.data() + (((b * Tk + j) * Hkv + hk) * D);
    S dp = 0;
    for (int64_t d = 0; d < D; ++d) dp += S(doi[d]) * S(vj[d]);
    r.dS[size_t(j)] = S(round(double(dp)));
    Di += r.row.p[size_t(j)] * r.dS[size_t(j)];
  }
  for (int64_t j = 0; j < Tk; ++j)
    if (attention_visible(i, j, Tq, Tk, params))
      r.dS[size_t(j)] =
          S(round(double(r.row.p[size_t(j)] * (r.dS[size_t(j)] - Di) * r.row.dcap[size_t(j)])));
  return r;
}

struct AttentionGrads {
  Ref dq, dk, dv;
};

// dq = scale·dS·K, dk = scale·dSᵀ·Q, dv = Pᵀ·dO. With `rows` (indices into the (B, H, Tq)
// layout) only those rows of dq are computed, and dk, dv are left 0.
template <class S>
AttentionGrads attention_bwd(const Ref& dout, const Ref& q, const Ref& k, const Ref& v,
                             const AttentionParams& params, const Round& round,
                             const std::vector<int64_t>& rows = {}) {
  const int64_t B = q.shape[0], Tq = q.shape[1], H = q.shape[2], D = q.shape[3];
  const int64_t Tk = k.shape[1], Hkv = k.shape[2];
  const S scale = S(attention_scale(params, D));
  AttentionGrads g{Ref(q.shape), Ref(k.shape), Ref(v.shape)};
  std::vector<S> dk(size_t(k.numel()), S(0)), dv(size_t(v.numel()), S(0));
  auto one = [&](int64_t row_index) {
    const int64_t i = row_index % Tq, b = row_index / Tq / H, h = row_index / Tq % H;
    const int64_t hk = h / (H / Hkv);
    const auto r = attention_bwd_row<S>(dout, q, k, v, b, h, i, params, round);
    const double* doi = dout.v.data() + (((b * Tq + i) * H + h) * D);
    const double* qi = q.v.data() + (((b * Tq + i) * H + h) * D);
    for (int64_t d = 0; d < D; ++d) {
      S acc = 0;
      for (int64_t j = 0; j < Tk; ++j)
        if (attention_visible(i, j, Tq, Tk, params))
          acc += r.dS[size_t(j)] * S(k[((b * Tk + j) * Hkv + hk) * D + d]);
      g.dq[((b * Tq + i) * H + h) * D + d] = round(double(acc * scale));
    }
    if (!rows.empty()) return;
    for (int64_t j = 0; j < Tk; ++j) {
      if (!attention_visible(i, j, Tq, Tk, params)) continue;
      const int64_t kv = ((b * Tk + j) * Hkv + hk) * D;
      for (int64_t d = 0; d < D; ++d) {
        dk[size_t(kv + d)] += r.dS[size_t(j)] * S(qi[d]) * scale;
        dv[size_t(kv + d)] += r.row.p[size_t(j)] * S(doi[d]);
      }
    }
  };
  if (rows.empty()) {
    for (int64_t row_index = 0; row_index < B * H * Tq; ++row_index) one(row_index);
    for (int64_t x = 0; x < k.numel(); ++x) {
      g.dk[x] = round(double(dk[size_t(x)]));
      g.dv[x] = round(double(dv[size_t(x)]));
    }
  }
  for (int64_t row_index : rows) one(row_index);
  return g;
}

// Decoding against a KV cache = full attention over each batch's cache prefix, after the append.
// Returns out and lse, and the caches as they must be after the call.
struct AttentionDecodeOut {
  Ref out, lse, k_cache, v_cache;
};

template <class S>
AttentionDecodeOut attention_decode(const Ref& q, const Ref& k_cache, const Ref& v_cache,
                                    const std::vector<int>& cache_seqlens, const Ref* k_new,
                                    const Ref* v_new, const AttentionParams& params,
                                    const Round& round) {
  const int64_t B = q.shape[0], Tq = q.shape[1], H = q.shape[2], D = q.shape[3];
  const int64_t Tmax = k_cache.shape[1], Hkv = k_cache.shape[2], row = Hkv * D;
  AttentionDecodeOut r{Ref(q.shape), Ref({B, H, Tq}), k_cache, v_cache};
  for (int64_t b = 0; b < B; ++b) {
    const int64_t len = cache_seqlens[size_t(b)], Tk = len + (k_new ? Tq : 0);
    if (k_new)
      for (int64_t t = 0; t < Tq; ++t)
        for (int64_t x = 0; x < row; ++x) {
          r.k_cache[(b * Tmax + len + t) * row + x] = (*k_new)[(b * Tq + t) * row + x];
          r.v_cache[(b * Tmax + len + t) * row + x] = (*v_new)[(b * Tq + t) * row + x];
        }
    Ref qb({1, Tq, H, D}), kb({1, Tk, Hkv, D}), vb({1, Tk, Hkv, D});
    std::copy(q.v.begin() + b * Tq * H * D, q.v.begin() + (b + 1) * Tq * H * D, qb.v.begin());
    std::copy(r.k_cache.v.begin() + b * Tmax * row, r.k_cache.v.begin() + (b * Tmax + Tk) * row,
              kb.v.begin());
    std::copy(r.v_cache.v.begin() + b * Tmax * row, r.v_cache.v.begin() + (b * Tmax + Tk) * row,
              vb.v.begin());
    const auto full = attention_fwd<S>(qb, kb, vb, params, round);
    std::copy(full.out.v.begin(), full.out.v.end(), r.out.v.begin() + b * Tq * H * D);
    std::copy(full.lse.v.begin(), full.lse.v.end(), r.lse.v.begin() + b * H * Tq);
  }
  return r;
}

}  // namespace longctx::ref
