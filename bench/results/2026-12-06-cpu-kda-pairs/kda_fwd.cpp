#include <chrono>
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
int main(int argc, char** argv) {
  const int reps = argc > 1 ? atoi(argv[1]) : 10;
  const bool kda = argc > 2 && argv[2][0] == 'k';
  const int64_t B = 1, T = 8192, H = 8, K = 128, V = 128;
  std::mt19937 g(1);
  GatedDeltaRuleInputs in;
  in.q = rnd({B, T, H, K}, g, -1, 1);
  in.k = rnd({B, T, H, K}, g, -1, 1);
  in.v = rnd({B, T, H, V}, g, -1, 1);
  in.g = kda ? rnd({B, T, H, K}, g, -0.1f, 0) : rnd({B, T, H}, g, -0.1f, 0);
  in.beta = rnd({B, T, H}, g, 0, 1);
  GatedDeltaRuleParams p;
  p.use_qk_l2norm = true;
  Tensor out = Tensor::empty({B, T, H, V}, DType::f32),
         fs = Tensor::empty({B, H, K, V}, DType::f32);
  Context ctx(Device::cpu(), 1);
  double best = 1e9;
  for (int r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    gated_delta_rule_fwd(ctx, out, fs, in, p);
    best = std::min(best,
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  printf("%s forward best %.1f ms\n", kda ? "KDA" : "GDN", best * 1e3);
}
