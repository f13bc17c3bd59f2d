#include <immintrin.h>
#include <omp.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <vector>
double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
constexpr long BYTES = 1L << 30;
__attribute__((target("avx2"))) float sum_avx2(const float* p, long n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  for (long i = 0; i < n; i += 32) {
    s0 = _mm256_add_ps(s0, _mm256_loadu_ps(p + i));
    s1 = _mm256_add_ps(s1, _mm256_loadu_ps(p + i + 8));
    s2 = _mm256_add_ps(s2, _mm256_loadu_ps(p + i + 16));
    s3 = _mm256_add_ps(s3, _mm256_loadu_ps(p + i + 24));
  }
  alignas(32) float l[8];
  _mm256_store_ps(l, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  return l[0] + l[7];
}
// S streams within the slice, each its own part, read round-robin 64 floats at a time
template <int S, int PF>
__attribute__((target("avx512f"))) float sum_streams(const float* p, long n) {
  __m512 s[S];
  for (int j = 0; j < S; ++j) s[j] = _mm512_setzero_ps();
  const long part = n / S / 64 * 64;
  for (long i = 0; i < part; i += 64) {
#pragma GCC unroll 8
    for (int j = 0; j < S; ++j) {
      const float* q = p + j * part + i;
      if (PF)
        _mm_prefetch((const char*)(q + PF), _MM_HINT_T0),
            _mm_prefetch((const char*)(q + PF + 16), _MM_HINT_T0),
            _mm_prefetch((const char*)(q + PF + 32), _MM_HINT_T0),
            _mm_prefetch((const char*)(q + PF + 48), _MM_HINT_T0);
      s[j] = _mm512_add_ps(
          s[j], _mm512_add_ps(_mm512_add_ps(_mm512_loadu_ps(q), _mm512_loadu_ps(q + 16)),
                              _mm512_add_ps(_mm512_loadu_ps(q + 32), _mm512_loadu_ps(q + 48))));
    }
  }
  __m512 t = s[0];
  for (int j = 1; j < S; ++j) t = _mm512_add_ps(t, s[j]);
  return _mm512_reduce_add_ps(t);
}
template <class F>
double run(int threads, F f) {
  static std::vector<float> buf(BYTES / 4, 1.0f);
  const long n = BYTES / 4;
  double best = 1e9;
  volatile float sink = 0;
  for (int r = 0; r < 6; ++r) {
    double t = now();
#pragma omp parallel num_threads(threads)
    {
      const long parts = omp_get_num_threads(), i = omp_get_thread_num();
      const long lo = n / 1024 * i / parts * 1024, hi = n / 1024 * (i + 1) / parts * 1024;
      float x = f(buf.data() + lo, hi - lo);
#pragma omp critical
      sink = sink + x;
    }
    if (r) best = std::min(best, now() - t);
  }
  return BYTES / best * 1e-9;
}
int main() {
  std::vector<char> a(BYTES / 2, 1), b(BYTES / 2, 0);
  for (int round = 0; round < 2; ++round) {
    for (int th = 1; th <= 2; ++th) {
      double best = 1e9;
      for (int r = 0; r < 4; ++r) {
        double t = now();
#pragma omp parallel num_threads(th)
        {
          long i = omp_get_thread_num(), nn = omp_get_num_threads();
          long lo = BYTES / 2 * i / nn, hi = BYTES / 2 * (i + 1) / nn;
          memcpy(b.data() + lo, a.data() + lo, hi - lo);
        }
        if (r) best = std::min(best, now() - t);
      }
      printf(
          "%dT copy %.1f (r+w) | avx2 sum %.1f | 1 stream %.1f | 2 streams %.1f | 4 streams %.1f | "
          "8 streams %.1f | 1 stream pf512 %.1f | 1 stream pf2048 %.1f | 4 str pf1024 %.1f GB/s\n",
          th, BYTES / best * 1e-9, run(th, sum_avx2), run(th, sum_streams<1, 0>),
          run(th, sum_streams<2, 0>), run(th, sum_streams<4, 0>), run(th, sum_streams<8, 0>),
          run(th, sum_streams<1, 512>), run(th, sum_streams<1, 2048>),
          run(th, sum_streams<4, 1024>));
    }
  }
}
