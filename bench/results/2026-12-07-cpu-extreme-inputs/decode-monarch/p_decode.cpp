// Decode steps driven token by token over long runs, against the f64 (long double) reference of the
// whole sequence and the op's own full-sequence forward. Batches whose sequences sit at different
// offsets (prefilled by the full op to different lengths, or started from given/zero states).
//   ./p_decode [op] [dtype]   op: ss | ssd | gdr | conv | attn1 | attn2 | attn | all ; dtype f32 |
//   f64 | both (attn1/attn2 take ~40 s per dtype under ASan: run them one dtype at a time)
#include "longctx/ops/attention.h"
#include "longctx/ops/causal_conv1d.h"
#include "longctx/ops/gated_delta_rule.h"
#include "longctx/ops/selective_scan.h"
#include "longctx/ops/ssd.h"
#include "probe.h"
#include "reference/attention.h"
#include "reference/causal_conv1d.h"
#include "reference/gated_delta_rule.h"
#include "reference/selective_scan.h"
#include "reference/ssd.h"
using namespace P;

// Collects (got, exact, naive, full-op) over positions; reports all, the first decode step, the
// last 10% of steps.
struct Acc {
  std::vector<double> g, e, n, f;
  std::vector<int64_t> step;
  void add(double got, double ex, double nv, double full, int64_t s) {
    g.push_back(got);
    e.push_back(ex);
    n.push_back(nv);
    f.push_back(full);
    step.push_back(s);
  }
  void report(const std::string& what, DType dt, int64_t steps) {
    auto sub = [&](auto pred, const std::string& tag) {
      Ref G({0}), E({0}), N({0});
      G.v.clear();
      E.v.clear();
      N.v.clear();
      double fd = 0;
      for (size_t i = 0; i < g.size(); ++i)
        if (pred(step[i])) {
          G.v.push_back(g[i]);
          E.v.push_back(e[i]);
          N.v.push_back(n[i]);
          if (std::isfinite(f[i])) fd = std::max(fd, std::abs(g[i] - f[i]));
        }
      G.shape = E.shape = N.shape = {int64_t(G.v.size())};
      if (G.v.empty()) return;
      std::string w = what + " " + tag;
      cmp(w.c_str(), G, E, &N, dt);
      printf("        (max |decode - full-sequence op| = %.3g)\n", fd);
    };
    sub([](int64_t s) { return true; }, "all");
    sub([](int64_t s) { return s == 0; }, "step0");
    sub([&](int64_t s) { return s >= steps - steps / 10; }, "last10%");
  }
};

static Ref rnd(const Shape& s, Rng& r, double lo, double hi, DType dt) {
  return rounded(random_ref(s, r, lo, hi), dt);
}

