// S-kernel variants on one block in L1, GFLOP per CPU second, one thread (see README):
// 8 x 32 as in the library, the same with each FMA broadcasting its own Q element from memory
// (inline asm, {1to16}), 4 x 64 (4 panel loads and 4 broadcasts per 16 FMAs), and 8 x 32 with its
// d loop unrolled 2 and 4 times (fewer scalar loop operations per FMA).
//   g++ -O2 -std=c++17 -mavx2 -mfma kernel_shapes_probe.cpp -o probe && ./probe
#include <immintrin.h>
#include <time.h>
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <vector>
#define ROWS8(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
#define ROWS4(X) X(0) X(1) X(2) X(3)
// embedded broadcast: each FMA reads its a[r][d] itself
__attribute__((target("avx512f"), noinline)) void abt_eb(const float* const* a, const float* panels,
                                                         int64_t D, float alpha, float* const* s) {
#define DECL(r)                                                        \
  __m512 c##r##0 = _mm512_setzero_ps(), c##r##1 = _mm512_setzero_ps(); \
  const float* a##r = a[r];
  ROWS8(DECL)
#undef DECL
  const float* second = panels + 16 * D;
  for (int64_t d = 0; d < D; ++d) {
    const __m512 b0 = _mm512_loadu_ps(panels + d * 16), b1 = _mm512_loadu_ps(second + d * 16);
#define STEP(r)                                                                                \
  asm("vfmadd231ps (%[p])%{1to16%}, %[b0], %[c0]\n\tvfmadd231ps (%[p])%{1to16%}, %[b1], %[c1]" \
      : [c0] "+v"(c##r##0), [c1] "+v"(c##r##1)                                                 \
      : [p] "r"(a##r + d), [b0] "v"(b0), [b1] "v"(b1));
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
// 4 rows x 64 keys: 4 panel loads + 4 broadcasts per 16 FMAs
__attribute__((target("avx512f"), noinline)) void abt_4x64(const float* const* a,
                                                           const float* panels, int64_t D,
                                                           float alpha, float* const* s) {
#define DECL(r)                                                        \
  __m512 c##r##0 = _mm512_setzero_ps(), c##r##1 = _mm512_setzero_ps(), \
         c##r##2 = _mm512_setzero_ps(), c##r##3 = _mm512_setzero_ps();
  ROWS4(DECL)
#undef DECL
  for (int64_t d = 0; d < D; ++d) {
    const __m512 b0 = _mm512_loadu_ps(panels + d * 16),
                 b1 = _mm512_loadu_ps(panels + 16 * D + d * 16);
    const __m512 b2 = _mm512_loadu_ps(panels + 32 * D + d * 16),
                 b3 = _mm512_loadu_ps(panels + 48 * D + d * 16);
#define STEP(r)                                \
  {                                            \
    const __m512 x = _mm512_set1_ps(a[r][d]);  \
    c##r##0 = _mm512_fmadd_ps(x, b0, c##r##0); \
    c##r##1 = _mm512_fmadd_ps(x, b1, c##r##1); \
    c##r##2 = _mm512_fmadd_ps(x, b2, c##r##2); \
    c##r##3 = _mm512_fmadd_ps(x, b3, c##r##3); \
  }
    ROWS4(STEP)
#undef STEP
  }
  const __m512 al = _mm512_set1_ps(alpha);
#define STORE(r)                                           \
  _mm512_storeu_ps(s[r], _mm512_mul_ps(c##r##0, al));      \
  _mm512_storeu_ps(s[r] + 16, _mm512_mul_ps(c##r##1, al)); \
  _mm512_storeu_ps(s[r] + 32, _mm512_mul_ps(c##r##2, al)); \
  _mm512_storeu_ps(s[r] + 48, _mm512_mul_ps(c##r##3, al));
  ROWS4(STORE)
#undef STORE
}
__attribute__((target("avx512f"), noinline)) void abt_8x32(const float* const* a,
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
__attribute__((target("avx512f"), noinline)) void abt_8x32_u2(const float* const* a,
                                                              const float* panels, int64_t D,
                                                              float alpha, float* const* s) {
#define DECL(r) __m512 c##r##0 = _mm512_setzero_ps(), c##r##1 = _mm512_setzero_ps();
  ROWS8(DECL)
#undef DECL
  const float* second = panels + 16 * D;
#pragma GCC unroll 2
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
__attribute__((target("avx512f"), noinline)) void abt_8x32_u4(const float* const* a,
                                                              const float* panels, int64_t D,
                                                              float alpha, float* const* s) {
#define DECL(r) __m512 c##r##0 = _mm512_setzero_ps(), c##r##1 = _mm512_setzero_ps();
  ROWS8(DECL)
#undef DECL
  const float* second = panels + 16 * D;
#pragma GCC unroll 4
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
double cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}
template <class F>
double best(double flops, F&& f) {
  double b = 1e30;
  for (int r = 0; r < 7; ++r) {
    double t0 = cpu_seconds();
    f();
    b = std::min(b, cpu_seconds() - t0);
  }
  return flops / b * 1e-9;
}
int main() {
  const int64_t D = 64, reps = 100000;
  std::vector<float> q(8 * D, 0.5f), panels(64 * D, 0.25f), S(8 * 272, 0.f);
  const float* a[8];
  float* s[8];
  for (int x = 0; x < 8; ++x) a[x] = q.data() + x * D, s[x] = S.data() + x * 272;
  for (int k = 0; k < 3; ++k) {
    double g1 = best(double(reps) * 8 * 32 * D * 2, [&] {
      for (int64_t i = 0; i < reps; ++i) abt_8x32(a, panels.data(), D, 0.1f, s);
    });
    double g2 = best(double(reps) * 8 * 32 * D * 2, [&] {
      for (int64_t i = 0; i < reps; ++i) abt_eb(a, panels.data(), D, 0.1f, s);
    });
    double g3 = best(double(reps) * 4 * 64 * D * 2, [&] {
      for (int64_t i = 0; i < reps; ++i) abt_4x64(a, panels.data(), D, 0.1f, s);
    });
    double g4 = best(double(reps) * 8 * 32 * D * 2, [&] {
      for (int64_t i = 0; i < reps; ++i) abt_8x32_u2(a, panels.data(), D, 0.1f, s);
    });
    double g5 = best(double(reps) * 8 * 32 * D * 2, [&] {
      for (int64_t i = 0; i < reps; ++i) abt_8x32_u4(a, panels.data(), D, 0.1f, s);
    });
    std::printf(
        "L1, GFLOP/cpu-s: 8x32 %.1f, 8x32 embedded broadcasts %.1f, 4x64 %.1f, 8x32 unroll2 %.1f, "
        "unroll4 %.1f\n",
        g1, g2, g3, g4, g5);
  }
}
