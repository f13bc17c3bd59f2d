// In-process A/B of gated_delta_rule_fwd (and _bwd): library A (dlopen'ed copy, its own symbols)
// against the linked library B, calls alternating A, B, A, B ..., best of each round.
#include <dlfcn.h>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include "longctx/ops/gated_delta_rule.h"
using namespace longctx;
Tensor rnd(const Shape& s, std::mt19937& g, float lo, float hi) {
  Tensor t = Tensor::empty(s, DType::f32);
  std::uniform_real_distribution<float> u(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) t.data_as<float>()[i] = u(g);
  return t;
}
using Fwd = void (*)(const Context&, const Tensor&, const Tensor&, const GatedDeltaRuleInputs&,
                     const GatedDeltaRuleParams&);
using Bwd = void (*)(const Context&, const GatedDeltaRuleGrads&, const Tensor&, const Tensor&,
                     const GatedDeltaRuleInputs&, const GatedDeltaRuleParams&);
int main(int argc, char** argv) {
  const char* libA = argv[1];
  const int rounds = atoi(argv[2]), reps = atoi(argv[3]);
  const bool kda = argv[4][0] == 'k', bwd = argc > 5 && argv[5][0] == 'b';
  void* h = dlopen(libA, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
  if (!h) {
    printf("dlopen: %s\n", dlerror());
    return 1;
  }
  Fwd fA = (Fwd)dlsym(h,
                      "_ZN7longctx20gated_delta_rule_fwdERKNS_7ContextERKNS_6TensorES5_RKNS_"
                      "20GatedDeltaRuleInputsERKNS_20GatedDeltaRuleParamsE");
  Bwd bA =
      (Bwd)dlsym(h,
                 "_ZN7longctx20gated_delta_rule_bwdERKNS_7ContextERKNS_19GatedDeltaRuleGradsERKNS_"
                 "6TensorES8_RKNS_20GatedDeltaRuleInputsERKNS_20GatedDeltaRuleParamsE");
  if (!fA || !bA) {
    printf("dlsym failed\n");
    return 1;
  }
  Fwd fB = &gated_delta_rule_fwd;
  Bwd bB = &gated_delta_rule_bwd;
  const int64_t B = 1, T = 8192, H = 8, K = 128, V = 128;
  std::mt19937 g(1);
  GatedDeltaRuleInputs in;
  in.q = rnd({B, T, H, K}, g, -1, 1);
  in.k = rnd({B, T, H, K}, g, -1, 1);
  in.v = rnd({B, T, H, V}, g, -1, 1);
  in.g = kda ? rnd({B, T, H, K}, g, -0.1f, 0) : rnd({B, T, H}, g, -0.1f, 0);
  in.beta = rnd({B, T, H}, g, 0, 1);
  GatedDeltaRuleParams p;
  Tensor out = Tensor::empty({B, T, H, V}, DType::f32),
         fs = Tensor::empty({B, H, K, V}, DType::f32);
  Tensor dout = rnd({B, T, H, V}, g, -1, 1);
  GatedDeltaRuleGrads gr;
  gr.dq = Tensor::empty(in.q.shape(), DType::f32);
  gr.dk = Tensor::empty(in.k.shape(), DType::f32);
  gr.dv = Tensor::empty(in.v.shape(), DType::f32);
  gr.dg = Tensor::empty(in.g.shape(), DType::f32);
  gr.dbeta = Tensor::empty(in.beta.shape(), DType::f32);
  Context ctx(Device::cpu(), 1);
  auto run = [&](bool a) {
    auto t0 = std::chrono::steady_clock::now();
    if (bwd)
      (a ? bA : bB)(ctx, gr, dout, Tensor{}, in, p);
    else
      (a ? fA : fB)(ctx, out, fs, in, p);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() * 1e3;
  };
  run(true);
  run(false);
  double sa = 0, sb = 0;
  int wins = 0;
  for (int r = 0; r < rounds; ++r) {
    double ba = 1e9, bb = 1e9;
    for (int i = 0; i < reps; ++i) {
      ba = std::min(ba, run(true));
      bb = std::min(bb, run(false));
    }
    printf("round %d: A %.1f ms  B %.1f ms  B/A %.3f\n", r, ba, bb, bb / ba);
    sa += ba;
    sb += bb;
    wins += bb < ba;
  }
  printf("%s %s: mean A %.1f B %.1f ms, B/A %.3f, B faster in %d of %d\n", kda ? "KDA" : "GDN",
         bwd ? "backward" : "forward", sa / rounds, sb / rounds, sb / sa, wins, rounds);
}
