// Probe: base (old) vs working-tree (new) small_k_gemm whole calls, alternating, medians of 100
// each. Built as region_probe.cpp plus /tmp/skg_probe/new_small_k_gemm.cpp.
#include <omp.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>
#include "longctx/context.h"
#include "new_small_k_gemm.h"
#include "old_small_k_gemm.h"
using namespace longctx;
static double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
int main(int argc, char** argv) {
  Context ctx(Device::cpu(), 2);
  int gap_us = argc > 1 ? atoi(argv[1]) : 0;
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> U(-1, 1);
  for (auto [N, K] :
       std::vector<std::pair<int, int>>{{128, 128}, {64, 128}, {384, 128}, {128, 384}}) {
    const int M = 4096;
    std::vector<float> x(M * K), w(N * K), y(M * N);
    for (auto& v : x) v = U(rng);
    for (auto& v : w) v = U(rng);
    std::vector<double> t[2];
    for (int r = 0; r < 200; ++r) {
      int v = r & 1;
      if (gap_us) {
        double g = now();
        while (now() - g < gap_us * 1e-6) {
        }
      }
      double g0 = now();
      if (v == 0)
        cpu_old::small_k_gemm(ctx, M, N, K, x.data(), w.data(), nullptr, y.data());
      else
        cpu_new::small_k_gemm(ctx, M, N, K, x.data(), w.data(), nullptr, y.data());
      t[v].push_back(now() - g0);
    }
    auto med = [](std::vector<double> v) {
      std::sort(v.begin(), v.end());
      return v[v.size() / 2] * 1e6;
    };
    std::printf("N %d K %d gap %d: old %.1f us new %.1f us old/new %.3f\n", N, K, gap_us, med(t[0]),
                med(t[1]), med(t[0]) / med(t[1]));
  }
}