// ---------------- selective_state_update ----------------
static void p_ss(Context& ctx, DType dt, int64_t T, std::vector<int64_t> pre, bool h0_given,
                 double Alo, double Ahi, bool softplus, const char* name) {
  const int64_t Bn = int64_t(pre.size()), Dm = 16, N = 16, G = 2;
  Rng r(11);
  ref::SelectiveScanRefs in;
  in.u = rnd({Bn, Dm, T}, r, -1, 1, dt);
  in.delta = rnd({Bn, Dm, T}, r, softplus ? -4 : 0, softplus ? 1 : 0.5, dt);
  in.A = random_ref({Dm, N}, r);
  for (double& a : in.A.v) a = -std::exp(r.uniform(Alo, Ahi));
  in.A = rounded(in.A, dt);
  in.B = rnd({Bn, G, N, T}, r, -1, 1, dt);
  in.C = rnd({Bn, G, N, T}, r, -1, 1, dt);
  in.D = rnd({Dm}, r, -1, 1, dt);
  in.z = rnd({Bn, Dm, T}, r, -3, 3, dt);
  in.delta_bias = rnd({Dm}, r, softplus ? -1 : 0, 1, dt);
  if (h0_given) in.h0 = rnd({Bn, Dm, N}, r, -2, 2, dt);
  in.delta_softplus = softplus;
  auto ex = ref::selective_scan_fwd<Oracle>(in, no_round);
  ref::SelectiveScanOut nv;
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    nv = ref::selective_scan_fwd<S>(in, rounding_for(dt));
  });
  SelectiveScanParams prm;
  prm.delta_softplus = softplus;
  Tensor A = from_ref(in.A, dt), D = from_ref(in.D, dt), db = from_ref(in.delta_bias, dt);
  // full-sequence op per sequence (B = 1), and prefill states
  Ref state0({Bn, Dm, N}), full(in.u.shape);
  for (int64_t b = 0; b < Bn; ++b) {
    auto sl = [&](const Ref& x, int tdim, int64_t t1) {
      return from_ref(slice(slice(x, 0, b, b + 1), tdim, 0, t1), dt);
    };
    for (int pass = 0; pass < 2; ++pass) {
      const int64_t L = pass == 0 ? T : pre[size_t(b)];
      if (L == 0) {
        for (int64_t i = 0; i < Dm * N; ++i)
          state0[b * Dm * N + i] = h0_given ? in.h0[b * Dm * N + i] : 0;
        continue;
      }
      SelectiveScanInputs si{sl(in.u, 2, L),
                             sl(in.delta, 2, L),
                             A,
                             sl(in.B, 3, L),
                             sl(in.C, 3, L),
                             D,
                             sl(in.z, 2, L),
                             db,
                             h0_given ? from_ref(slice(in.h0, 0, b, b + 1), dt) : Tensor()};
      Tensor out = poisoned({1, Dm, L}, dt, Device::cpu(), &ctx),
             last = poisoned({1, Dm, N}, dt, Device::cpu(), &ctx);
      guard("selective_scan_fwd", [&] { selective_scan_fwd(ctx, out, last, si, prm); });
      Ref o = to_ref(out), l = to_ref(last);
      if (pass == 0)
        paste(full, 0, b, o);
      else
        for (int64_t i = 0; i < Dm * N; ++i) state0[b * Dm * N + i] = l[i];
    }
  }
  Tensor state = from_ref(state0, dt);
  const int64_t steps = T - *std::max_element(pre.begin(), pre.end());
  Acc acc;
  for (int64_t s = 0; s < steps; ++s) {
    Ref u({Bn, Dm}), de({Bn, Dm}), z({Bn, Dm}), Bs({Bn, G, N}), Cs({Bn, G, N});
    for (int64_t b = 0; b < Bn; ++b) {
      const int64_t t = pre[size_t(b)] + s;
      for (int64_t d = 0; d < Dm; ++d) {
        u[b * Dm + d] = in.u[(b * Dm + d) * T + t];
        de[b * Dm + d] = in.delta[(b * Dm + d) * T + t];
        z[b * Dm + d] = in.z[(b * Dm + d) * T + t];
      }
      for (int64_t i = 0; i < G * N; ++i) {
        Bs[b * G * N + i] = in.B[(b * G * N + i) * T + t];
        Cs[b * G * N + i] = in.C[(b * G * N + i) * T + t];
      }
    }
    Tensor out = poisoned({Bn, Dm}, dt, Device::cpu(), &ctx);
    guard("selective_state_update", [&] {
      selective_state_update(ctx, out, state, from_ref(u, dt), from_ref(de, dt), A,
                             from_ref(Bs, dt), from_ref(Cs, dt), D, from_ref(z, dt), db, prm);
    });
    Ref o = to_ref(out);
    for (int64_t b = 0; b < Bn; ++b) {
      const int64_t t = pre[size_t(b)] + s;
      for (int64_t d = 0; d < Dm; ++d) {
        const int64_t i = (b * Dm + d) * T + t;
        acc.add(o[b * Dm + d], ex.out[i], nv.out[i], full[i], s);
      }
    }
  }
  char w[128];
  snprintf(w, sizeof w, "ss:%s", name);
  acc.report(w, dt, steps);
  // final state (only for the sequences that reached T)
  Ref st = to_ref(state);
  Acc fs;
  for (int64_t b = 0; b < Bn; ++b)
    if (pre[size_t(b)] + steps == T)
      for (int64_t i = 0; i < Dm * N; ++i)
        fs.add(st[b * Dm * N + i], ex.last_state[b * Dm * N + i], nv.last_state[b * Dm * N + i],
               NAN, 0);
  snprintf(w, sizeof w, "ss:%s state", name);
  fs.report(w, dt, 1);
}

