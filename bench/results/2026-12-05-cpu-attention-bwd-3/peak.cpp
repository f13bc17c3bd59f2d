#include <immintrin.h>
#include <chrono>
#include <cstdio>
__attribute__((target("avx512f"))) float run(long n) {
  __m512 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm512_set1_ps(i * 0.001f);
  const __m512 x = _mm512_set1_ps(0.9999f), y = _mm512_set1_ps(1e-6f);
  for (long k = 0; k < n; ++k) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) a[i] = _mm512_fmadd_ps(a[i], x, y);
  }
  __m512 s = a[0];
  for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, a[i]);
  return _mm512_reduce_add_ps(s);
}
int main() {
  long n = 200000000;
  auto t0 = std::chrono::steady_clock::now();
  float r = run(n);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  printf("%.1f GFLOP/s one thread (%g)\n", n * 12.0 * 32 / s * 1e-9, r);
}
