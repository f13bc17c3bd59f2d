// D = 32 tile kernels alone, one thread, one 128-query x 256-key tile (Q 16 KB, K panels 32 KB,
// V rows 32 KB, S 128 x 272): the library's 8 x 32 S blocks and 6 x 32 P·V blocks against
// 12-row variants. GFLOP/s of each kernel over the tile, best of many passes.
#include <immintrin.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#ifndef DD
#define DD 32
#endif
constexpr long D = DD, NQ = 128, NK = 256, LDS = NK + 16;
double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

template <int R, int NP>
__attribute__((noinline, target("avx512f"))) void abt(const float* const* a, const float* panels,
                                                      long Dd, float alpha, float* const* s) {
  __m512 c[R][NP];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int p = 0; p < NP; ++p) c[r][p] = _mm512_setzero_ps();
  for (long d = 0; d < Dd; ++d) {
    __m512 b[NP];
#pragma GCC unroll 4
    for (int p = 0; p < NP; ++p) b[p] = _mm512_loadu_ps(panels + p * 16 * Dd + d * 16);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m512 x = _mm512_set1_ps(a[r][d]);
#pragma GCC unroll 4
      for (int p = 0; p < NP; ++p) c[r][p] = _mm512_fmadd_ps(x, b[p], c[r][p]);
    }
  }
  const __m512 al = _mm512_set1_ps(alpha);
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int p = 0; p < NP; ++p) _mm512_storeu_ps(s[r] + 16 * p, _mm512_mul_ps(c[r][p], al));
}
template <int R, int NV>
__attribute__((noinline, target("avx512f"))) void pv(const float* const* p, const float* vp,
                                                     long ldv, long nk, float* const* c) {
  __m512 acc[R][NV];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_loadu_ps(c[r] + 16 * v);
  for (long j = 0; j < nk; ++j) {
    __m512 vv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) vv[v] = _mm512_loadu_ps(vp + j * ldv + 16 * v);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m512 x = _mm512_set1_ps(p[r][j]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(x, vv[v], acc[r][v]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(c[r] + 16 * v, acc[r][v]);
}
float* al(long n) {
  float* p = (float*)aligned_alloc(64, ((n * 4 + 63) / 64) * 64);
  for (long i = 0; i < n; ++i) p[i] = (rand() % 100) * 0.001f;
  return p;
}

template <int R, int NP>
double run_abt(const float* q, const float* panels, float* S) {
  const float* a[R];
  float* s[R];
  static float sink[64];
  double best = 1e9;
  for (int rep = 0; rep < 2000; ++rep) {
    double t = now();
    for (long j0 = 0; j0 < NK; j0 += 16 * NP)
      for (long r0 = 0; r0 < NQ; r0 += R) {
        for (int r = 0; r < R; ++r) {
          a[r] = r0 + r < NQ ? q + (r0 + r) * D : q;
          s[r] = r0 + r < NQ ? S + (r0 + r) * LDS + j0 : sink;
        }
        abt<R, NP>(a, panels + j0 * D, D, 0.5f, s);
      }
    best = std::min(best, now() - t);
  }
  return 2.0 * NQ * NK * D / best * 1e-9;
}
template <int R, int NV>
double run_pv(const float* P, const float* v, float* O) {
  const float* p[R];
  float* c[R];
  static float sink[64];
  double best = 1e9;
  for (int rep = 0; rep < 2000; ++rep) {
    double t = now();
    for (long r0 = 0; r0 < NQ; r0 += R) {
      for (int r = 0; r < R; ++r) {
        p[r] = r0 + r < NQ ? P + (r0 + r) * LDS : P;
        c[r] = r0 + r < NQ ? O + (r0 + r) * D : sink;
      }
      pv<R, NV>(p, v, D, NK, c);
    }
    best = std::min(best, now() - t);
  }
  return 2.0 * NQ * NK * D / best * 1e-9;
}
int main() {
  float* q = al(NQ * D);
  float* panels = al(NK * D);
  float* S = al(NQ * LDS);
  float* v = al(NK * D);
  float* O = al(NQ * D);
  for (int round = 0; round < 5; ++round) {
    if (D == 32)
      printf(
          "D=32 abt 8x32 %.1f  6x64 %.1f  4x64 %.1f  12x32 %.1f | pv 6x32 %.1f  8x32 %.1f  12x32 "
          "%.1f\n",
          run_abt<8, 2>(q, panels, S), run_abt<6, 4>(q, panels, S), run_abt<4, 4>(q, panels, S),
          run_abt<12, 2>(q, panels, S), run_pv<6, 2>(S, v, O), run_pv<8, 2>(S, v, O),
          run_pv<12, 2>(S, v, O));
    else
      printf("D=64 abt 8x32 %.1f  6x64 %.1f  4x64 %.1f  12x32 %.1f | pv 6x64 %.1f  4x64 %.1f\n",
             run_abt<8, 2>(q, panels, S), run_abt<6, 4>(q, panels, S), run_abt<4, 4>(q, panels, S),
             run_abt<12, 2>(q, panels, S), run_pv<6, 4>(S, v, O), run_pv<4, 4>(S, v, O));
  }
}
