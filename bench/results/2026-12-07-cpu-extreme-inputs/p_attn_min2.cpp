// Repro: attention backward at large logits (|scale*q.k| ~ 1e3), one query, near one-hot softmax.
// dq, dk are ~0 exactly (the softmax is saturated) but the op returns errors of order 1e-6..1e-4,
// several times the naive f32 implementation's error; dv (=P*dout) off by ~1e-4 relative.
#include "longctx/ops/attention.h"
#include "probe.h"
#include "reference/attention.h"
using namespace P;
int main(int argc, char** argv) {
  const DType f = DType::f32;
  for (double range : {1.0, 8.0, 25.0})
    for (int64_t Tk : {16, 256}) {
      Context ctx;
      Rng rng(3);
      const int64_t D = 64;
      Shape qs{1, 1, 1, D}, ks{1, Tk, 1, D};
      Ref q = rounded(random_ref(qs, rng, -range, range), f),
          k = rounded(random_ref(ks, rng, -range, range), f);
      Ref v = rounded(random_ref(ks, rng), f), dout = rounded(random_ref(qs, rng), f);
      AttentionParams p;  // scale 1/sqrt(64)
      Tensor out = Tensor::empty(qs, f), lse = Tensor::empty({1, 1, 1}, f);
      attention_fwd(ctx, out, lse, from_ref(q, f), from_ref(k, f), from_ref(v, f), p);
      Tensor dq = Tensor::empty(qs, f), dk = Tensor::empty(ks, f), dv = Tensor::empty(ks, f);
      attention_bwd(ctx, dq, dk, dv, from_ref(dout, f), from_ref(q, f), from_ref(k, f),
                    from_ref(v, f), out, lse, p);
      auto fx = ref::attention_fwd<Oracle>(q, k, v, p, no_round);
      auto gx = ref::attention_bwd<Oracle>(dout, q, k, v, p, no_round);
      auto gn = ref::attention_bwd<float>(dout, q, k, v, p, rounding_for(f));
      printf("--- q,k ~ U(-%g,%g), D=64, Tq=1, Tk=%lld: lse=%.6g (exact %.9g)\n", range, range,
             (long long)Tk, to_ref(lse)[0], fx.lse[0]);
      cmp("dq", dq, gx.dq, &gn.dq);
      cmp("dk", dk, gx.dk, &gn.dk);
      cmp("dv", dv, gx.dv, &gn.dv);
    }
}
