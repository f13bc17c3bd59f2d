// ssd_fwd and ssd_bwd alone at the mamba2 preset's prefill shape (B = 16, T = 256, H = 8, P = 32,
// G = 1, N = 64, chunk 64, dt softplus), threads from argv: medians of 31 CPU ms.
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
  Context ctx(Device::cpu(), threads);
  const int64_t B = 16, T = 256, H = 8, P = 32, G = 1, N = 64;
  std::mt19937 rng(5);
  std::normal_distribution<float> nd;
  auto rnd = [&](Shape s, float sc, float off = 0) {
    Tensor t = Tensor::empty(s, DType::f32);
    for (int64_t i = 0; i < t.numel(); ++i) t.data_as<float>()[i] = off + sc * nd(rng);
    return t;
  };
  SSDInputs in;
  in.x = rnd({B, T, H, P}, 1);
  in.dt = rnd({B, T, H}, 0.5f, -1.f);
  in.A = rnd({H}, 0.3f, -1.f);
  in.B = rnd({B, T, G, N}, 0.3f);
  in.C = rnd({B, T, G, N}, 0.3f);
  in.D = rnd({H}, 1);
  in.dt_bias = rnd({H}, 0.1f);
  SSDParams params;
  params.dt_softplus = true;
  Tensor out = Tensor::empty({B, T, H, P}, DType::f32),
         fs = Tensor::empty({B, H, P, N}, DType::f32);
  Tensor dout = rnd({B, T, H, P}, 1);
  SSDGrads g;
  g.dx = Tensor::empty({B, T, H, P}, DType::f32);
  g.ddt = Tensor::empty({B, T, H}, DType::f32);
  g.dA = Tensor::empty({H}, DType::f32);
  g.dB = Tensor::empty({B, T, G, N}, DType::f32);
  g.dC = Tensor::empty({B, T, G, N}, DType::f32);
  g.dD = Tensor::empty({H}, DType::f32);
  g.ddt_bias = Tensor::empty({H}, DType::f32);
  auto time = [&](auto f) {
    std::vector<double> c;
    for (int i = 0; i < 31; ++i) {
      std::clock_t c0 = std::clock();
      f();
      c.push_back(1e3 * double(std::clock() - c0) / CLOCKS_PER_SEC);
    }
    std::sort(c.begin(), c.end());
    return c[15];
  };
  const double f = time([&] { ssd_fwd(ctx, out, fs, in, params); });
  const double b = time([&] { ssd_bwd(ctx, g, dout, Tensor(), in, params); });
  std::printf("threads %d: ssd_fwd %.3f ms CPU, ssd_bwd %.3f ms CPU\n", threads, f, b);
}