// ---------------- ssd_state_update ----------------
static void p_ssd(Context& ctx, DType dt, int64_t T, std::vector<int64_t> pre, bool h0_given,
                  double Alo, double Ahi, int64_t G, const char* name) {
  const int64_t Bn = int64_t(pre.size()), H = 4, P = 8, N = 16;
  Rng r(12);
  ref::SSDRefs in;
  in.x = rnd({Bn, T, H, P}, r, -1, 1, dt);
  in.dt = rnd({Bn, T, H}, r, -4, 1, dt);
  in.A = random_ref({H}, r);
  for (double& a : in.A.v) a = -std::exp(r.uniform(Alo, Ahi));
  in.A = rounded(in.A, dt);
  in.B = rnd({Bn, T, G, N}, r, -1, 1, dt);
  in.C = rnd({Bn, T, G, N}, r, -1, 1, dt);
  in.D = rnd({H}, r, -1, 1, dt);
  in.z = rnd({Bn, T, H, P}, r, -3, 3, dt);
  in.dt_bias = rnd({H}, r, -1, 1, dt);
  if (h0_given) in.initial_states = rnd({Bn, H, P, N}, r, -2, 2, dt);
  in.dt_softplus = true;
  auto ex = ref::ssd_fwd<Oracle>(in, no_round);
  ref::SSDOut nv;
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    nv = ref::ssd_fwd<S>(in, rounding_for(dt));
  });
  SSDParams prm;
  prm.dt_softplus = true;
  Tensor A = from_ref(in.A, dt), D = from_ref(in.D, dt), db = from_ref(in.dt_bias, dt);
  const int64_t HPN = H * P * N;
  Ref state0({Bn, H, P, N}), full(in.x.shape);
  for (int64_t b = 0; b < Bn; ++b) {
    auto sl = [&](const Ref& x, int64_t t1) {
      return from_ref(slice(slice(x, 0, b, b + 1), 1, 0, t1), dt);
    };
    for (int pass = 0; pass < 2; ++pass) {
      const int64_t L = pass == 0 ? T : pre[size_t(b)];
      if (L == 0) {
        for (int64_t i = 0; i < HPN; ++i)
          state0[b * HPN + i] = h0_given ? in.initial_states[b * HPN + i] : 0;
        continue;
      }
      SSDInputs si{sl(in.x, L),
                   sl(in.dt, L),
                   A,
                   sl(in.B, L),
                   sl(in.C, L),
                   D,
                   sl(in.z, L),
                   db,
                   h0_given ? from_ref(slice(in.initial_states, 0, b, b + 1), dt) : Tensor()};
      Tensor out = poisoned({1, L, H, P}, dt, Device::cpu(), &ctx),
             last = poisoned({1, H, P, N}, dt, Device::cpu(), &ctx);
      guard("ssd_fwd", [&] { ssd_fwd(ctx, out, last, si, prm); });
      Ref o = to_ref(out), l = to_ref(last);
      if (pass == 0)
        paste(full, 0, b, o);
      else
        for (int64_t i = 0; i < HPN; ++i) state0[b * HPN + i] = l[i];
    }
  }
  Tensor state = from_ref(state0, dt);
  const int64_t steps = T - *std::max_element(pre.begin(), pre.end());
  Acc acc;
  for (int64_t s = 0; s < steps; ++s) {
    Ref x({Bn, H, P}), z({Bn, H, P}), d({Bn, H}), Bs({Bn, G, N}), Cs({Bn, G, N});
    for (int64_t b = 0; b < Bn; ++b) {
      const int64_t t = pre[size_t(b)] + s;
      for (int64_t i = 0; i < H * P; ++i) {
        x[b * H * P + i] = in.x[(b * T + t) * H * P + i];
        z[b * H * P + i] = in.z[(b * T + t) * H * P + i];
      }
      for (int64_t i = 0; i < H; ++i) d[b * H + i] = in.dt[(b * T + t) * H + i];
      for (int64_t i = 0; i < G * N; ++i) {
        Bs[b * G * N + i] = in.B[(b * T + t) * G * N + i];
        Cs[b * G * N + i] = in.C[(b * T + t) * G * N + i];
      }
    }
    Tensor out = poisoned({Bn, H, P}, dt, Device::cpu(), &ctx);
    guard("ssd_state_update", [&] {
      ssd_state_update(ctx, out, state, from_ref(x, dt), from_ref(d, dt), A, from_ref(Bs, dt),
                       from_ref(Cs, dt), D, from_ref(z, dt), db, prm);
    });
    Ref o = to_ref(out);
    for (int64_t b = 0; b < Bn; ++b) {
      const int64_t t = pre[size_t(b)] + s;
      for (int64_t i = 0; i < H * P; ++i) {
        const int64_t j = (b * T + t) * H * P + i;
        acc.add(o[b * H * P + i], ex.out[j], nv.out[j], full[j], s);
      }
    }
  }
  char w[128];
  snprintf(w, sizeof w, "ssd:%s", name);
  acc.report(w, dt, steps);
  Ref st = to_ref(state);
  Acc fs;
  for (int64_t b = 0; b < Bn; ++b)
    if (pre[size_t(b)] + steps == T)
      for (int64_t i = 0; i < HPN; ++i)
        fs.add(st[b * HPN + i], ex.final_states[b * HPN + i], nv.final_states[b * HPN + i], NAN, 0);
  snprintf(w, sizeof w, "ssd:%s state", name);
  fs.report(w, dt, 1);
}

