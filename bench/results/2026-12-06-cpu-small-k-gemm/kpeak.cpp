// Probe: tile_avx512<12>'s kernel alone, one thread, x and the panels hot (cycled): ./kpeak K ROWS
// PANELS. g++ -O3 -march=x86-64-v3 kpeak.cpp
#include <immintrin.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>
template <int R>
__attribute__((noinline, target("avx512f"))) void tile(const float* x, long K, const float* panel,
                                                       float* y, long ldy) {
  constexpr int NV = 2;
  __m512 c[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) c[r][v] = _mm512_setzero_ps();
  for (long k = 0; k < K; ++k) {
    __m512 wv[NV];
    for (int v = 0; v < NV; ++v) wv[v] = _mm512_load_ps(panel + k * 32 + 16 * v);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m512 xv = _mm512_set1_ps(x[r * K + k]);
      for (int v = 0; v < NV; ++v) c[r][v] = _mm512_fmadd_ps(xv, wv[v], c[r][v]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(y + r * ldy + 16 * v, c[r][v]);
}
int main(int argc, char** argv) {
  long K = argc > 1 ? atol(argv[1]) : 128;
  long rows = argc > 2 ? atol(argv[2]) : 12;   // rows of x in the block
  long panels = argc > 3 ? atol(argv[3]) : 1;  // panels cycled
  float* x = (float*)aligned_alloc(64, rows * K * 4);
  float* p = (float*)aligned_alloc(64, panels * K * 32 * 4);
  float* y = (float*)aligned_alloc(64, rows * 32 * panels * 4);
  for (long i = 0; i < rows * K; ++i) x[i] = 1e-3f;
  for (long i = 0; i < panels * K * 32; ++i) p[i] = 1e-3f;
  double best = 1e9;
  long iters = 20000000 / (K * rows * panels / 12) / 10;
  for (int rep = 0; rep < 5; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    for (long it = 0; it < iters; ++it)
      for (long pp = 0; pp < panels; ++pp)
        for (long m = 0; m < rows; m += 12)
          tile<12>(x + m * K, K, p + pp * K * 32, y + m * 32 * panels + pp * 32, 32 * panels);
    best = std::min(best,
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::printf("K %ld rows %ld panels %ld: %.1f GFLOP/s one thread\n", K, rows, panels,
              2.0 * rows * 32 * K * panels * iters / best * 1e-9);
}
