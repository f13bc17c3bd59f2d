// monarch_linear fwd/bwd at extreme-but-valid scales, nblocks 1 .. n, odd shapes, bias on/off,
// mid given or not; f32 and f64. Plus monarch_project on scaled weights (f64 1e-150..1e150).
#include "longctx/ops/monarch_linear.h"
#include "probe.h"
#include "reference/monarch_linear.h"
using namespace P;
using namespace longctx::ref;

static Ref scaled(const Shape& s, Rng& rng, double lo_exp, double hi_exp, DType dt) {
  Ref r(s);
  for (double& v : r.v) {
    double e = rng.uniform(lo_exp, hi_exp);
    v = (rng.uniform() < 0 ? -1 : 1) * std::pow(10.0, e);
  }
  return rounded(r, dt);
}

static void run_case(Context& ctx, const char* name, DType dt, Shape xs, Shape w1s, Shape w2s,
                     bool bias, double xlo, double xhi, double w1e, double w2e, double dlo,
                     double dhi) {
  Rng rng(7);
  const int64_t n_out = w2s[0] * w2s[1], lr = w2s[0] * w2s[2];
  Shape os = xs;
  os.back() = n_out;
  Shape ms = xs;
  ms.back() = lr;
  Ref x = scaled(xs, rng, xlo, xhi, dt);
  Ref w1 = scaled(w1s, rng, w1e - 0.5, w1e + 0.5, dt),
      w2 = scaled(w2s, rng, w2e - 0.5, w2e + 0.5, dt);
  Ref b = bias ? scaled({n_out}, rng, w1e + w2e + (xlo + xhi) / 2 - 1,
                        w1e + w2e + (xlo + xhi) / 2 + 1, dt)
               : Ref();
  Ref dout = scaled(os, rng, dlo, dhi, dt);
  Tensor xt = from_ref(x, dt), w1t = from_ref(w1, dt), w2t = from_ref(w2, dt),
         bt = bias ? from_ref(b, dt) : Tensor();
  Tensor out = poisoned(os, dt, Device::cpu(), &ctx), mid = poisoned(ms, dt, Device::cpu(), &ctx);
  char buf[256];
  printf("-- %s %s x%s w1(%lld,%lld,%lld) w2(%lld,%lld,%lld) bias=%d\n", name, dtype_name(dt), "",
         (long long)w1s[0], (long long)w1s[1], (long long)w1s[2], (long long)w2s[0],
         (long long)w2s[1], (long long)w2s[2], bias);
  guard("fwd", [&] { monarch_linear_fwd(ctx, out, xt, w1t, w2t, bt, mid); });
  auto ex = monarch_linear_fwd<Oracle>(x, w1, w2, b, no_round);
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    auto nv = monarch_linear_fwd<S>(x, w1, w2, b, rounding_for(dt));
    snprintf(buf, sizeof buf, "%s out", name);
    cmp(buf, out, ex.out, &nv.out, dt);
    snprintf(buf, sizeof buf, "%s mid", name);
    cmp(buf, mid, ex.mid, &nv.mid, dt);
  });
  Tensor out2 = poisoned(os, dt, Device::cpu(), &ctx);
  guard("fwd nomid", [&] { monarch_linear_fwd(ctx, out2, xt, w1t, w2t, bt); });
  if (max_abs_diff(to_ref(out2), to_ref(out)) != 0) {
    printf("**BAD** out without mid differs\n");
    g_flags++;
  }
  Tensor dot = from_ref(dout, dt);
  auto grads = monarch_linear_bwd<Oracle>(dout, x, w1, w2, no_round);
  Ref ndx, ndw1, ndw2, ndb;
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    auto g = monarch_linear_bwd<S>(dout, x, w1, w2, rounding_for(dt));
    ndx = g.dx;
    ndw1 = g.dw1;
    ndw2 = g.dw2;
    ndb = g.dbias;
  });
  for (int withmid = 0; withmid < 2; ++withmid) {
    Tensor dx = poisoned(xs, dt, Device::cpu(), &ctx), dw1 = poisoned(w1s, dt, Device::cpu(), &ctx);
    Tensor dw2 = poisoned(w2s, dt, Device::cpu(), &ctx),
           db = poisoned({n_out}, dt, Device::cpu(), &ctx);
    guard("bwd", [&] {
      monarch_linear_bwd(ctx, dx, dw1, dw2, bias ? db : Tensor(), dot, xt, w1t, w2t,
                         withmid ? mid : Tensor());
    });
    snprintf(buf, sizeof buf, "%s dx mid=%d", name, withmid);
    cmp(buf, dx, grads.dx, &ndx, dt);
    snprintf(buf, sizeof buf, "%s dw1 mid=%d", name, withmid);
    cmp(buf, dw1, grads.dw1, &ndw1, dt);
    snprintf(buf, sizeof buf, "%s dw2 mid=%d", name, withmid);
    cmp(buf, dw2, grads.dw2, &ndw2, dt);
    if (bias) {
      snprintf(buf, sizeof buf, "%s dbias mid=%d", name, withmid);
      cmp(buf, db, grads.dbias, &ndb, dt);
    }
  }
  // Each gradient alone
  {
    Tensor dx = poisoned(xs, dt, Device::cpu(), &ctx);
    guard("bwd dx only", [&] { monarch_linear_bwd(ctx, dx, {}, {}, {}, dot, xt, w1t, w2t); });
    snprintf(buf, sizeof buf, "%s dx alone", name);
    cmp(buf, dx, grads.dx, &ndx, dt);
    Tensor dw1 = poisoned(w1s, dt, Device::cpu(), &ctx);
    guard("bwd dw1 only", [&] { monarch_linear_bwd(ctx, {}, dw1, {}, {}, dot, xt, w1t, w2t); });
    snprintf(buf, sizeof buf, "%s dw1 alone", name);
    cmp(buf, dw1, grads.dw1, &ndw1, dt);
    Tensor dw2 = poisoned(w2s, dt, Device::cpu(), &ctx);
    guard("bwd dw2 only", [&] { monarch_linear_bwd(ctx, {}, {}, dw2, {}, dot, xt, w1t, w2t); });
    snprintf(buf, sizeof buf, "%s dw2 alone", name);
    cmp(buf, dw2, grads.dw2, &ndw2, dt);
  }
}