// ---------------- gated_delta_rule_update ----------------
static void p_gdr(Context& ctx, DType dt, int64_t T, std::vector<int64_t> pre, bool h0_given,
                  bool kda, bool l2, double glo, double ghi, int64_t K, int64_t V,
                  const char* name) {
  const int64_t Bn = int64_t(pre.size()), H = 2, HV = 4;
  Rng r(13);
  ref::GatedDeltaRuleRefs in;
  const double qk = l2 ? 1 : 1.0 / std::sqrt(double(K));
  in.q = rnd({Bn, T, H, K}, r, -qk, qk, dt);
  in.k = rnd({Bn, T, H, K}, r, -qk, qk, dt);
  in.v = rnd({Bn, T, HV, V}, r, -1, 1, dt);
  in.g = kda ? rnd({Bn, T, HV, K}, r, glo, ghi, dt) : rnd({Bn, T, HV}, r, glo, ghi, dt);
  in.beta = rnd({Bn, T, HV}, r, 0, 1, dt);
  if (h0_given) in.h0 = rnd({Bn, HV, K, V}, r, -1, 1, dt);
  in.scale = 1.0 / std::sqrt(double(K));
  in.l2norm = l2;
  auto ex = ref::gated_delta_rule_fwd<Oracle>(in, no_round);
  ref::GatedDeltaRuleOut nv;
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    nv = ref::gated_delta_rule_fwd<S>(in, rounding_for(dt));
  });
  GatedDeltaRuleParams prm;
  prm.use_qk_l2norm = l2;
  const int64_t KV = HV * K * V, Kg = kda ? K : 1;
  Ref state0({Bn, HV, K, V}), full(in.v.shape);
  for (int64_t b = 0; b < Bn; ++b) {
    auto sl = [&](const Ref& x, int64_t t1) {
      return from_ref(slice(slice(x, 0, b, b + 1), 1, 0, t1), dt);
    };
    for (int pass = 0; pass < 2; ++pass) {
      const int64_t L = pass == 0 ? T : pre[size_t(b)];
      if (L == 0) {
        for (int64_t i = 0; i < KV; ++i) state0[b * KV + i] = h0_given ? in.h0[b * KV + i] : 0;
        continue;
      }
      GatedDeltaRuleInputs gi{
          sl(in.q, L),    sl(in.k, L),
          sl(in.v, L),    sl(in.g, L),
          sl(in.beta, L), h0_given ? from_ref(slice(in.h0, 0, b, b + 1), dt) : Tensor(),
          Tensor()};
      Tensor out = poisoned({1, L, HV, V}, dt, Device::cpu(), &ctx),
             last = poisoned({1, HV, K, V}, dt, Device::cpu(), &ctx);
      guard("gated_delta_rule_fwd", [&] { gated_delta_rule_fwd(ctx, out, last, gi, prm); });
      Ref o = to_ref(out), l = to_ref(last);
      if (pass == 0)
        paste(full, 0, b, o);
      else
        for (int64_t i = 0; i < KV; ++i) state0[b * KV + i] = l[i];
    }
  }
  Tensor state = from_ref(state0, dt);
  const int64_t steps = T - *std::max_element(pre.begin(), pre.end());
  Acc acc;
  for (int64_t s = 0; s < steps; ++s) {
    Ref q({Bn, H, K}), k({Bn, H, K}), v({Bn, HV, V}), g(kda ? Shape{Bn, HV, K} : Shape{Bn, HV}),
        be({Bn, HV});
    for (int64_t b = 0; b < Bn; ++b) {
      const int64_t t = pre[size_t(b)] + s;
      for (int64_t i = 0; i < H * K; ++i) {
        q[b * H * K + i] = in.q[(b * T + t) * H * K + i];
        k[b * H * K + i] = in.k[(b * T + t) * H * K + i];
      }
      for (int64_t i = 0; i < HV * V; ++i) v[b * HV * V + i] = in.v[(b * T + t) * HV * V + i];
      for (int64_t i = 0; i < HV * Kg; ++i) g[b * HV * Kg + i] = in.g[(b * T + t) * HV * Kg + i];
      for (int64_t i = 0; i < HV; ++i) be[b * HV + i] = in.beta[(b * T + t) * HV + i];
    }
    Tensor out = poisoned({Bn, HV, V}, dt, Device::cpu(), &ctx);
    guard("gated_delta_rule_update", [&] {
      gated_delta_rule_update(ctx, out, state, from_ref(q, dt), from_ref(k, dt), from_ref(v, dt),
                              from_ref(g, dt), from_ref(be, dt), prm);
    });
    Ref o = to_ref(out);
    for (int64_t b = 0; b < Bn; ++b) {
      const int64_t t = pre[size_t(b)] + s;
      for (int64_t i = 0; i < HV * V; ++i) {
        const int64_t j = (b * T + t) * HV * V + i;
        acc.add(o[b * HV * V + i], ex.out[j], nv.out[j], full[j], s);
      }
    }
  }
  char w[128];
  snprintf(w, sizeof w, "gdr:%s", name);
  acc.report(w, dt, steps);
  Ref st = to_ref(state);
  Acc fs;
  for (int64_t b = 0; b < Bn; ++b)
    if (pre[size_t(b)] + steps == T)
      for (int64_t i = 0; i < KV; ++i)
        fs.add(st[b * KV + i], ex.final_state[b * KV + i], nv.final_state[b * KV + i], NAN, 0);
  snprintf(w, sizeof w, "gdr:%s state", name);
  fs.report(w, dt, 1);
}

