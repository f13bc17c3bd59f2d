// attention_decode on long caches (up to 32k keys) and unusual head dims, a few decode steps at
// the end, each query row against the oracle (rows subset) and the naive f32 softmax.
#include "longctx/ops/attention.h"
#include "probe.h"
#include "reference/attention.h"
using namespace P;

static void run(Context& ctx, DType dt, const char* name, std::vector<int64_t> lens, int64_t steps,
                int64_t Tq, int64_t H, int64_t Hkv, int64_t Dh, double qs, int window, int splits,
                float softcap = 0) {
  const int64_t Bn = int64_t(lens.size()),
                T = *std::max_element(lens.begin(), lens.end()) + steps * Tq;
  Rng r(3);
  Ref q = rounded(random_ref({Bn, T, H, Dh}, r, -qs, qs), dt),
      k = rounded(random_ref({Bn, T, Hkv, Dh}, r, -qs, qs), dt),
      v = rounded(random_ref({Bn, T, Hkv, Dh}, r), dt);
  AttentionParams prm;
  prm.causal = true;
  prm.window_left = window;
  prm.softcap = softcap;
  const int64_t Tmax = T, row = Hkv * Dh;
  Ref kc({Bn, Tmax, Hkv, Dh}, 1e30), vc({Bn, Tmax, Hkv, Dh}, 1e30);
  for (int64_t b = 0; b < Bn; ++b)
    for (int64_t t = 0; t < lens[size_t(b)]; ++t)
      for (int64_t i = 0; i < row; ++i) {
        kc[(b * Tmax + t) * row + i] = k[(b * T + t) * row + i];
        vc[(b * Tmax + t) * row + i] = v[(b * T + t) * row + i];
      }
  Tensor kct = from_ref(kc, dt), vct = from_ref(vc, dt);
  // rows of the oracle needed: (b, h, t) for decoded t. The reference is per batch of the full
  // q/k/v with Tq = Tk = T (causal), so compute per sequence with its own length.
  std::vector<double> G, E, N, GL, EL, NL;
  for (int64_t s = 0; s < steps; ++s) {
    Ref qs_({Bn, Tq, H, Dh}), kn({Bn, Tq, Hkv, Dh}), vn({Bn, Tq, Hkv, Dh});
    std::vector<int32_t> cl;
    for (int64_t b = 0; b < Bn; ++b) {
      const int64_t t0 = lens[size_t(b)] + s * Tq;
      cl.push_back(int32_t(t0));
      for (int64_t j = 0; j < Tq; ++j) {
        for (int64_t i = 0; i < H * Dh; ++i)
          qs_[(b * Tq + j) * H * Dh + i] = q[(b * T + t0 + j) * H * Dh + i];
        for (int64_t i = 0; i < row; ++i) {
          kn[(b * Tq + j) * row + i] = k[(b * T + t0 + j) * row + i];
          vn[(b * Tq + j) * row + i] = v[(b * T + t0 + j) * row + i];
        }
      }
    }
    Tensor out = poisoned({Bn, Tq, H, Dh}, dt, Device::cpu(), &ctx),
           lse = poisoned({Bn, H, Tq}, dt, Device::cpu(), &ctx);
    guard(name, [&] {
      attention_decode(ctx, out, lse, from_ref(qs_, dt), kct, vct, int_tensor(cl, {Bn}),
                       from_ref(kn, dt), from_ref(vn, dt), prm, splits);
    });
    Ref o = to_ref(out), l = to_ref(lse);
    for (int64_t b = 0; b < Bn; ++b) {
      const int64_t Tk = lens[size_t(b)] + (s + 1) * Tq;
      Ref qb = slice(slice(q, 0, b, b + 1), 1, Tk - Tq, Tk),
          kb = slice(slice(k, 0, b, b + 1), 1, 0, Tk), vb = slice(slice(v, 0, b, b + 1), 1, 0, Tk);
      auto ex = ref::attention_fwd<Oracle>(qb, kb, vb, prm, no_round);
      ref::AttentionOut nv;
      with_naive_type(dt, [&](auto tag) {
        using S = typename decltype(tag)::type;
        nv = ref::attention_fwd<S>(qb, kb, vb, prm, rounding_for(dt));
      });
      for (int64_t i = 0; i < Tq * H * Dh; ++i) {
        G.push_back(o[b * Tq * H * Dh + i]);
        E.push_back(ex.out[i]);
        N.push_back(nv.out[i]);
      }
      for (int64_t i = 0; i < H * Tq; ++i) {
        GL.push_back(l[b * H * Tq + i]);
        EL.push_back(ex.lse[i]);
        NL.push_back(nv.lse[i]);
      }
    }
  }
  auto mk = [](std::vector<double>& x) {
    Ref R({int64_t(x.size())});
    R.v = x;
    return R;
  };
  std::string w = std::string(name) + " out";
  cmp(w.c_str(), mk(G), mk(E), &(const Ref&)mk(N), dt);
  Ref nl = mk(NL);
  w = std::string(name) + " lse";
  cmp(w.c_str(), mk(GL), mk(EL), &nl, dt);
  fflush(stdout);
}

int main() {
  Context ctx(Device::cpu());
  for (DType dt : {DType::f32, DType::f64}) {
    printf("==== %s\n", dtype_name(dt));
    run(ctx, dt, "B2_len32000/7_auto", {32000, 7}, 3, 1, 4, 2, 64, 1, -1, 0);
    run(ctx, dt, "B1_len20000_splits1", {20000}, 2, 1, 4, 2, 64, 1, -1, 1);
    run(ctx, dt, "B1_len20000_splits61", {20000}, 2, 1, 4, 2, 64, 1, -1, 61);
    run(ctx, dt, "B3_len9000/1/300_splits500", {9000, 1, 300}, 2, 1, 2, 1, 32, 1, -1, 500);
    run(ctx, dt, "B2_len16384_window1000_auto", {16384, 999}, 2, 1, 4, 2, 64, 1, 999, 0);
    run(ctx, dt, "B2_len16384_window1000_splits64", {16384, 999}, 2, 1, 4, 2, 64, 1, 999, 64);
    run(ctx, dt, "Tq4_len8000_window31_splits8", {8000, 40}, 2, 4, 4, 2, 32, 1, 30, 8);
    run(ctx, dt, "D520_Tq1_len3000_auto", {3000, 2}, 2, 1, 2, 1, 520, 1, -1, 0);
    run(ctx, dt, "D1_len5000_auto", {5000}, 2, 1, 8, 4, 1, 1, -1, 0);
    run(ctx, dt, "bigscores_q4_len4000_splits16", {4000}, 2, 1, 4, 2, 64, 4, -1, 16);
    run(ctx, dt, "H6_Hkv3_group2_len3000_auto", {3000, 5}, 2, 1, 6, 3, 64, 1, -1, 0);
  }
  printf("flags=%d\n", g_flags);
}
