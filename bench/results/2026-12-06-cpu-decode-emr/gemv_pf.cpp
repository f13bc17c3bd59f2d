// f32 GEMV streaming 372 MB (the 93M llama's matrices as one run of 1024-column rows, split in
// 57 GEMVs of its shapes), 2 threads, the library's kernel shape (4 rows a pass, 16 lanes) with
// and without the far prefetch (8 rows ahead, T1, two lines a 32-column step), alternating.
#include <immintrin.h>
#include <omp.h>
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <vector>
double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
template <bool PF>
__attribute__((target("avx512f"), noinline)) void rows4(const float* w, long o0, long Cin,
                                                        const float* x, float* y) {
  __m512 acc[4];
  for (int r = 0; r < 4; ++r) acc[r] = _mm512_setzero_ps();
  for (long k = 0; k < Cin; k += 32) {
    if (PF)
      for (int r = 0; r < 4; ++r) {
        const uintptr_t b = reinterpret_cast<uintptr_t>(w + (o0 + r + 8) * Cin + k);
        _mm_prefetch(reinterpret_cast<const char*>(b), _MM_HINT_T1);
        _mm_prefetch(reinterpret_cast<const char*>(b + 64), _MM_HINT_T1);
      }
    for (int h = 0; h < 2; ++h) {
      const __m512 xv = _mm512_loadu_ps(x + k + 16 * h);
      for (int r = 0; r < 4; ++r)
        acc[r] = _mm512_fmadd_ps(_mm512_loadu_ps(w + (o0 + r) * Cin + k + 16 * h), xv, acc[r]);
    }
  }
  for (int r = 0; r < 4; ++r) y[o0 + r] = _mm512_reduce_add_ps(acc[r]);
}
int main() {
  // rows of 1024: 8 x (1024 q + 512 k + 512 v + 1024 o) + 8 x (2816 gate + 2816 up) ; down: 1024
  // rows x 2816
  struct M {
    long rows, cin;
  };
  std::vector<M> mats;
  for (int l = 0; l < 8; ++l) {
    mats.push_back({1024, 1024});
    mats.push_back({512, 1024});
    mats.push_back({512, 1024});
    mats.push_back({1024, 1024});
  }
  for (int l = 0; l < 8; ++l) {
    mats.push_back({2816, 1024});
    mats.push_back({2816, 1024});
    mats.push_back({1024, 2816});
  }
  long total = 0;
  for (auto& m : mats) total += m.rows * m.cin;
  std::vector<float> w(total + 16 * 4096, 0.001f), x(4096, 1.f), y(4096);
  printf("%.1f MB\n", total * 4e-6);
  for (int round = 0; round < 10; ++round) {
    double t[2];
    for (int v = 0; v < 2; ++v) {
      double t0 = now();
      long off = 0;
      for (auto& m : mats) {
#pragma omp parallel num_threads(2)
        {
          const long groups = m.rows / 4, p = omp_get_thread_num();
          for (long g = groups * p / 2; g < groups * (p + 1) / 2; ++g)
            v ? rows4<true>(w.data() + off, g * 4, m.cin, x.data(), y.data())
              : rows4<false>(w.data() + off, g * 4, m.cin, x.data(), y.data());
        }
        off += m.rows * m.cin;
      }
      t[v] = now() - t0;
    }
    printf("no prefetch %.2f ms (%.1f GB/s)   far prefetch %.2f ms (%.1f GB/s)   ratio %.3f\n",
           t[0] * 1e3, total * 4e-9 / t[0], t[1] * 1e3, total * 4e-9 / t[1], t[1] / t[0]);
  }
}