int main(int argc, char** argv) {
  Context ctx(Device::cpu());
  for (DType dt : {DType::f32, DType::f64}) {
    auto sq = [&](int64_t n, int64_t b) { return monarch_shape(n, n, b); };
    // nblocks 1 and n (the largest), square 48
    for (int64_t b : {1, 2, 3, 4, 6, 8, 12, 16, 24, 48}) {
      auto s = sq(48, b);
      char nm[64];
      snprintf(nm, sizeof nm, "sq48_b%lld_plain", (long long)b);
      run_case(ctx, nm, dt, {3, 37, 48}, s.w1, s.w2, b % 2 == 0, -0.3, 0.3, 0, 0, -0.3, 0.3);
    }
    // extreme scales: w1 1e-20 w2 1e20; x large dynamic range
    for (int64_t b : {1, 4, 48}) {
      auto s = sq(48, b);
      char nm[64];
      snprintf(nm, sizeof nm, "w1e-20_w2e20_b%lld", (long long)b);
      run_case(ctx, nm, dt, {5, 48}, s.w1, s.w2, true, -1, 1, -20, 20, -1, 1);
      snprintf(nm, sizeof nm, "w1e20_w2e-20_b%lld", (long long)b);
      run_case(ctx, nm, dt, {5, 48}, s.w1, s.w2, true, -1, 1, 20, -20, -1, 1);
      snprintf(nm, sizeof nm, "xrange1e-15..1e15_b%lld", (long long)b);
      run_case(ctx, nm, dt, {33, 48}, s.w1, s.w2, false, -15, 15, 0, 0, -15, 15);
      snprintf(nm, sizeof nm, "tiny_all_b%lld", (long long)b);
      run_case(ctx, nm, dt, {9, 48}, s.w1, s.w2, true, -12, -10, -12, -12, -12, -10);
    }
    // rectangular / odd
    auto r1 = monarch_shape(21, 35, 7), r2 = monarch_shape(35, 21, 7), r3 = monarch_shape(5, 7, 1);
    run_case(ctx, "rect_21_35_b7", dt, {2, 3, 21}, r1.w1, r1.w2, true, -1, 1, 0, 0, -1, 1);
    run_case(ctx, "rect_35_21_b7", dt, {13, 35}, r2.w1, r2.w2, false, -1, 1, 0, 0, -1, 1);
    run_case(ctx, "rect_5_7_b1", dt, {1, 5}, r3.w1, r3.w2, true, -1, 1, 0, 0, -1, 1);
    run_case(ctx, "k3_l2_odd", dt, {3, 7, 15}, {3, 4, 5}, {2, 7, 6}, true, -1, 1, 0, 0, -1, 1);
    run_case(ctx, "k1_l12", dt, {301, 7}, {1, 12, 7}, {12, 3, 1}, true, -2, 2, 0, 0, -2, 2);
    run_case(ctx, "k12_l1", dt, {301, 12}, {12, 1, 1}, {1, 3, 12}, true, -2, 2, 0, 0, -2, 2);
    run_case(ctx, "many_rows_b16_n256", dt, {1000, 256}, sq(256, 16).w1, sq(256, 16).w2, true, -1,
             1, 0, 0, -1, 1);
    run_case(ctx, "many_rows_b1_n64", dt, {2049, 64}, sq(64, 1).w1, sq(64, 1).w2, true, -1, 1, 0, 0,
             -1, 1);
    run_case(ctx, "cancel_big_w1e18_x1e10", dt, {7, 32}, sq(32, 4).w1, sq(32, 4).w2, true, 8, 10,
             15, 10, -1, 1);
  }
  printf("flags=%d\n", g_flags);
}
