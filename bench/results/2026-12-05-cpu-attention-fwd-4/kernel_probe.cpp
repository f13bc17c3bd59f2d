// The forward's two AVX-512 tile kernels alone (copies of abt_block8_avx512<2> and
// pv_block6_avx512<4> from src/cpu/attention.cpp at 9608fdb), GFLOP per CPU second against an
// FMA loop's (12 independent chains, as bench_attention's peak), one thread:
//   abt: (L1) one 8 x 32 block again and again on the same 2 KB of rows and 8 KB of panels;
//        (tile) a 128 x 256 tile as TileMatmul::abt runs it, S rows 272 floats apart.
//   pv:  (L1) one 6 x 64 block over 64 keys (16 KB of V) again and again;
//        (tile) a 128-row tile against 256 keys (64 KB of V), 22 blocks of 6 rows.
//   g++ -O2 -std=c++17 -mavx2 -mfma kernel_probe.cpp -o kernel_probe && ./kernel_probe
#include <immintrin.h>
#include <time.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <vector>

namespace {

#define ROWS6(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define ROWS8(X) ROWS6(X) X(6) X(7)

__attribute__((target("avx512f"), noinline)) void abt_block8(const float* const* a,
                                                             const float* panels, int64_t D,
                                                             float alpha, float* const* s) {
#define DECL(r) __m512 c##r##0 = _mm512_setzero_ps(), c##r##1 = _mm512_setzero_ps();
  ROWS8(DECL)
#undef DECL
  const float* second = panels + 16 * D;
  for (int64_t d = 0; d < D; ++d) {
    const __m512 b0 = _mm512_loadu_ps(panels + d * 16), b1 = _mm512_loadu_ps(second + d * 16);
#define STEP(r)                                \
  {                                            \
    const __m512 x = _mm512_set1_ps(a[r][d]);  \
    c##r##0 = _mm512_fmadd_ps(x, b0, c##r##0); \
    c##r##1 = _mm512_fmadd_ps(x, b1, c##r##1); \
  }
    ROWS8(STEP)
#undef STEP
  }
  const __m512 al = _mm512_set1_ps(alpha);
#define STORE(r)                                      \
  _mm512_storeu_ps(s[r], _mm512_mul_ps(c##r##0, al)); \
  _mm512_storeu_ps(s[r] + 16, _mm512_mul_ps(c##r##1, al));
  ROWS8(STORE)
#undef STORE
}

__attribute__((target("avx512f"), noinline)) void pv_block6(const float* const* p, const float* vp,
                                                            int64_t ldv, int64_t nk,
                                                            float* const* c) {
#define DECL(r)                                                                 \
  __m512 c##r##0 = _mm512_loadu_ps(c[r]), c##r##1 = _mm512_loadu_ps(c[r] + 16); \
  __m512 c##r##2 = _mm512_loadu_ps(c[r] + 32), c##r##3 = _mm512_loadu_ps(c[r] + 48);
  ROWS6(DECL)
#undef DECL
  for (int64_t j = 0; j < nk; ++j) {
    const float* vj = vp + j * ldv;
    const __m512 v0 = _mm512_loadu_ps(vj), v1 = _mm512_loadu_ps(vj + 16);
    const __m512 v2 = _mm512_loadu_ps(vj + 32), v3 = _mm512_loadu_ps(vj + 48);
#define STEP(r)                                \
  {                                            \
    const __m512 x = _mm512_set1_ps(p[r][j]);  \
    c##r##0 = _mm512_fmadd_ps(x, v0, c##r##0); \
    c##r##1 = _mm512_fmadd_ps(x, v1, c##r##1); \
    c##r##2 = _mm512_fmadd_ps(x, v2, c##r##2); \
    c##r##3 = _mm512_fmadd_ps(x, v3, c##r##3); \
  }
    ROWS6(STEP)
#undef STEP
  }
#define STORE(r)                        \
  _mm512_storeu_ps(c[r], c##r##0);      \
  _mm512_storeu_ps(c[r] + 16, c##r##1); \
  _mm512_storeu_ps(c[r] + 32, c##r##2); \
  _mm512_storeu_ps(c[r] + 48, c##r##3);
  ROWS6(STORE)
#undef STORE
}

#define CHAINS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
__attribute__((target("avx512f"), noinline)) float fma_chains(int64_t iters) {
#define DECL(i) __m512 a##i = _mm512_set1_ps(float(i));
  CHAINS(DECL)
#undef DECL
  const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it) {
#define STEP(i) a##i = _mm512_fmadd_ps(a##i, m, c);
    CHAINS(STEP)
#undef STEP
  }
  __m512 s = _mm512_setzero_ps();
#define SUM(i) s = _mm512_add_ps(s, a##i);
  CHAINS(SUM)
#undef SUM
  return _mm512_reduce_add_ps(s);
}

double cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

template <class F>
double best_gflops(double flops, F&& f) {
  double best = 1e30;
  for (int r = 0; r < 7; ++r) {
    const double t0 = cpu_seconds();
    f();
    best = std::min(best, cpu_seconds() - t0);
  }
  return flops / best * 1e-9;
}

}  // namespace

int main() {
  constexpr int64_t D = 64, n = 128, nk = 256, ldS = nk + 16, reps = 400;
  std::vector<float> q(n * D, 0.5f), panels(nk * D, 0.25f), S(n * ldS, 0.f), v(nk * D, 0.5f),
      o(n * D + 64, 0.f), P(n * ldS, 0.01f);
  volatile float sink = 0;
  const int64_t iters = 2000000;
  const double peak = best_gflops(double(iters) * 12 * 16 * 2, [&] { sink = fma_chains(iters); });

  const double abt_l1 = best_gflops(double(reps) * 256 * 8 * 32 * D * 2, [&] {
    const float* a[8];
    float* s[8];
    for (int x = 0; x < 8; ++x) a[x] = q.data() + x * D, s[x] = S.data() + x * ldS;
    for (int64_t it = 0; it < reps * 256; ++it) abt_block8(a, panels.data(), D, 0.125f, s);
  });
  const double abt_tile = best_gflops(double(reps) * 16 * n * nk * D * 2, [&] {
    for (int64_t it = 0; it < reps * 16; ++it)
      for (int64_t j0 = 0; j0 < nk; j0 += 32)
        for (int64_t r = 0; r < n; r += 8) {
          const float* a[8];
          float* s[8];
          for (int x = 0; x < 8; ++x)
            a[x] = q.data() + (r + x) * D, s[x] = S.data() + (r + x) * ldS + j0;
          abt_block8(a, panels.data() + j0 * D, D, 0.125f, s);
        }
  });
  const double pv_l1 = best_gflops(double(reps) * 1024 * 6 * 64 * D * 2, [&] {
    const float* p[6];
    float* c[6];
    for (int x = 0; x < 6; ++x) p[x] = P.data() + x * ldS, c[x] = o.data() + x * D;
    for (int64_t it = 0; it < reps * 1024; ++it) pv_block6(p, v.data(), D, 64, c);
  });
  const double pv_tile = best_gflops(double(reps) * 16 * 132 * nk * D * 2, [&] {
    for (int64_t it = 0; it < reps * 16; ++it)
      for (int64_t r = 0; r < n; r += 6) {
        const float* p[6];
        float* c[6];
        for (int x = 0; x < 6; ++x) {
          const int64_t row = std::min(r + x, n - 1);
          p[x] = P.data() + row * ldS, c[x] = o.data() + row * D;
        }
        pv_block6(p, v.data(), D, nk, c);
      }
  });
  std::printf(
      "FMA peak %.1f GFLOP/cpu-s; abt L1 %.1f (%.0f%%), abt tile %.1f (%.0f%%); pv L1 %.1f "
      "(%.0f%%), pv tile %.1f (%.0f%%, 132 rows counted)\n",
      peak, abt_l1, 100 * abt_l1 / peak, abt_tile, 100 * abt_tile / peak, pv_l1, 100 * pv_l1 / peak,
      pv_tile, 100 * pv_tile / peak);
}
