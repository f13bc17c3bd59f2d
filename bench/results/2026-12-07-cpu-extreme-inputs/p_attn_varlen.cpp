// attention packed (varlen) batches with 0/1-length sequences and large logits; decode with splits
// and large logits.
#include "longctx/ops/attention.h"
#include "probe.h"
#include "reference/attention.h"
using namespace P;
const DType f = DType::f32;
void packed(const char* name, std::vector<int64_t> ql, std::vector<int64_t> kl, AttentionParams p,
            double range) {
  Context ctx;
  Rng rng(9);
  const int64_t H = 4, Hkv = 2, D = 32, N = ql.size();
  auto cq = cu_seqlens_of(ql), ck = cu_seqlens_of(kl);
  const int64_t Tq = cq.back(), Tk = ck.back();
  Shape qs{1, Tq, H, D}, ks{1, Tk, Hkv, D};
  Ref q = rounded(random_ref(qs, rng, -range, range), f),
      k = rounded(random_ref(ks, rng, -range, range), f), v = rounded(random_ref(ks, rng), f),
      dout = rounded(random_ref(qs, rng), f);
  guard(name, [&] {
    Tensor out = Tensor::empty(qs, f), lse = Tensor::empty({1, H, Tq}, f);
    Tensor tcq = int_tensor(cq, {N + 1}), tck = int_tensor(ck, {N + 1});
    attention_fwd(ctx, out, lse, from_ref(q, f), from_ref(k, f), from_ref(v, f), p, tcq, tck);
    Tensor dq = Tensor::empty(qs, f), dk = Tensor::empty(ks, f), dv = Tensor::empty(ks, f);
    attention_bwd(ctx, dq, dk, dv, from_ref(dout, f), from_ref(q, f), from_ref(k, f),
                  from_ref(v, f), out, lse, p, tcq, tck);
    ref::AttentionOut ex{Ref(qs), Ref({1, H, Tq})}, nv = ex;
    ref::AttentionGrads ge{Ref(qs), Ref(ks), Ref(ks)}, gn = ge;
    for (int64_t n = 0; n < N; ++n) {
      int64_t qb = cq[n], qe = cq[n + 1], kb = ck[n], ke = ck[n + 1];
      Ref qn = slice(q, 1, qb, qe), kn = slice(k, 1, kb, ke), vn = slice(v, 1, kb, ke),
          dn = slice(dout, 1, qb, qe);
      auto fe = ref::attention_fwd<Oracle>(qn, kn, vn, p, no_round);
      auto fn = ref::attention_fwd<float>(qn, kn, vn, p, rounding_for(f));
      auto be = ref::attention_bwd<Oracle>(dn, qn, kn, vn, p, no_round);
      auto bn = ref::attention_bwd<float>(dn, qn, kn, vn, p, rounding_for(f));
      paste(ex.out, 1, qb, fe.out);
      paste(nv.out, 1, qb, fn.out);
      paste(ex.lse, 2, qb, fe.lse);
      paste(nv.lse, 2, qb, fn.lse);
      paste(ge.dq, 1, qb, be.dq);
      paste(gn.dq, 1, qb, bn.dq);
      paste(ge.dk, 1, kb, be.dk);
      paste(gn.dk, 1, kb, bn.dk);
      paste(ge.dv, 1, kb, be.dv);
      paste(gn.dv, 1, kb, bn.dv);
    }
    Ref rl = to_ref(lse);
    int mism = 0;
    for (int64_t i = 0; i < rl.numel(); ++i) {
      bool a = std::isinf(ex.lse[i]) && ex.lse[i] < 0, b = std::isinf(rl[i]) && rl[i] < 0;
      if (a != b) mism++;
      if (a && b) {
        rl[i] = 0;
        ex.lse[i] = 0;
        nv.lse[i] = 0;
      }
    }
    char buf[200];
    snprintf(buf, 200, "%s out", name);
    cmp(buf, out, ex.out, &nv.out);
    snprintf(buf, 200, "%s lse (-inf mismatches=%d)", name, mism);
    cmp(buf, rl, ex.lse, &nv.lse);
    if (mism) g_flags++;
    snprintf(buf, 200, "%s dq", name);
    cmp(buf, dq, ge.dq, &gn.dq);
    snprintf(buf, 200, "%s dk", name);
    cmp(buf, dk, ge.dk, &gn.dk);
    snprintf(buf, 200, "%s dv", name);
    cmp(buf, dv, ge.dv, &gn.dv);
  });
}
void decode(const char* name, std::vector<int> lens, int64_t Tq, bool append, AttentionParams p,
            double range, int splits, int64_t Tmax) {
  Context ctx;
  Rng rng(10);
  const int64_t B = lens.size(), H = 4, Hkv = 1, D = 64;
  Shape qs{B, Tq, H, D}, cs{B, Tmax, Hkv, D};
  Ref q = rounded(random_ref(qs, rng, -range, range), f),
      kc = rounded(random_ref(cs, rng, -range, range), f), vc = rounded(random_ref(cs, rng), f);
  Ref kn = rounded(random_ref({B, Tq, Hkv, D}, rng, -range, range), f),
      vn = rounded(random_ref({B, Tq, Hkv, D}, rng), f);
  guard(name, [&] {
    Tensor out = Tensor::empty(qs, f), lse = Tensor::empty({B, H, Tq}, f);
    Tensor tl = Tensor::empty({B}, DType::i32);
    for (int64_t b = 0; b < B; ++b) tl.data_as<int32_t>()[b] = lens[b];
    attention_decode(ctx, out, lse, from_ref(q, f), from_ref(kc, f), from_ref(vc, f), tl,
                     append ? from_ref(kn, f) : Tensor(), append ? from_ref(vn, f) : Tensor(), p,
                     splits);
    auto ex = ref::attention_decode<Oracle>(q, kc, vc, lens, append ? &kn : nullptr,
                                            append ? &vn : nullptr, p, no_round);
    auto nv = ref::attention_decode<float>(q, kc, vc, lens, append ? &kn : nullptr,
                                           append ? &vn : nullptr, p, rounding_for(f));
    Ref rl = to_ref(lse);
    int mism = 0;
    for (int64_t i = 0; i < rl.numel(); ++i) {
      bool a = std::isinf(ex.lse[i]) && ex.lse[i] < 0, b = std::isinf(rl[i]) && rl[i] < 0;
      if (a != b) mism++;
      if (a && b) {
        rl[i] = 0;
        ex.lse[i] = 0;
        nv.lse[i] = 0;
      }
    }
    char buf[200];
    snprintf(buf, 200, "%s out", name);
    cmp(buf, out, ex.out, &nv.out);
    snprintf(buf, 200, "%s lse (-inf mism=%d)", name, mism);
    cmp(buf, rl, ex.lse, &nv.lse);
    if (mism) g_flags++;
  });
}
AttentionParams P_(bool c, int wl = -1, int wr = -1, float cap = 0) {
  AttentionParams p;
  p.causal = c;
  p.window_left = wl;
  p.window_right = wr;
  p.softcap = cap;
  return p;
}
int main() {
  packed("varlen 0/1 lengths causal", {0, 1, 1, 0, 5, 1, 300}, {0, 1, 3, 2, 5, 0, 300}, P_(true),
         1.0);
  packed("varlen 0/1 lengths noncausal logits 1e3", {0, 1, 1, 0, 5, 1, 300},
         {0, 1, 3, 2, 5, 0, 300}, P_(false), 10.0);
  packed("varlen windows", {1, 7, 130, 64}, {1, 9, 200, 63}, P_(true, 16, 0), 2.0);
  packed("varlen Tq>Tk causal", {10, 20}, {3, 0}, P_(true), 2.0);
  decode("decode 1 tok splits=0 logits 1e3", {0, 5, 1000, 4095}, 1, true, P_(true), 8.0, 0, 4096);
  decode("decode 4 tok splits=7 logits 1e4", {1, 17, 2000, 4090}, 4, true, P_(true), 25.0, 7, 4096);
  decode("decode no append len 0 row", {0, 3, 100}, 1, false, P_(true), 2.0, 3, 256);
  decode("decode window 5 splits 64", {4000, 10}, 2, true, P_(true, 5, 0), 5.0, 64, 4096);
  decode("decode softcap 30 logits 1e4 splits 5", {3000, 50}, 1, true, P_(true, -1, -1, 30.f), 25.0,
         5, 4096);
  printf("flags=%d\n", g_flags);
}