// ---------------- causal_conv1d_update ----------------
static void p_conv(Context& ctx, DType dt, int64_t T, std::vector<int64_t> pre, int64_t W,
                   bool silu, bool bias, const char* name) {
  const int64_t Bn = int64_t(pre.size()), D = 8;
  Rng r(14);
  Ref x = rnd({Bn, D, T}, r, -2, 2, dt), w = rnd({D, W}, r, -1, 1, dt),
      bi = bias ? rnd({D}, r, -1, 1, dt) : Ref();
  Ref ex = ref::causal_conv1d_fwd<Oracle>(x, w, bi, silu, no_round), nv;
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    nv = ref::causal_conv1d_fwd<S>(x, w, bi, silu, rounding_for(dt));
  });
  CausalConv1dParams prm;
  prm.activation = silu ? Activation::silu : Activation::none;
  Tensor wt = from_ref(w, dt), bt = bias ? from_ref(bi, dt) : Tensor();
  Tensor fo = poisoned({Bn, D, T}, dt, Device::cpu(), &ctx);
  guard("causal_conv1d_fwd", [&] { causal_conv1d_fwd(ctx, fo, from_ref(x, dt), wt, bt, prm); });
  Ref full = to_ref(fo);
  Ref st0({Bn, D, W - 1});
  for (int64_t b = 0; b < Bn; ++b)
    for (int64_t d = 0; d < D; ++d)
      for (int64_t k = 0; k < W - 1; ++k) {
        const int64_t t = pre[size_t(b)] - (W - 1) + k;
        st0[(b * D + d) * (W - 1) + k] = t >= 0 ? x[(b * D + d) * T + t] : 0;
      }
  Tensor state;
  bool ok = true;
  try {
    state = from_ref(st0, dt);
  } catch (const std::exception& e) {
    printf("**THROW** conv_state (B,D,0): %s\n", e.what());
    ok = false;
    g_flags++;
  }
  if (!ok) return;
  const int64_t steps = T - *std::max_element(pre.begin(), pre.end());
  Acc acc;
  for (int64_t s = 0; s < steps; ++s) {
    Ref xs({Bn, D});
    for (int64_t b = 0; b < Bn; ++b)
      for (int64_t d = 0; d < D; ++d) xs[b * D + d] = x[(b * D + d) * T + pre[size_t(b)] + s];
    Tensor out = poisoned({Bn, D}, dt, Device::cpu(), &ctx);
    bool threw = false;
    try {
      causal_conv1d_update(ctx, out, state, from_ref(xs, dt), wt, bt, prm);
    } catch (const std::exception& e) {
      if (s == 0) printf("**THROW** causal_conv1d_update W=%lld: %s\n", (long long)W, e.what());
      g_flags += s == 0;
      threw = true;
    }
    if (threw) return;
    Ref o = to_ref(out);
    for (int64_t b = 0; b < Bn; ++b)
      for (int64_t d = 0; d < D; ++d) {
        const int64_t i = (b * D + d) * T + pre[size_t(b)] + s;
        acc.add(o[b * D + d], ex[i], nv[i], full[i], s);
      }
  }
  char wn[128];
  snprintf(wn, sizeof wn, "conv:%s", name);
  acc.report(wn, dt, steps);
}

