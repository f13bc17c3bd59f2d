// The SSD forward's four GEMM shapes through the library's cblas wrapper, one thread.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>
#include "src/cpu/blas.h"
using namespace longctx::cpu;
int main() {
  const int64_t k = 64, N = 64, P = 32, W = 32;
  std::vector<float> A(64 * 1024), B(64 * 1024), C(64 * 1024);
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  for (auto* v : {&A, &B, &C})
    for (auto& x : *v) x = nd(rng) * 0.1f;
  struct S {
    const char* name;
    bool ta, tb;
    int64_t M, Nn, K, lda, ldb;
    float beta;
  };
  S shapes[] = {{"CB = C Bt (nt 64x64x64)", false, true, k, k, N, N, N, 0.f},
                {"Y = C stt (nt 64x32x64)", false, true, k, W, N, N, N, 0.f},
                {"Y += M X (nn 64x32x64)", false, false, k, P, k, k, 256, 1.f},
                {"st += Xwt B (tn 32x64x64)", true, false, W, N, k, W, N, 1.f}};
  for (auto& s : shapes) {
    std::vector<double> ts;
    for (int r = 0; r < 7; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < 20000; ++i)
        gemm(s.ta, s.tb, s.M, s.Nn, s.K, 1.f, A.data(), s.lda, B.data(), s.ldb, s.beta, C.data(),
             256);
      ts.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() /
                   20000);
    }
    std::sort(ts.begin(), ts.end());
    const double flops = 2.0 * s.M * s.Nn * s.K;
    std::printf("%-28s %.2f us  %.1f GFLOP/s\n", s.name, ts[3] * 1e6, flops / ts[3] / 1e9);
  }
}
