#include <immintrin.h>
#include <omp.h>
#include <chrono>
#include <cstdio>
#define CH(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
__attribute__((target("avx512f"))) float run(long iters, float seed) {
#define D(i) __m512 a##i = _mm512_set1_ps(seed + i);
  CH(D)
  const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
  for (long it = 0; it < iters; ++it) {
#define S(i) a##i = _mm512_fmadd_ps(a##i, m, c);
    CH(S)
  }
  float s = 0;
#define R(i) s += _mm512_reduce_add_ps(a##i);
  CH(R)
  return s;
}
int main() {
  long iters = 50000000;
  for (int rep = 0; rep < 3; ++rep)
    for (int th = 1; th <= 2; ++th) {
      volatile float sink = 0;
      auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(th)
      {
        float r = run(iters, omp_get_thread_num());
#pragma omp critical
        sink = sink + r;
      }
      double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      printf("threads %d: %.1f GFLOP/s wall (%.1f per thread)\n", th,
             iters * 12 * 32.0 * th / dt * 1e-9, iters * 12 * 32.0 / dt * 1e-9);
    }
}
