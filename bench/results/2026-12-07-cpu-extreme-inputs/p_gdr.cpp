// gated_delta_rule (Gated DeltaNet / KDA) fwd/bwd with extreme gates, beta, K, chunks, zero q/k
// (f32, CPU).
#include <functional>
#include "longctx/ops/gated_delta_rule.h"
#include "probe.h"
#include "reference/gated_delta_rule.h"
using namespace P;
const DType dt32 = DType::f32;
struct Case {
  const char* name;
  int64_t B, T, H, HV, K, V;
  bool kda;
  bool l2norm;
  int64_t chunk;
  std::function<double(Rng&, int64_t t, int64_t c)> g;  // c: channel (KDA) or head
  double blo, bhi;
  double h0scale;
  double zero_qk_frac = 0;
  bool bwd = true;
  double scale = 0;
};
void run(const Case& c) {
  Context ctx;
  Rng rng(77);
  ref::GatedDeltaRuleRefs r;
  const double kr = c.l2norm ? 1.0 : std::sqrt(3.0 / double(c.K));
  r.q = rounded(random_ref({c.B, c.T, c.H, c.K}, rng), dt32);
  r.k = rounded(random_ref({c.B, c.T, c.H, c.K}, rng, -kr, kr), dt32);
  if (c.zero_qk_frac > 0)
    for (int64_t row = 0; row < c.B * c.T * c.H; ++row)
      if (rng.uniform(0, 1) < c.zero_qk_frac) {
        bool which = rng.uniform(0, 1) < 0.5;
        for (int64_t k = 0; k < c.K; ++k) (which ? r.q : r.k)[row * c.K + k] = 0;
      }
  r.v = rounded(random_ref({c.B, c.T, c.HV, c.V}, rng), dt32);
  r.beta = rounded(random_ref({c.B, c.T, c.HV}, rng, c.blo, c.bhi), dt32);
  r.g = Ref(c.kda ? Shape{c.B, c.T, c.HV, c.K} : Shape{c.B, c.T, c.HV});
  const int64_t per_t = c.kda ? c.HV * c.K : c.HV;
  for (int64_t i = 0; i < r.g.numel(); ++i) {
    int64_t t = (i / per_t) % c.T;
    int64_t ch = c.kda ? i % c.K : i % c.HV;
    r.g[i] = c.g(rng, t, ch);
  }
  r.g = rounded(r.g, dt32);
  if (c.h0scale > 0)
    r.h0 = rounded(random_ref({c.B, c.HV, c.K, c.V}, rng, -c.h0scale, c.h0scale), dt32);
  r.scale = c.scale != 0 ? c.scale : 1.0 / std::sqrt(double(c.K));
  r.l2norm = c.l2norm;
  GatedDeltaRuleInputs in{from_ref(r.q, dt32),
                          from_ref(r.k, dt32),
                          from_ref(r.v, dt32),
                          from_ref(r.g, dt32),
                          from_ref(r.beta, dt32),
                          r.h0.numel() ? from_ref(r.h0, dt32) : Tensor(),
                          Tensor()};
  GatedDeltaRuleParams params{c.scale, c.l2norm, c.chunk};
  Shape ss{c.B, c.HV, c.K, c.V};
  char buf[200];
  guard(c.name, [&] {
    Tensor out = Tensor::empty(r.v.shape, dt32), fin = Tensor::empty(ss, dt32);
    gated_delta_rule_fwd(ctx, out, fin, in, params);
    auto ex = ref::gated_delta_rule_fwd<Oracle>(r, no_round);
    auto nv = ref::gated_delta_rule_fwd<float>(r, rounding_for(dt32));
    snprintf(buf, 200, "%s out", c.name);
    cmp(buf, out, ex.out, &nv.out);
    snprintf(buf, 200, "%s final", c.name);
    cmp(buf, fin, ex.final_state, &nv.final_state);
    // decode step path: run token by token from h0 with gated_delta_rule_update, compare out
    if (c.T <= 300 && c.B == 1) {
      Tensor st = r.h0.numel() ? from_ref(r.h0, dt32) : Tensor::zeros(ss, dt32);
      Ref dec(r.v.shape);
      for (int64_t t = 0; t < c.T; ++t) {
        Ref qt = slice(r.q, 1, t, t + 1), kt = slice(r.k, 1, t, t + 1),
            vt = slice(r.v, 1, t, t + 1), gt = slice(r.g, 1, t, t + 1),
            bt = slice(r.beta, 1, t, t + 1);
        qt.shape = {c.B, c.H, c.K};
        kt.shape = qt.shape;
        vt.shape = {c.B, c.HV, c.V};
        bt.shape = {c.B, c.HV};
        gt.shape = c.kda ? Shape{c.B, c.HV, c.K} : Shape{c.B, c.HV};
        Tensor o = Tensor::empty({c.B, c.HV, c.V}, dt32);
        gated_delta_rule_update(ctx, o, st, from_ref(qt, dt32), from_ref(kt, dt32),
                                from_ref(vt, dt32), from_ref(gt, dt32), from_ref(bt, dt32), params);
        Ref ro = to_ref(o);
        ro.shape = {c.B, 1, c.HV, c.V};
        paste(dec, 1, t, ro);
      }
      snprintf(buf, 200, "%s decode out", c.name);
      cmp(buf, dec, ex.out, &nv.out);
      snprintf(buf, 200, "%s decode state", c.name);
      cmp(buf, st, ex.final_state, &nv.final_state);
    }
    if (!c.bwd) return;
    Ref dout = rounded(random_ref(r.v.shape, rng), dt32), dfin = rounded(random_ref(ss, rng), dt32);
    GatedDeltaRuleGrads g{
        Tensor::empty(r.q.shape, dt32),    Tensor::empty(r.k.shape, dt32),
        Tensor::empty(r.v.shape, dt32),    Tensor::empty(r.g.shape, dt32),
        Tensor::empty(r.beta.shape, dt32), r.h0.numel() ? Tensor::empty(ss, dt32) : Tensor()};
    gated_delta_rule_bwd(ctx, g, from_ref(dout, dt32), from_ref(dfin, dt32), in, params);
    auto e = ref::gated_delta_rule_bwd<Oracle>(dout, dfin, r, no_round);
    auto n = ref::gated_delta_rule_bwd<float>(dout, dfin, r, rounding_for(dt32));
    snprintf(buf, 200, "%s dq", c.name);
    cmp(buf, g.dq, e.dq, &n.dq);
    snprintf(buf, 200, "%s dk", c.name);
    cmp(buf, g.dk, e.dk, &n.dk);
    snprintf(buf, 200, "%s dv", c.name);
    cmp(buf, g.dv, e.dv, &n.dv);
    snprintf(buf, 200, "%s dg", c.name);
    cmp(buf, g.dg, e.dg, &n.dg);
    snprintf(buf, 200, "%s dbeta", c.name);
    cmp(buf, g.dbeta, e.dbeta, &n.dbeta);
    if (r.h0.numel()) {
      snprintf(buf, 200, "%s dh0", c.name);
      cmp(buf, g.dinitial_state, e.dh0, &n.dh0);
    }
  });
}
int main(int argc, char** argv) {
  int which = argc > 1 ? atoi(argv[1]) : -1;
  auto U = [](double lo, double hi) {
    return [=](Rng& r, int64_t, int64_t) { return r.uniform(lo, hi); };
  };
  auto mix = [](double a, double b) {
    return [=](Rng& r, int64_t, int64_t c) {
      return c % 2 ? a * r.uniform(0.5, 1) : b * r.uniform(0.5, 1);
    };
  };
  std::vector<Case> cases = {
      /*0*/ {"gdn typical K32 V16 chunk64", 1, 130, 2, 4, 32, 16, false, true, 64, U(-0.3, -0.01),
             0.05, 1, 1},
      /*1*/
      {"gdn g~-1e-6 T=4096 K64", 1, 4096, 1, 2, 64, 32, false, true, 64, U(-2e-6, -1e-7), 0.05, 1,
       1, 0, true},
      /*2*/
      {"gdn g=-50 (exp underflow)", 1, 200, 1, 2, 32, 16, false, true, 32, U(-60, -40), 0.05, 1, 1},
      /*3*/ {"gdn g=-1e4", 1, 200, 1, 2, 32, 16, false, true, 32, U(-1e4, -5e3), 0.05, 1, 1},
      /*4*/
      {"gdn g mix -1e-6 / -50 by head", 1, 200, 1, 2, 32, 16, false, true, 64, mix(-1e-6, -50),
       0.05, 1, 1},
      /*5*/
      {"gdn beta~0 (1e-7..1e-6)", 1, 200, 1, 2, 32, 16, false, true, 64, U(-0.3, -0.01), 1e-7, 1e-6,
       1},
      /*6*/ {"gdn beta=1 exactly", 1, 200, 1, 2, 32, 16, false, true, 64, U(-0.3, -0.01), 1, 1, 1},
      /*7*/
      {"gdn beta~2 (1.9..2)", 1, 200, 1, 2, 32, 16, false, true, 64, U(-0.3, -0.01), 1.9, 2.0, 1},
      /*8*/ {"gdn beta=2 exactly g=0", 1, 200, 1, 2, 32, 16, false, true, 64, U(0, 0), 2, 2, 1},
      /*9*/
      {"gdn K=1 beta 0..2 chunk64", 1, 100, 1, 2, 1, 8, false, true, 64, U(-0.3, -0.01), 0, 2, 1},
      /*10*/
      {"gdn K=256 V=32 chunk64", 1, 150, 1, 1, 256, 32, false, true, 64, U(-0.3, -0.01), 0.05, 1,
       1},
      /*11*/
      {"gdn zero q/k rows l2norm", 1, 150, 2, 2, 32, 16, false, true, 32, U(-0.3, -0.01), 0.05, 1,
       1, 0.2},
      /*12*/ {"gdn h0 1e20", 1, 100, 1, 2, 32, 16, false, true, 32, U(-0.3, -0.01), 0.05, 1, 1e20},
      /*13*/
      {"kda mix -1e-6 / -50 per channel chunk64", 1, 200, 1, 2, 32, 16, true, true, 64,
       mix(-1e-6, -50), 0.05, 1, 1},
      /*14*/
      {"kda mix -1e-6 / -50 chunk16", 1, 203, 1, 2, 32, 16, true, true, 16, mix(-1e-6, -50), 0.05,
       1, 1},
      /*15*/
      {"kda mix -1e-6 / -1e4 chunk32", 1, 203, 1, 2, 32, 16, true, true, 32, mix(-1e-6, -1e4), 0.05,
       1, 1},
      /*16*/
      {"kda g~-1e-6 T=4096 K64", 1, 4096, 1, 1, 64, 32, true, true, 64, U(-2e-6, -1e-7), 0.05, 1,
       1},
      /*17*/ {"kda K=1 chunk64", 1, 100, 1, 2, 1, 8, true, true, 64, U(-3, -0.01), 0, 2, 1},
      /*18*/ {"kda K=256 V=16", 1, 100, 1, 1, 256, 16, true, true, 64, mix(-1e-6, -50), 0.05, 1, 1},
      /*19*/
      {"kda beta~2 raw qk", 1, 150, 1, 2, 16, 8, true, false, 32, U(-0.3, -0.01), 1.9, 2.0, 1},
      /*20*/
      {"kda zero q/k rows l2norm", 1, 150, 2, 2, 32, 16, true, true, 32, mix(-1e-6, -50), 0.05, 1,
       1, 0.2},
      /*21*/
      {"kda h0 1e20 strong decay", 1, 100, 1, 2, 32, 16, true, true, 32, mix(-1e-6, -50), 0.05, 1,
       1e20},
      /*22*/
      {"gdn T=16384 g~-1e-6 K16 chunk32", 1, 16384, 1, 1, 16, 8, false, true, 32, U(-2e-6, -1e-7),
       0.05, 1, 1},
      /*23*/
      {"kda T=16384 mix K16", 1, 16384, 1, 1, 16, 8, true, true, 32, mix(-1e-6, -50), 0.05, 1, 1},
      /*24*/
      {"gdn g=0 beta 1e-3 long T=8192", 1, 8192, 1, 1, 16, 8, false, true, 32, U(0, 0), 1e-3, 1e-3,
       1},
      /*25*/
      {"gdn raw qk big scale 100", 1, 100, 1, 2, 16, 8, false, false, 16, U(-0.3, -0.01), 0.05, 1,
       1, 0, true, 100},
  };
  for (int i = 0; i < int(cases.size()); ++i)
    if (which < 0 || which == i) run(cases[i]);
  printf("flags=%d\n", g_flags);
}
