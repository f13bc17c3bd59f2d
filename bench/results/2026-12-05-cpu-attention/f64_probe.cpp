// TEMPORARY probe (not committed): f64 backward error against the 2x rule over many seeds.
#include <cstdio>

#include "harness.h"
#include "longctx/ops/attention.h"
#include "reference/attention.h"

namespace longctx::test {
namespace {
TEST(AttentionF64Probe, Stats) {
  const int64_t B = 2, T = 29, H = 4, Hkv = 2, D = 8;
  AttentionParams params;
  params.causal = true;
  const DType dt = DType::f64;
  Context& ctx = context_for(Device::cpu());
  const char* names[3] = {"dq", "dk", "dv"};
  double worst[3] = {0, 0, 0}, mean[3] = {0, 0, 0};
  int over[3] = {0, 0, 0};
  const int seeds = 300;
  for (int seed = 0; seed < seeds; ++seed) {
    Rng rng(seed == 0 ? uint64_t(T * 1000 + H * 10 + D) : uint64_t(seed * 7919 + 13));
    const Ref q = random_ref({B, T, H, D}, rng), k = random_ref({B, T, Hkv, D}, rng);
    const Ref v = random_ref({B, T, Hkv, D}, rng), dout = random_ref({B, T, H, D}, rng);
    const Tensor tq = from_ref(q, dt), tk = from_ref(k, dt), tv = from_ref(v, dt),
                 tdo = from_ref(dout, dt);
    Tensor out = Tensor::empty({B, T, H, D}, dt), lse = Tensor::empty({B, H, T}, dt);
    attention_fwd(ctx, out, lse, tq, tk, tv, params);
    Tensor g[3] = {Tensor::empty({B, T, H, D}, dt), Tensor::empty({B, T, Hkv, D}, dt),
                   Tensor::empty({B, T, Hkv, D}, dt)};
    attention_bwd(ctx, g[0], g[1], g[2], tdo, tq, tk, tv, out, lse, params);
    const auto ex = ref::attention_bwd<Oracle>(dout, q, k, v, params, no_round);
    const auto nv = ref::attention_bwd<double>(dout, q, k, v, params, no_round);
    const Ref* e[3] = {&ex.dq, &ex.dk, &ex.dv};
    const Ref* n[3] = {&nv.dq, &nv.dk, &nv.dv};
    for (int x = 0; x < 3; ++x) {
      const double ne = max_abs_diff(*n[x], *e[x]);
      const double tol = 2 * ne + 2 * unit_roundoff(dt) * std::max(1.0, max_abs(*e[x]));
      const double err = max_abs_diff(to_ref(g[x]), *e[x]);
      worst[x] = std::max(worst[x], err / tol);
      mean[x] += err / ne / seeds;
      over[x] += err > tol;
      if (seed == 0) std::printf("seed0 %s err %.3g naive %.3g tol %.3g\n", names[x], err, ne, tol);
    }
  }
  for (int x = 0; x < 3; ++x)
    std::printf("%s: worst err/tol %.3f, mean err/naive_err %.3f, over the rule %d of %d\n",
                names[x], worst[x], mean[x], over[x], seeds);
}
}  // namespace
}  // namespace longctx::test
