// Elementwise gates at extreme inputs: swiglu, sigmoid, sigmoid_gate, neg_exp, gdn_gate, rglru_gate
// (f32, CPU).
#include "longctx/ops/elementwise.h"
#include "longctx/ops/gdn_gate.h"
#include "longctx/ops/rglru_gate.h"
#include "longctx/ops/swiglu.h"
#include "probe.h"
#include "reference/gdn_gate.h"
#include "reference/rglru_gate.h"
#include "reference/swiglu.h"
using namespace P;
const DType dt = DType::f32;
Ref vals(std::vector<double> v) {
  Ref r({int64_t(v.size())});
  r.v = v;
  return rounded(r, dt);
}
Ref fill(int64_t n, double x) {
  return Ref({n}, x);
}
int main() {
  Context ctx;
  std::vector<double> ext = {-1e4, -1e3, -150, -100, -90, -88, -87.5, -87, -86, -50, -20, -1e-3,
                             0,    1e-3, 20,   21,   50,  87,  88,    89,  100, 150, 1e3, 1e4};
  const int64_t n = ext.size();
  Ref g = vals(ext);
  Rng rng(5);
  Ref up = rounded(random_ref({n}, rng, 0.5, 2), dt),
      dy = rounded(random_ref({n}, rng, 0.5, 2), dt);
  // swiglu
  guard("swiglu", [&] {
    Tensor out = Tensor::empty({n}, dt), dg = Tensor::empty({n}, dt), du = Tensor::empty({n}, dt);
    swiglu_fwd(ctx, out, from_ref(g, dt), from_ref(up, dt));
    Ref e = ref::swiglu_fwd<Oracle>(g, up, no_round),
        nv = ref::swiglu_fwd<float>(g, up, rounding_for(dt));
    cmp("swiglu out", out, e, &nv);
    swiglu_bwd(ctx, dg, du, from_ref(dy, dt), from_ref(g, dt), from_ref(up, dt));
    auto ge = ref::swiglu_bwd<Oracle>(dy, g, up, no_round);
    auto gn = ref::swiglu_bwd<float>(dy, g, up, rounding_for(dt));
    cmp("swiglu dgate", dg, ge.dgate, &gn.dgate);
    cmp("swiglu dup", du, ge.dup, &gn.dup);
  });
  guard("sigmoid_gate", [&] {
    Tensor out = Tensor::empty({n}, dt), dg = Tensor::empty({n}, dt), du = Tensor::empty({n}, dt);
    sigmoid_gate_fwd(ctx, out, from_ref(g, dt), from_ref(up, dt));
    Ref e = ref::sigmoid_gate_fwd<Oracle>(g, up, no_round),
        nv = ref::sigmoid_gate_fwd<float>(g, up, rounding_for(dt));
    cmp("sigmoid_gate out", out, e, &nv);
    sigmoid_gate_bwd(ctx, dg, du, from_ref(dy, dt), from_ref(g, dt), from_ref(up, dt));
    auto ge = ref::sigmoid_gate_bwd<Oracle>(dy, g, up, no_round);
    auto gn = ref::sigmoid_gate_bwd<float>(dy, g, up, rounding_for(dt));
    cmp("sigmoid_gate dgate", dg, ge.dgate, &gn.dgate);
    cmp("sigmoid_gate dup", du, ge.dup, &gn.dup);
    // sigmoid of large +: s(1-s) relative
    Tensor s = Tensor::empty({n}, dt);
    sigmoid_fwd(ctx, s, from_ref(g, dt));
    Ref se(g.shape);
    for (int64_t i = 0; i < n; ++i) se[i] = double(1 / (1 + std::exp(-(long double)g[i])));
    cmp("sigmoid out", s, se);
    Ref rs = to_ref(s);
    for (int64_t i = 0; i < n; ++i)
      if (se[i] > 0 && se[i] < 1e-30) printf("   sigmoid(%g): got %g ref %g\n", g[i], rs[i], se[i]);
  });
  guard("neg_exp", [&] {
    Ref x = vals({-1e4, -104, -103, -88, -87.3, -50, 0, 50, 88, 88.7});
    Tensor o = Tensor::empty({10}, dt);
    neg_exp_fwd(ctx, o, from_ref(x, dt));
    Ref e(x.shape);
    for (int i = 0; i < 10; ++i) e[i] = double(-std::exp((long double)x[i]));
    Ref ro = to_ref(o);
    int bad = 0;
    for (int i = 0; i < 10; ++i) {
      double rel = std::abs(ro[i] - e[i]) / std::abs(e[i]);
      if (std::abs(e[i]) > 1.2e-38 && rel > 1e-6) {
        printf("**BAD** neg_exp(%g) got %g ref %g\n", x[i], ro[i], e[i]);
        bad++;
      }
    }
    printf("  ok    neg_exp relerr checked (bad=%d)\n", bad);
  });
  // gdn_gate: a extreme, A_log range, dt_bias 0
  for (double alog : {-20.0, 0.0, 5.0, 20.0})
    guard("gdn_gate", [&] {
      Ref A_log({1}, alog), bias = fill(n, 0.0);
      Tensor gt = Tensor::empty({1, n}, dt);
      Ref a = g;
      a.shape = {1, n};
      gdn_gate_fwd(ctx, gt, from_ref(a, dt), from_ref(A_log, dt), from_ref(bias, dt));
      char buf[100];
      Ref e = ref::gdn_gate_fwd<Oracle>(a, A_log, bias, no_round),
          nv = ref::gdn_gate_fwd<float>(a, A_log, bias, rounding_for(dt));
      snprintf(buf, 100, "gdn_gate g A_log=%g", alog);
      cmp(buf, gt, e, &nv);
      // elementwise relative
      Ref rg = to_ref(gt);
      for (int64_t i = 0; i < n; ++i) {
        double rel = std::abs(rg[i] - e[i]) / std::max(std::abs(e[i]), 1e-300);
        if (std::abs(e[i]) > 1.2e-38 && rel > 1e-5)
          printf("   rel %.3g at a=%g: got %.9g ref %.9g\n", rel, a[i], rg[i], e[i]);
      }
      Ref dg = rounded(random_ref({1, n}, rng, 0.5, 2), dt);
      Tensor da = Tensor::empty({1, n}, dt), dal = Tensor::empty({1}, dt),
             db = Tensor::empty({n}, dt);
      gdn_gate_bwd(ctx, da, dal, db, from_ref(dg, dt), from_ref(a, dt), from_ref(A_log, dt),
                   from_ref(bias, dt));
      auto ge = ref::gdn_gate_bwd<Oracle>(dg, a, A_log, bias, no_round);
      auto gn = ref::gdn_gate_bwd<float>(dg, a, A_log, bias, rounding_for(dt));
      snprintf(buf, 100, "gdn_gate da A_log=%g", alog);
      cmp(buf, da, ge.da, &gn.da);
      snprintf(buf, 100, "gdn_gate dA_log A_log=%g", alog);
      cmp(buf, dal, ge.dA_log, &gn.dA_log);
      snprintf(buf, 100, "gdn_gate ddt_bias A_log=%g", alog);
      cmp(buf, db, ge.ddt_bias, &gn.ddt_bias);
    });
  // rglru_gate: gate_a extremes x lambda extremes
  for (double lam : {-1e4, -100.0, -20.0, -5.0, 0.0, 5.0, 100.0, 1e4})
    guard("rglru", [&] {
      Ref ga = g;
      ga.shape = {n, 1};
      Ref gx({n, 1}, 0.3), x = rounded(random_ref({n, 1}, rng, 0.5, 2), dt), l({1}, lam);
      gx = rounded(gx, dt);
      l = rounded(l, dt);
      Tensor a = Tensor::empty({n, 1}, dt), b = Tensor::empty({n, 1}, dt);
      rglru_gate_fwd(ctx, a, b, from_ref(x, dt), from_ref(ga, dt), from_ref(gx, dt),
                     from_ref(l, dt));
      auto e = ref::rglru_gate_fwd<Oracle>(x, ga, gx, l, no_round);
      auto nv = ref::rglru_gate_fwd<float>(x, ga, gx, l, rounding_for(dt));
      char buf[100];
      snprintf(buf, 100, "rglru a lambda=%g", lam);
      cmp(buf, a, e.a, &nv.a);
      snprintf(buf, 100, "rglru b lambda=%g", lam);
      cmp(buf, b, e.b, &nv.b);
      Ref rb = to_ref(b);
      for (int64_t i = 0; i < n; ++i) {
        double rel = std::abs(rb[i] - e.b[i]) / std::max(std::abs(e.b[i]), 1e-300);
        if (std::abs(e.b[i]) > 1e-30 && rel > 1e-4)
          printf("   b rel %.3g at gate_a=%g: got %.9g ref %.9g\n", rel, ga[i], rb[i], e.b[i]);
      }
      Ref da = rounded(random_ref({n, 1}, rng), dt), db = rounded(random_ref({n, 1}, rng), dt);
      Tensor dx = Tensor::empty({n, 1}, dt), dga = Tensor::empty({n, 1}, dt),
             dgx = Tensor::empty({n, 1}, dt), dl = Tensor::empty({1}, dt);
      rglru_gate_bwd(ctx, dx, dga, dgx, dl, from_ref(da, dt), from_ref(db, dt), from_ref(x, dt),
                     from_ref(ga, dt), from_ref(gx, dt), from_ref(l, dt));
      auto ge = ref::rglru_gate_bwd<Oracle>(da, db, x, ga, gx, l, no_round);
      auto gn = ref::rglru_gate_bwd<float>(da, db, x, ga, gx, l, rounding_for(dt));
      snprintf(buf, 100, "rglru dx lambda=%g", lam);
      cmp(buf, dx, ge.dx, &gn.dx);
      snprintf(buf, 100, "rglru dgate_a lambda=%g", lam);
      cmp(buf, dga, ge.dgate_a, &gn.dgate_a);
      snprintf(buf, 100, "rglru dgate_x lambda=%g", lam);
      cmp(buf, dgx, ge.dgate_x, &gn.dgate_x);
      snprintf(buf, 100, "rglru dlambda lambda=%g", lam);
      cmp(buf, dl, ge.dlambda, &gn.dlambda);
      Ref rga = to_ref(dga);
      for (int64_t i = 0; i < n; ++i) {
        double rel = std::abs(rga[i] - ge.dgate_a[i]) / std::max(std::abs(ge.dgate_a[i]), 1e-300);
        if (std::abs(ge.dgate_a[i]) > 1e-30 && rel > 1e-3 || !std::isfinite(rga[i]))
          printf("   dgate_a rel %.3g at gate_a=%g: got %.9g ref %.9g\n", rel, ga[i], rga[i],
                 ge.dgate_a[i]);
      }
    });
  printf("flags=%d\n", g_flags);
}
