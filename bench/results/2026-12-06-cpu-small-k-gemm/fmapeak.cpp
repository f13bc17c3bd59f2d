// Probe: 24 independent zmm FMA chains, one thread: the FMA peak. g++ -O3 -mavx512f -mfma
// fmapeak.cpp
#include <immintrin.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
int main() {
  __m512 c[24];
  for (int i = 0; i < 24; ++i) c[i] = _mm512_set1_ps(i * 1e-3f);
  __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(1e-6f);
  double best = 1e9;
  long n = 20000000;
  for (int r = 0; r < 5; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < n; ++i) {
#pragma GCC unroll 24
      for (int j = 0; j < 24; ++j) c[j] = _mm512_fmadd_ps(c[j], a, b);
      asm volatile("" : "+v"(a));
    }
    best = std::min(best,
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  float s = 0;
  for (int i = 0; i < 24; ++i) s += _mm512_reduce_add_ps(c[i]);
  std::printf("%.1f GFLOP/s one thread (%g)\n", 24.0 * 32 * n / best * 1e-9, s);
}
