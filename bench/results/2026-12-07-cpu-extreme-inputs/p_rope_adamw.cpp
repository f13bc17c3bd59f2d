// rope at large positions and long T; adamw with grads 1e30 / 1e-30 and tiny eps (f32, CPU).
#include "longctx/ops/adamw.h"
#include "longctx/ops/rope.h"
#include "probe.h"
#include "reference/adamw.h"
#include "reference/rope.h"
using namespace P;
const DType dt = DType::f32;
int main() {
  Context ctx;
  Rng rng(11);
  // rope with explicit positions up to 2^31-1
  for (double theta : {10000.0, 500000.0, 1e6})
    guard("rope pos", [&] {
      const int64_t B = 1, T = 16, H = 2, D = 128;
      std::vector<int32_t> pos;
      std::vector<int64_t> pos64;
      int32_t ps[16] = {0,         1,       1000,       65535,     100000,  131071,
                        500000,    999999,  1000000,    1 << 20,   4000000, 16777217,
                        100000000, 1 << 30, 2147483646, 2147483647};
      for (int i = 0; i < T; ++i) {
        pos.push_back(ps[i]);
        pos64.push_back(ps[i]);
      }
      Ref x = rounded(random_ref({B, T, H, D}, rng), dt);
      Tensor out = Tensor::empty({B, T, H, D}, dt), dx = Tensor::empty({B, T, H, D}, dt);
      RopeParams p;
      p.theta = theta;
      rope_fwd(ctx, out, from_ref(x, dt), int_tensor(pos, {B, T}), p);
      Ref e = ref::rope<Oracle>(x, pos64, theta, 1.0, no_round),
          nv = ref::rope<float>(x, pos64, theta, 1.0, rounding_for(dt));
      char buf[100];
      snprintf(buf, 100, "rope fwd positions<=2^31-1 theta=%g", theta);
      cmp(buf, out, e, &nv);
      rope_bwd(ctx, dx, from_ref(x, dt), int_tensor(pos, {B, T}), p);
      Ref eb = ref::rope<Oracle>(x, pos64, theta, -1.0, no_round),
          nb = ref::rope<float>(x, pos64, theta, -1.0, rounding_for(dt));
      snprintf(buf, 100, "rope bwd positions<=2^31-1 theta=%g", theta);
      cmp(buf, dx, eb, &nb);
      // negative positions
      std::vector<int32_t> neg;
      std::vector<int64_t> neg64;
      for (int i = 0; i < T; ++i) {
        neg.push_back(-ps[i] - 1);
        neg64.push_back(-int64_t(ps[i]) - 1);
      }
      rope_fwd(ctx, out, from_ref(x, dt), int_tensor(neg, {B, T}), p);
      Ref en = ref::rope<Oracle>(x, neg64, theta, 1.0, no_round),
          nn = ref::rope<float>(x, neg64, theta, 1.0, rounding_for(dt));
      snprintf(buf, 100, "rope fwd negative positions theta=%g", theta);
      cmp(buf, out, en, &nn);
    });
  // rope no positions, long T (the f32 recurrence path), checked on a sample of rows
  guard("rope longT", [&] {
    const int64_t B = 1, T = 1 << 20, H = 1, D = 16;
    Ref x = rounded(random_ref({B, T, H, D}, rng), dt);
    Tensor out = Tensor::empty({B, T, H, D}, dt), dx = Tensor::empty({B, T, H, D}, dt);
    rope_fwd(ctx, out, from_ref(x, dt));
    rope_bwd(ctx, dx, from_ref(x, dt));
    // sample rows: reference on explicit positions of a few slices
    Ref got = to_ref(out), gotb = to_ref(dx);
    Ref sub({1, 64, H, D}), gs(sub.shape), gbs(sub.shape);
    std::vector<int64_t> pp;
    for (int s = 0; s < 64; ++s) {
      int64_t t = T - 1 - int64_t(s) * 16381;
      pp.push_back(t);
      for (int d = 0; d < D; ++d) {
        sub[s * D + d] = x[t * D + d];
        gs[s * D + d] = got[t * D + d];
        gbs[s * D + d] = gotb[t * D + d];
      }
    }
    Ref e = ref::rope<Oracle>(sub, pp, 10000.0, 1.0, no_round),
        nv = ref::rope<float>(sub, pp, 10000.0, 1.0, rounding_for(dt));
    cmp("rope fwd T=2^20 (sampled rows)", gs, e, &nv);
    Ref eb = ref::rope<Oracle>(sub, pp, 10000.0, -1.0, no_round),
        nb = ref::rope<float>(sub, pp, 10000.0, -1.0, rounding_for(dt));
    cmp("rope bwd T=2^20 (sampled rows)", gbs, eb, &nb);
  });
  // adamw
  auto adam = [&](const char* name, double gmag, AdamWParams p, double vinit = 0,
                  double minit = 0) {
    guard(name, [&] {
      const int64_t n = 64;
      Ref param = rounded(random_ref({n}, rng), dt), g = rounded(random_ref({n}, rng, 0.5, 1), dt);
      for (auto& x : g.v) x = double(float(x * gmag));
      Ref m({n}, minit), v({n}, vinit);
      m = rounded(m, dt);
      v = rounded(v, dt);
      Tensor tp = from_ref(param, dt), tm = from_ref(m, dt), tv = from_ref(v, dt);
      adamw_step(ctx, tp, tm, tv, from_ref(g, dt), p);
      auto e = ref::adamw_step<Oracle>(param, m, v, g, p, no_round, no_round);
      auto nv = ref::adamw_step<float>(param, m, v, g, p, rounding_for(dt), rounding_for(dt));
      char buf[120];
      snprintf(buf, 120, "adamw %s param", name);
      cmp(buf, tp, e.param, &nv.param);
      snprintf(buf, 120, "adamw %s m", name);
      cmp(buf, tm, e.m, &nv.m);
      snprintf(buf, 120, "adamw %s v", name);
      cmp(buf, tv, e.v, &nv.v);
    });
  };
  AdamWParams p;
  adam("normal", 1, p);
  adam("grad 1e18", 1e18, p);
  adam("grad 1e19", 1e19, p);
  adam("grad 1e21", 1e21, p);
  adam("grad 1e30", 1e30, p);
  adam("grad 1e30 grad_scale 1e-30", 1e30, [&] {
    AdamWParams q;
    q.grad_scale = 1e-30;
    return q;
  }());
  adam("grad 1 grad_scale 1e30", 1, [&] {
    AdamWParams q;
    q.grad_scale = 1e30;
    return q;
  }());
  adam("grad 1e-30", 1e-30, p);
  adam("grad 1e-30 eps 1e-40", 1e-30, [&] {
    AdamWParams q;
    q.eps = 1e-40;
    return q;
  }());
  adam("grad 1e-20 eps 1e-30", 1e-20, [&] {
    AdamWParams q;
    q.eps = 1e-30;
    return q;
  }());
  adam("grad 1e-20 eps 1e-30 step 1000", 1e-20, [&] {
    AdamWParams q;
    q.eps = 1e-30;
    q.step = 1000;
    return q;
  }());
  adam("grad 1e-10 eps 1e-16", 1e-10, [&] {
    AdamWParams q;
    q.eps = 1e-16;
    return q;
  }());
  adam("step 1e6 beta2 0.99999", 1, [&] {
    AdamWParams q;
    q.step = 1000000;
    q.beta2 = 0.99999;
    return q;
  }());
  adam("beta1 0.9999999 step1", 1, [&] {
    AdamWParams q;
    q.beta1 = 0.9999999;
    return q;
  }());
  adam("beta2 0.9999999 step1", 1, [&] {
    AdamWParams q;
    q.beta2 = 0.9999999;
    return q;
  }());
  adam("lr 1e30 wd 0", 1, [&] {
    AdamWParams q;
    q.lr = 1e30;
    q.weight_decay = 0;
    return q;
  }());
  printf("flags=%d\n", g_flags);
}
