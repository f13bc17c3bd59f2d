// cross_entropy fwd/bwd at extreme logits (f32, CPU).
#include "longctx/ops/cross_entropy.h"
#include "probe.h"
#include "reference/cross_entropy.h"
using namespace P;
void run(const char* name, Ref logits, std::vector<int32_t> tg, int32_t ignore = -100,
         double dloss = 1.0) {
  Context ctx;
  DType dt = DType::f32;
  logits = rounded(logits, dt);
  const int64_t V = logits.shape.back(), N = logits.numel() / V;
  char buf[200];
  guard(name, [&] {
    Tensor loss = Tensor::empty({1}, dt), lse = Tensor::empty({N}, dt);
    Tensor lt = from_ref(logits, dt), tt = int_tensor(tg, {N});
    CrossEntropyParams p;
    p.ignore_index = ignore;
    cross_entropy_fwd(ctx, loss, lse, lt, tt, p);
    auto ex = ref::cross_entropy_fwd<Oracle>(logits, tg, ignore, no_round);
    auto nv = ref::cross_entropy_fwd<float>(logits, tg, ignore, rounding_for(dt));
    snprintf(buf, sizeof buf, "%s loss", name);
    cmp(buf, loss, ex.loss, &nv.loss);
    snprintf(buf, sizeof buf, "%s lse", name);
    cmp(buf, lse, ex.lse, &nv.lse);
    Tensor d = Tensor::empty(logits.shape, dt);
    cross_entropy_bwd(ctx, d, from_ref(Ref({1}, dloss), dt), lt, tt, lse, p);
    auto g = ref::cross_entropy_bwd<Oracle>(dloss, logits, tg, ignore, no_round, no_round);
    auto gn = ref::cross_entropy_bwd<float>(dloss, logits, tg, ignore, rounding_for(dt),
                                            rounding_for(dt));
    snprintf(buf, sizeof buf, "%s dlogits", name);
    cmp(buf, d, g, &gn);
  });
}
int main() {
  Rng rng(3);
  auto mk = [&](int64_t N, int64_t V, double lo, double hi) {
    return random_ref({N, V}, rng, lo, hi);
  };
  auto targets = [&](int64_t N, int64_t V) {
    std::vector<int32_t> t;
    for (int64_t i = 0; i < N; ++i) t.push_back(int32_t(rng.integer(0, V - 1)));
    return t;
  };
  run("normal", mk(8, 1000, -3, 3), targets(8, 1000));
  run("logits +-1e4", mk(8, 1000, -1e4, 1e4), targets(8, 1000));
  run("logits ~1e4 narrow", mk(8, 1000, 1e4, 1e4 + 5), targets(8, 1000));
  run("logits -1e4 narrow", mk(8, 1000, -1e4 - 5, -1e4), targets(8, 1000));
  run("logits +-8.5e37", mk(8, 300, -8.5e37, 8.5e37), targets(8, 300));
  run("logits 1e38..1.1e38 (shift)", mk(8, 300, 1e38, 1.1e38), targets(8, 300));
  run("logits near -3e38", mk(8, 300, -3e38, -2.9e38), targets(8, 300));
  {
    Ref l = mk(8, 300, -1, 1);
    for (int64_t i = 0; i < 8; ++i) l[i * 300 + 5] = 3e38;
    l[0] = -3e38;
    run("one 3e38 per row, rest small", l, targets(8, 300));
  }
  {
    Ref l = mk(8, 300, -1, 1);
    for (int64_t i = 0; i < 8; ++i) l[i * 300 + 5] = 200;
    run("one 200 per row (exp overflow naive)", l, targets(8, 300));
  }
  run("V=1", mk(16, 1, -1e4, 1e4), std::vector<int32_t>(16, 0));
  run("V=1 all ignored", mk(4, 1, -1, 1), std::vector<int32_t>(4, -100));
  run("ignore_index=0 half", mk(6, 50, -5, 5), {0, 3, 0, 7, 0, 49}, 0);
  run("ignore_index=INT_MIN", mk(6, 50, -5, 5), {INT32_MIN, 3, 0, 7, 0, 49}, INT32_MIN);
  run("V=1 huge N=100000", mk(100000, 1, -5, 5), std::vector<int32_t>(100000, 0));
  run("V=257 tail, 1e4 spread", mk(5, 257, -1e4, 1e4), targets(5, 257));
  run("large V=200000", mk(2, 200000, -20, 20), targets(2, 200000));
  run("dloss 1e30", mk(8, 100, -3, 3), targets(8, 100), -100, 1e30);
  run("dloss 1e-30", mk(8, 100, -3, 3), targets(8, 100), -100, 1e-30);
  // subnormal region of exp: logits spaced so exp(x-m) in (-104,-87)
  run("exp subnormal", mk(4, 512, -100, 0), targets(4, 512));
  printf("flags=%d\n", g_flags);
}
