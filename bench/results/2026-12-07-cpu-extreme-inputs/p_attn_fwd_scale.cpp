// attention forward at large logits (softmax_scale 1e3 or q,k ~ 25): out error vs the naive f32
// softmax, several seeds.
#include "longctx/ops/attention.h"
#include "probe.h"
#include "reference/attention.h"
using namespace P;
int main() {
  const DType f = DType::f32;
  for (float sc : {1e3f, 0.f})
    for (uint64_t seed = 1; seed <= 4; ++seed) {
      Context ctx;
      Rng rng(seed);
      const int64_t T = 150, H = 2, D = 32;
      double range = sc == 0 ? 25 : 1;
      Shape qs{1, T, H, D};
      Ref q = rounded(random_ref(qs, rng, -range, range), f),
          k = rounded(random_ref(qs, rng, -range, range), f), v = rounded(random_ref(qs, rng), f);
      AttentionParams p;
      p.causal = true;
      p.softmax_scale = sc;
      Tensor out = Tensor::empty(qs, f), lse = Tensor::empty({1, H, T}, f);
      attention_fwd(ctx, out, lse, from_ref(q, f), from_ref(k, f), from_ref(v, f), p);
      auto e = ref::attention_fwd<Oracle>(q, k, v, p, no_round);
      auto n = ref::attention_fwd<float>(q, k, v, p, rounding_for(f));
      char b[100];
      snprintf(b, 100, "scale=%g range=%g seed %llu out", sc, range, (unsigned long long)seed);
      double err = cmp(b, out, e.out, &n.out);
      printf("      err / 2x-rule tol = %.2f\n",
             err / (2 * max_abs_diff(n.out, e.out) + 2 * 0x1p-24 * std::max(1.0, max_abs(e.out))));
    }
}
