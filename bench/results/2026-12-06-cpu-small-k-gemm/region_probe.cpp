// Probe: where the base small_k_gemm's 2-thread wall goes: its region around pre-packed rows, each
// thread's rows time and start, an empty region, the whole call and the pack alone (medians of 60).
// Built like gemm_ab_probe (mk.sh's /tmp/skg_probe copies): g++ -O3 -march=x86-64-v3 -std=c++17
// -fopenmp -I. -Iinclude -I/tmp/skg_probe region_probe.cpp /tmp/skg_probe/old_small_k_gemm.cpp
// -Lbuild-cpu -llongctx
#include <omp.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>
#include "longctx/context.h"
#include "old_small_k_gemm.h"
using namespace longctx;
static double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
int main() {
  Context ctx(Device::cpu(), 2);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> U(-1, 1);
  for (auto [N, K] : std::vector<std::pair<int, int>>{{128, 128}, {384, 128}, {128, 384}}) {
    const int M = 4096;
    std::vector<float> x(M * K), w(N * K), y(M * N);
    for (auto& v : x) v = U(rng);
    for (auto& v : w) v = U(rng);
    cpu_old::SmallKWeight p(N, K, w.data(), false, nullptr);
    std::vector<double> gemm, pk, tot, in0, in1, st1, empty;
    for (int r = 0; r < 60; ++r) {
      double t_in[2][2];
      double t0 = now();
#pragma omp parallel num_threads(2)
      {
        int t = omp_get_thread_num();
        t_in[t][0] = now();
        p.rows(x.data(), M * t / 2, M * (t + 1) / 2, y.data());
        t_in[t][1] = now();
      }
      double t1 = now();
      tot.push_back(t1 - t0);
      in0.push_back(t_in[0][1] - t_in[0][0]);
      in1.push_back(t_in[1][1] - t_in[1][0]);
      st1.push_back(t_in[1][0] - t0);
      double e0 = now();
#pragma omp parallel num_threads(2)
      { asm volatile(""); }
      empty.push_back(now() - e0);
      double g0 = now();
      cpu_old::small_k_gemm(ctx, M, N, K, x.data(), w.data(), nullptr, y.data());
      gemm.push_back(now() - g0);
      double q0 = now();
      {
        cpu_old::SmallKWeight pp(N, K, w.data(), false, nullptr);
        asm volatile("" ::: "memory");
      }
      pk.push_back(now() - q0);
    }
    auto med = [](std::vector<double> v) {
      std::sort(v.begin(), v.end());
      return v[v.size() / 2] * 1e6;
    };
    std::printf(
        "N %d K %d: region %.1f us, thread0 rows %.1f, thread1 rows %.1f, thread1 starts +%.1f; "
        "empty region %.1f us; small_k_gemm %.1f, pack %.1f\n",
        N, K, med(tot), med(in0), med(in1), med(st1), med(empty), med(gemm), med(pk));
  }
}
