// linear_swiglu_fwd against linear_fwd x2 + swiglu_fwd at the llama MLP's shape.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <random>
#include <vector>
#include "longctx/longctx.h"
using namespace longctx;
int main(int argc, char** argv) {
  const int threads = argc > 1 ? atoi(argv[1]) : 1;
  const int64_t M = argc > 2 ? atoll(argv[2]) : 4096, K = 128, F = 384;
  Context ctx(Device::cpu(), threads);
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  auto rnd = [&](Shape s, float sc) {
    Tensor t = Tensor::empty(s, DType::f32);
    for (int64_t i = 0; i < t.numel(); ++i) t.data_as<float>()[i] = nd(rng) * sc;
    return t;
  };
  Tensor x = rnd({M, K}, 1), wg = rnd({F, K}, 0.1f), wu = rnd({F, K}, 0.1f);
  Tensor g = Tensor::empty({M, F}, DType::f32), u = Tensor::empty({M, F}, DType::f32),
         h = Tensor::empty({M, F}, DType::f32), h2 = Tensor::empty({M, F}, DType::f32);
  auto time = [&](auto f) {
    std::vector<double> c;
    for (int r = 0; r < 31; ++r) {
      std::clock_t c0 = std::clock();
      f();
      c.push_back(1e3 * double(std::clock() - c0) / CLOCKS_PER_SEC);
    }
    std::sort(c.begin(), c.end());
    return c[15];
  };
  for (int round = 0; round < 3; ++round) {
    double a = time([&] {
      linear_fwd(ctx, g, x, wg);
      linear_fwd(ctx, u, x, wu);
      swiglu_fwd(ctx, h, g, u);
    });
    double a1 = time([&] {
      linear_fwd(ctx, g, x, wg);
      linear_fwd(ctx, u, x, wu);
    });
    double b = time([&] { linear_swiglu_fwd(ctx, h2, Tensor(), Tensor(), x, wg, wu); });
    double c = time([&] { linear_swiglu_fwd(ctx, h2, g, u, x, wg, wu); });
    std::printf(
        "M=%ld threads %d: unfused %.3f ms CPU (GEMMs %.3f), fused %.3f, fused keeping gate/up "
        "%.3f; same: %d\n",
        (long)M, threads, a, a1, b, c,
        (int)std::equal(h.data_as<float>(), h.data_as<float>() + M * F, h2.data_as<float>()));
  }
}
