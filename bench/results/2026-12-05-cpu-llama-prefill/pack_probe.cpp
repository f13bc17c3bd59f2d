// Probe (not part of the build): how much of small_k_gemm (the prefill's projections) is the
// weight's packing, which runs on the calling thread before the parallel region. For each of the
// llama preset's projection shapes at M = 4096: wall µs of SmallKWeight's construction alone and
// of the whole small_k_gemm call (2 threads), medians of 200.
//   g++ -O2 -std=c++17 -fopenmp -I . -I include pack_probe.cpp -Lbuild-cpu -llongctx
//   -Wl,-rpath,$PWD/build-cpu -o pack_probe && OMP_WAIT_POLICY=passive ./pack_probe
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "longctx/longctx.h"
#include "src/cpu/small_k_gemm.h"

using namespace longctx;

template <class F>
static double median_us(F&& f, int reps) {
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

int main() {
  Context ctx(Device::cpu(), 2);
  const int64_t M = 4096;
  const int64_t shapes[][2] = {{128, 128}, {64, 128}, {384, 128}, {128, 384}, {256, 128}};
  std::vector<float> x(M * 384, 0.5f), w(384 * 384, 0.25f), y(M * 384);
  for (const auto& s : shapes) {
    const int64_t N = s[0], K = s[1];
    const double pack =
        median_us([&] { cpu::SmallKWeight p(N, K, w.data(), false, nullptr); }, 200);
    const double all = median_us(
        [&] { cpu::small_k_gemm(ctx, M, N, K, x.data(), w.data(), nullptr, y.data()); }, 200);
    std::printf("N %4ld K %4ld: pack %7.1f us, small_k_gemm %7.1f us wall\n", long(N), long(K),
                pack, all);
  }
}