// ---------------- attention_decode ----------------
static void p_attn(Context& ctx, DType dt, int64_t T, std::vector<int64_t> pre, int64_t Tq,
                   int window, int splits, int64_t H, int64_t Hkv, int64_t Dh, double qscale,
                   float softcap, const char* name) {
  const int64_t Bn = int64_t(pre.size());
  Rng r(15);
  Ref q = rnd({Bn, T, H, Dh}, r, -qscale, qscale, dt),
      k = rnd({Bn, T, Hkv, Dh}, r, -qscale, qscale, dt), v = rnd({Bn, T, Hkv, Dh}, r, -1, 1, dt);
  AttentionParams prm;
  prm.causal = true;
  prm.window_left = window;
  prm.softcap = softcap;
  auto ex = ref::attention_fwd<Oracle>(q, k, v, prm, no_round);
  ref::AttentionOut nv;
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    nv = ref::attention_fwd<S>(q, k, v, prm, rounding_for(dt));
  });
  Tensor fo = poisoned({Bn, T, H, Dh}, dt, Device::cpu(), &ctx),
         fl = poisoned({Bn, H, T}, dt, Device::cpu(), &ctx);
  guard("attention_fwd", [&] {
    attention_fwd(ctx, fo, fl, from_ref(q, dt), from_ref(k, dt), from_ref(v, dt), prm);
  });
  Ref full = to_ref(fo), fulllse = to_ref(fl);
  const int64_t Tmax = T + 3;
  Ref kc({Bn, Tmax, Hkv, Dh}), vc({Bn, Tmax, Hkv, Dh});
  for (double& x : kc.v) x = 1e30;  // rows past the length must not be read
  for (double& x : vc.v) x = 1e30;
  const int64_t row = Hkv * Dh;
  for (int64_t b = 0; b < Bn; ++b)
    for (int64_t t = 0; t < pre[size_t(b)]; ++t)
      for (int64_t i = 0; i < row; ++i) {
        kc[(b * Tmax + t) * row + i] = k[(b * T + t) * row + i];
        vc[(b * Tmax + t) * row + i] = v[(b * T + t) * row + i];
      }
  Tensor kct = from_ref(kc, dt), vct = from_ref(vc, dt);
  const int64_t steps = (T - *std::max_element(pre.begin(), pre.end())) / Tq;
  Acc acc, accl;
  for (int64_t s = 0; s < steps; ++s) {
    Ref qs({Bn, Tq, H, Dh}), kn({Bn, Tq, Hkv, Dh}), vn({Bn, Tq, Hkv, Dh});
    std::vector<int32_t> lens;
    for (int64_t b = 0; b < Bn; ++b) {
      const int64_t t0 = pre[size_t(b)] + s * Tq;
      lens.push_back(int32_t(t0));
      for (int64_t j = 0; j < Tq; ++j) {
        for (int64_t i = 0; i < H * Dh; ++i)
          qs[(b * Tq + j) * H * Dh + i] = q[(b * T + t0 + j) * H * Dh + i];
        for (int64_t i = 0; i < row; ++i) {
          kn[(b * Tq + j) * row + i] = k[(b * T + t0 + j) * row + i];
          vn[(b * Tq + j) * row + i] = v[(b * T + t0 + j) * row + i];
        }
      }
    }
    Tensor out = poisoned({Bn, Tq, H, Dh}, dt, Device::cpu(), &ctx),
           lse = poisoned({Bn, H, Tq}, dt, Device::cpu(), &ctx);
    Tensor sl = int_tensor(lens, {Bn});
    guard("attention_decode", [&] {
      attention_decode(ctx, out, lse, from_ref(qs, dt), kct, vct, sl, from_ref(kn, dt),
                       from_ref(vn, dt), prm, splits);
    });
    Ref o = to_ref(out), l = to_ref(lse);
    for (int64_t b = 0; b < Bn; ++b)
      for (int64_t j = 0; j < Tq; ++j) {
        const int64_t t = pre[size_t(b)] + s * Tq + j;
        for (int64_t i = 0; i < H * Dh; ++i) {
          const int64_t e = (b * T + t) * H * Dh + i;
          acc.add(o[(b * Tq + j) * H * Dh + i], ex.out[e], nv.out[e], full[e], s);
        }
        for (int64_t h = 0; h < H; ++h) {
          const int64_t e = (b * H + h) * T + t;
          accl.add(l[(b * H + h) * Tq + j], ex.lse[e], nv.lse[e], fulllse[e], s);
        }
      }
  }
  char w[160];
  snprintf(w, sizeof w, "attn:%s out", name);
  acc.report(w, dt, steps);
  snprintf(w, sizeof w, "attn:%s lse", name);
  accl.report(w, dt, steps);
}

