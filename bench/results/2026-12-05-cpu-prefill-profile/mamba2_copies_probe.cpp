// Probe (not part of the build): the layout copies of one Mamba-2 layer's forward
// (src/model/mamba2_mixer.cpp) at the mamba2 preset's sizes, B = 4, T = 1024 (4096 tokens):
// Tensor::copy_from on the same views, one at a time, median of 21 calls (wall and process CPU
// time, microseconds). proj is (B, T, Di + K + H) = (4, 1024, 648) with Di = 256, K = 384, H = 8.
//   g++ -O2 -std=c++17 -fopenmp -I include mamba2_copies_probe.cpp -Lbuild-cpu -llongctx \
//     -Wl,-rpath,$PWD/build-cpu -o mamba2_copies_probe
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <functional>
#include <vector>

#include "longctx/longctx.h"

using namespace longctx;

static void time(const char* name, const std::function<void()>& f) {
  for (int i = 0; i < 3; ++i) f();
  std::vector<double> wall, cpu;
  for (int i = 0; i < 21; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::clock_t c0 = std::clock();
    f();
    wall.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    cpu.push_back(double(std::clock() - c0) / CLOCKS_PER_SEC);
  }
  std::sort(wall.begin(), wall.end());
  std::sort(cpu.begin(), cpu.end());
  std::printf("%-46s %9.1f us wall %9.1f us CPU\n", name, wall[10] * 1e6, cpu[10] * 1e6);
}

int main() {
  Context ctx(Device::cpu(), 2);
  const int64_t B = 4, T = 1024, Di = 256, K = 384, H = 8, GN = 64;
  Tensor proj = Tensor::zeros({B, T, Di + K + H}, DType::f32);
  Tensor conv_in = Tensor::empty({B, K, T}, DType::f32);
  Tensor conv_out = Tensor::zeros({B, K, T}, DType::f32);
  Tensor xbc = Tensor::empty({B, T, K}, DType::f32);
  Tensor x = Tensor::empty({B, T, Di}, DType::f32), Bm = Tensor::empty({B, T, GN}, DType::f32);
  Tensor Cm = Tensor::empty({B, T, GN}, DType::f32), dt = Tensor::empty({B, T, H}, DType::f32);
  Tensor z = Tensor::empty({B, T, Di}, DType::f32);
  time("conv_in <- proj[..., Di:Di+K]^T (B,K,T)",
       [&] { conv_in.copy_from(proj.narrow(2, Di, K).transpose(1, 2), &ctx); });
  time("xbc <- conv_out^T (B,T,K)", [&] { xbc.copy_from(conv_out.transpose(1, 2), &ctx); });
  time("x <- xbc[..., :Di]", [&] { x.copy_from(xbc.narrow(2, 0, Di), &ctx); });
  time("B <- xbc[..., Di:Di+GN]", [&] { Bm.copy_from(xbc.narrow(2, Di, GN), &ctx); });
  time("C <- xbc[..., Di+GN:]", [&] { Cm.copy_from(xbc.narrow(2, Di + GN, GN), &ctx); });
  time("dt <- proj[..., Di+K:]", [&] { dt.copy_from(proj.narrow(2, Di + K, H), &ctx); });
  time("z <- proj[..., :Di]", [&] { z.copy_from(proj.narrow(2, 0, Di), &ctx); });
}
