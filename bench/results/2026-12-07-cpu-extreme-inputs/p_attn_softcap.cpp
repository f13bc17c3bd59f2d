// attention backward with softcap and huge (saturating) logits: dq/dk error vs naive f32, several
// seeds.
#include "longctx/ops/attention.h"
#include "probe.h"
#include "reference/attention.h"
using namespace P;
const DType dt32 = DType::f32;
int main(int argc, char** argv) {
  double range = argc > 1 ? atof(argv[1]) : 30;
  float cap = argc > 2 ? atof(argv[2]) : 30;
  int64_t T = argc > 3 ? atoi(argv[3]) : 200;
  bool causal = argc > 4 ? atoi(argv[4]) : 1;
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    Context ctx;
    Rng rng(seed);
    int64_t B = 1, H = 2, D = 64;
    Shape qs{B, T, H, D};
    AttentionParams p;
    p.causal = causal;
    p.softcap = cap;
    Ref q = rounded(random_ref(qs, rng, -range, range), dt32),
        k = rounded(random_ref(qs, rng, -range, range), dt32),
        v = rounded(random_ref(qs, rng), dt32), dout = rounded(random_ref(qs, rng), dt32);
    Tensor out = Tensor::empty(qs, dt32), lse = Tensor::empty({B, H, T}, dt32);
    attention_fwd(ctx, out, lse, from_ref(q, dt32), from_ref(k, dt32), from_ref(v, dt32), p);
    Tensor dq = Tensor::empty(qs, dt32), dk = Tensor::empty(qs, dt32), dv = Tensor::empty(qs, dt32);
    attention_bwd(ctx, dq, dk, dv, from_ref(dout, dt32), from_ref(q, dt32), from_ref(k, dt32),
                  from_ref(v, dt32), out, lse, p);
    auto gx = ref::attention_bwd<Oracle>(dout, q, k, v, p, no_round);
    auto gn = ref::attention_bwd<float>(dout, q, k, v, p, rounding_for(dt32));
    char b[100];
    snprintf(b, 100, "seed %llu dq", (unsigned long long)seed);
    double e = cmp(b, dq, gx.dq, &gn.dq);
    Ref r = to_ref(dq);
    int64_t w = 0;
    double m = 0;
    for (int64_t i = 0; i < r.numel(); ++i)
      if (std::abs(r[i] - gx.dq[i]) > m) {
        m = std::abs(r[i] - gx.dq[i]);
        w = i;
      }
    printf("      worst dq[%lld]: op %.9g naive %.9g exact %.9g\n", (long long)w, r[w], gn.dq[w],
           gx.dq[w]);
    (void)e;
    snprintf(b, 100, "seed %llu dk", (unsigned long long)seed);
    cmp(b, dk, gx.dk, &gn.dk);
    snprintf(b, 100, "seed %llu dv", (unsigned long long)seed);
    cmp(b, dv, gx.dv, &gn.dv);
  }
}