int main(int argc, char** argv) {
  std::string op = argc > 1 ? argv[1] : "all", dts = argc > 2 ? argv[2] : "both";
  Context ctx(Device::cpu());
  std::vector<DType> dtl;
  if (dts != "f64") dtl.push_back(DType::f32);
  if (dts != "f32") dtl.push_back(DType::f64);
  for (DType dt : dtl) {
    printf("==== %s\n", dtype_name(dt));
    if (op == "ss" || op == "all") {
      p_ss(ctx, dt, 3000, {0, 37, 500}, false, -2, 1, true, "zero_h0_pre0/37/500");
      p_ss(ctx, dt, 3000, {0, 1, 64}, true, -2, 1, true, "h0_pre0/1/64");
      p_ss(ctx, dt, 4000, {0, 100}, true, -9, -7, true, "near1_decays");
      p_ss(ctx, dt, 500, {0, 3}, true, 3, 6, false, "fast_decays_nosoftplus");
    }
    if (op == "ssd" || op == "all") {
      p_ssd(ctx, dt, 3000, {0, 37, 500}, false, -2, 1, 1, "zero_h0_pre0/37/500_G1");
      p_ssd(ctx, dt, 3000, {0, 63, 64, 65}, true, -2, 1, 2, "h0_pre0/63/64/65_G2");
      p_ssd(ctx, dt, 4000, {0, 129}, true, -9, -7, 4, "near1_decays_G4");
    }
    if (op == "gdr" || op == "all") {
      p_gdr(ctx, dt, 2000, {0, 37, 500}, false, false, true, -0.2, 0, 32, 16, "gdn_l2_pre0/37/500");
      p_gdr(ctx, dt, 2000, {0, 63, 64, 65}, true, true, true, -0.2, 0, 16, 16,
            "kda_l2_h0_pre0/63/64/65");
      p_gdr(ctx, dt, 2000, {0, 5}, true, false, false, -1e-4, 0, 8, 8, "gdn_nol2_near1_K8");
      p_gdr(ctx, dt, 1000, {0, 1}, true, true, true, -30, -1, 4, 24, "kda_fastdecay_K4");
    }
    if (op == "conv" || op == "all") {
      for (int64_t W = 1; W <= 4; ++W) {
        char n[64];
        snprintf(n, sizeof n, "W%lld_silu_bias", (long long)W);
        p_conv(ctx, dt, 600, {0, 1, 2, 3, 50}, W, true, true, n);
        snprintf(n, sizeof n, "W%lld_none_nobias", (long long)W);
        p_conv(ctx, dt, 300, {0, 2}, W, false, false, n);
      }
    }
    if (op == "attn" || op == "attn1" || op == "all") {
      p_attn(ctx, dt, 1200, {0, 37, 300}, 1, -1, 0, 4, 2, 16, 1, 0, "pre0/37/300_auto");
      p_attn(ctx, dt, 1200, {0, 600}, 1, -1, 0, 4, 4, 16, 1, 0, "pre0/600_mha_auto");
      p_attn(ctx, dt, 1000, {1, 255, 256, 257}, 1, -1, 7, 4, 2, 16, 1, 0, "splits7");
      p_attn(ctx, dt, 1000, {0, 100}, 1, 99, 0, 4, 2, 16, 1, 0, "window100_auto");
      p_attn(ctx, dt, 1000, {0, 100}, 1, 99, 5, 4, 2, 16, 1, 0, "window100_splits5");
    }
    if (op == "attn" || op == "attn2" || op == "all") {
      p_attn(ctx, dt, 900, {0, 10, 299}, 3, -1, 0, 4, 1, 16, 1, 0, "Tq3_mqa_auto");
      p_attn(ctx, dt, 900, {0, 10, 299}, 3, 50, 4, 4, 2, 16, 1, 0, "Tq3_window51_splits4");
      p_attn(ctx, dt, 600, {0, 1}, 1, -1, 64, 8, 2, 160, 1, 0, "D160_splits64");
      p_attn(ctx, dt, 600, {3, 0}, 1, -1, 0, 4, 2, 16, 3, 30.f, "softcap30_large_q");
      p_attn(ctx, dt, 1, {0}, 1, -1, 0, 4, 2, 16, 1, 0, "first_token_only");
    }
  }
  printf("flags=%d\n", g_flags);
}
