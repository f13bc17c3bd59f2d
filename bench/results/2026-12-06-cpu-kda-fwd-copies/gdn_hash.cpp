// Bit hashes of gated_delta_rule forward and backward outputs over several cases (for A/B of
// library builds: same hash = same bits).  gdn_hash [f64]  (f32 by default)
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include "longctx/ops/gated_delta_rule.h"
using namespace longctx;
static DType DT = DType::f32;
Tensor rnd(const Shape& s, std::mt19937& g, float lo, float hi) {
  Tensor t = Tensor::empty(s, DT);
  std::uniform_real_distribution<float> u(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (DT == DType::f64)
      t.data_as<double>()[i] = u(g);
    else
      t.data_as<float>()[i] = u(g);
  }
  return t;
}
uint64_t hash(std::initializer_list<const Tensor*> ts) {
  uint64_t h = 1469598103934665603ull;
  for (const Tensor* t : ts) {
    const unsigned char* b = static_cast<const unsigned char*>(t->data());
    for (int64_t i = 0; i < t->numel() * int64_t(dtype_size(DT)); ++i)
      h = (h ^ b[i]) * 1099511628211ull;
  }
  return h;
}
int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "f64") DT = DType::f64;
  struct Case {
    int64_t B, T, H, HV, K, V;
    bool kda, l2, h0;
    int64_t chunk;
  };
  Case cases[] = {{1, 300, 2, 4, 128, 128, true, false, true, 64},
                  {2, 130, 2, 2, 64, 32, true, true, false, 64},
                  {1, 200, 2, 4, 128, 64, false, false, true, 64},
                  {1, 77, 1, 2, 24, 40, true, true, true, 32},
                  {1, 100, 2, 2, 32, 32, false, true, false, 16}};
  for (const Case& c : cases) {
    std::mt19937 g(7);
    GatedDeltaRuleInputs in;
    in.q = rnd({c.B, c.T, c.H, c.K}, g, -1, 1);
    in.k = rnd({c.B, c.T, c.H, c.K}, g, -1, 1);
    in.v = rnd({c.B, c.T, c.HV, c.V}, g, -1, 1);
    in.g = c.kda ? rnd({c.B, c.T, c.HV, c.K}, g, -0.2f, 0) : rnd({c.B, c.T, c.HV}, g, -0.2f, 0);
    in.beta = rnd({c.B, c.T, c.HV}, g, 0, 1);
    if (c.h0) in.initial_state = rnd({c.B, c.HV, c.K, c.V}, g, -1, 1);
    GatedDeltaRuleParams p;
    p.use_qk_l2norm = c.l2;
    p.chunk_size = c.chunk;
    Tensor out = Tensor::empty({c.B, c.T, c.HV, c.V}, DT);
    Tensor fs = Tensor::empty({c.B, c.HV, c.K, c.V}, DT);
    Context ctx(Device::cpu(), 2);
    gated_delta_rule_fwd(ctx, out, fs, in, p);
    Tensor dout = rnd({c.B, c.T, c.HV, c.V}, g, -1, 1), dfs = rnd({c.B, c.HV, c.K, c.V}, g, -1, 1);
    GatedDeltaRuleGrads gr;
    gr.dq = Tensor::empty(in.q.shape(), DT);
    gr.dk = Tensor::empty(in.k.shape(), DT);
    gr.dv = Tensor::empty(in.v.shape(), DT);
    gr.dg = Tensor::empty(in.g.shape(), DT);
    gr.dbeta = Tensor::empty(in.beta.shape(), DT);
    if (c.h0) gr.dinitial_state = Tensor::empty(in.initial_state.shape(), DT);
    gated_delta_rule_bwd(ctx, gr, dout, dfs, in, p);
    printf("fwd %016llx bwd %016llx\n", (unsigned long long)hash({&out, &fs}),
           (unsigned long long)(c.h0 ? hash({&gr.dq, &gr.dk, &gr.dv, &gr.dg, &gr.dbeta,
                                             &gr.dinitial_state})
                                     : hash({&gr.dq, &gr.dk, &gr.dv, &gr.dg, &gr.dbeta})));
  }
}
