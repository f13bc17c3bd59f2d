// rmsnorm_fwd / rmsnorm_bwd at (rows, C), 2 threads: median CPU and wall ms of 201 calls.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <random>
#include <vector>
#include "longctx/longctx.h"
using namespace longctx;
int main(int argc, char** argv) {
  const int64_t rows = argc > 1 ? atoll(argv[1]) : 4096, C = argc > 2 ? atoll(argv[2]) : 128;
  Context ctx(Device::cpu(), 2);
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  auto rnd = [&](Shape s) {
    Tensor t = Tensor::empty(s, DType::f32);
    for (int64_t i = 0; i < t.numel(); ++i) t.data_as<float>()[i] = nd(rng);
    return t;
  };
  Tensor x = rnd({rows, C}), w = rnd({C}), dy = rnd({rows, C});
  Tensor y = Tensor::empty({rows, C}, DType::f32), r = Tensor::empty({rows}, DType::f32);
  Tensor dx = Tensor::empty({rows, C}, DType::f32), dw = Tensor::empty({C}, DType::f32);
  auto time = [&](auto f) {
    std::vector<double> c, wl;
    for (int i = 0; i < 201; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      std::clock_t c0 = std::clock();
      f();
      c.push_back(1e3 * double(std::clock() - c0) / CLOCKS_PER_SEC);
      wl.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(c.begin(), c.end());
    std::sort(wl.begin(), wl.end());
    return std::make_pair(c[100], wl[100]);
  };
  auto f = time([&] { rmsnorm_fwd(ctx, y, r, x, w); });
  auto b = time([&] { rmsnorm_bwd(ctx, dx, dw, dy, x, w, r); });
  std::printf("rows %ld C %ld: fwd %.3f ms CPU %.3f wall, bwd %.3f CPU %.3f wall\n", (long)rows,
              (long)C, f.first, f.second, b.first, b.second);
}
