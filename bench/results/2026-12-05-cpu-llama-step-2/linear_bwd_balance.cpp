// Probe (not part of the build): linear_bwd (dx + dweight, as the models call it) through the
// public API at the llama preset's projection shapes, M = 4096 rows, 2 threads, x and dout cold
// (64 MB written between calls, not timed): per call the median CPU time (process, all threads),
// the median and the minimum wall time in µs, and CPU / (2 wall) at the minimum, the two
// threads' balance (passive workers sleep while they wait, so the waiting costs wall, not CPU).
// Built once; run against two builds of liblongctx by LD_LIBRARY_PATH, so the same binary times
// main and the branch.
//   g++ -O2 -std=c++17 -fopenmp -I include linear_bwd_balance.cpp -Lbuild-cpu -llongctx -o probe
//   LD_LIBRARY_PATH=build-cpu OMP_WAIT_POLICY=passive ./probe 21 LABEL
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <vector>

#include "longctx/longctx.h"

using namespace longctx;

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 21;
  const char* label = argc > 2 ? argv[2] : "";
  std::vector<char> evict(64 << 20);
  const int64_t M = 4096;
  Context ctx(Device::cpu(), 2);
  // Cout x Cin: q/o, k/v, gate/up, down, the lm head.
  const int64_t shapes[][2] = {{128, 128}, {64, 128}, {384, 128}, {128, 384}, {256, 128}};
  double sum_cpu = 0, sum_wall = 0;
  for (const auto& s : shapes) {
    const int64_t Cout = s[0], Cin = s[1];
    const Tensor x = Tensor::empty({M, Cin}, DType::f32),
                 w = Tensor::empty({Cout, Cin}, DType::f32);
    const Tensor dy = Tensor::empty({M, Cout}, DType::f32);
    x.fill(0.5), w.fill(0.25), dy.fill(0.125);
    Tensor dx = Tensor::empty({M, Cin}, DType::f32), dw = Tensor::empty({Cout, Cin}, DType::f32);
    std::vector<double> cpu, wall;
    for (int r = 0; r <= reps; ++r) {
      std::memset(evict.data(), r, evict.size());
      const auto t0 = std::chrono::steady_clock::now();
      const std::clock_t c0 = std::clock();
      linear_bwd(ctx, dx, dw, Tensor(), dy, x, w);
      const double c = double(std::clock() - c0) / CLOCKS_PER_SEC;
      const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (r) cpu.push_back(c * 1e6), wall.push_back(t * 1e6);  // r = 0: warm-up
    }
    std::sort(cpu.begin(), cpu.end());
    std::sort(wall.begin(), wall.end());
    const double c = cpu[reps / 2], w_med = wall[reps / 2], w_min = wall[0];
    sum_cpu += c, sum_wall += w_min;
    std::printf("%s %4lldx%-4lld %7.0f us CPU %7.0f us wall (min %7.0f) balance %.2f\n", label,
                (long long)Cout, (long long)Cin, c, w_med, w_min, c / (2 * w_min));
  }
  std::printf("%s sum      %7.0f us CPU              (min %7.0f)\n", label, sum_cpu, sum_wall);
}
