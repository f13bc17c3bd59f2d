// Probe: the w (N, K) pack by columns (base) vs by rows k (new), best of 300, one thread. g++ -O3
// -march=x86-64-v3 packtime2.cpp
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>
__attribute__((noinline)) void pack_j(const float* w, long N, long K, float* wp) {
  const long NR = 32, panels = (N + NR - 1) / NR;
  for (long p = 0; p < panels; ++p) {
    float* panel = wp + p * NR * K;
    long n0 = p * NR, cols = std::min(NR, N - n0);
    if (cols < NR) std::fill(panel, panel + NR * K, 0.f);
    for (long j = 0; j < cols; ++j) {
      const float* wr = w + (n0 + j) * K;
      for (long k = 0; k < K; ++k) panel[k * NR + j] = wr[k];
    }
  }
}
__attribute__((noinline)) void pack_k(const float* w, long N, long K, float* wp) {
  const long NR = 32, panels = (N + NR - 1) / NR;
  for (long p = 0; p < panels; ++p) {
    float* panel = wp + p * NR * K;
    long n0 = p * NR, cols = std::min(NR, N - n0);
    const float* wr = w + n0 * K;
    for (long k = 0; k < K; ++k) {
      float* out = panel + k * NR;
      for (long j = 0; j < cols; ++j) out[j] = wr[j * K + k];
      for (long j = cols; j < NR; ++j) out[j] = 0.f;
    }
  }
}
int main() {
  for (auto [N, K] :
       std::vector<std::pair<long, long>>{{128, 128}, {384, 128}, {128, 384}, {131, 127}}) {
    std::vector<float> w(N * K);
    for (long i = 0; i < N * K; ++i) w[i] = i;
    float* a = (float*)aligned_alloc(64, ((N + 31) / 32 * 32) * K * 4 + 64);
    float* b = (float*)aligned_alloc(64, ((N + 31) / 32 * 32) * K * 4 + 64);
    double bj = 1e9, bk = 1e9;
    for (int r = 0; r < 300; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      pack_j(w.data(), N, K, a);
      auto t1 = std::chrono::steady_clock::now();
      pack_k(w.data(), N, K, b);
      auto t2 = std::chrono::steady_clock::now();
      bj = std::min(bj, std::chrono::duration<double>(t1 - t0).count());
      bk = std::min(bk, std::chrono::duration<double>(t2 - t1).count());
    }
    std::printf("N %ld K %ld: j-inner-scatter %.1f us, k-outer %.1f us, same %d\n", N, K, bj * 1e6,
                bk * 1e6, (int)std::equal(a, a + (N + 31) / 32 * 32 * K, b));
  }
}
