// The 6 x 64 row kernel's rate alone by where its operands lie and how its loop is written
// (C = 64, K = V = 128 shapes), to find what holds it at ~65% of the FMA peak.
//   g++ -O2 -std=c++17 -march=x86-64-v3 -I<repo> -I<repo>/include kern_probe.cpp \
//       -L<build> -llongctx -lopenblas -o kern_probe
// Measured with main's source (9608fdb), whose kernel always masked the last zmm; against this
// branch's source the kernel's fourth argument, kMasked = true, is that kernel.
#include <cstring>
#include <ctime>

#include "src/cpu/gated_delta_rule.cpp"

namespace {
using namespace longctx::cpu;

double cpu_s() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

template <class F>
double timeit(const char* name, double fma, int reps, F f) {
  double best = 1e9;
  for (int b = 0; b < 7; ++b) {
    const double c0 = cpu_s();
    for (int r = 0; r < reps; ++r) f();
    best = std::min(best, (cpu_s() - c0) / reps);
  }
  std::printf("%-56s %8.3f us  %7.1f GFLOP/s\n", name, best * 1e6, 2 * fma / best * 1e-9);
  return best;
}

// 6 x 64 block, a's elements at a[r ars + j acs], b rows at ldb; U: j unrolled by U;
// PF: prefetcht0 of b's row j + PF (0: none).
template <int U, int PF>
__attribute__((target("avx512f"))) void k664(const float* a, int64_t ars, int64_t acs,
                                             const float* b, int64_t ldb, int64_t nk, float* c,
                                             int64_t ldc) {
  __m512 s[6][4];
#pragma GCC unroll 8
  for (int r = 0; r < 6; ++r)
#pragma GCC unroll 4
    for (int z = 0; z < 4; ++z) s[r][z] = _mm512_setzero_ps();
#define STEP(J)                                                                   \
  do {                                                                            \
    const int64_t jj = (J);                                                       \
    if (PF)                                                                       \
      _Pragma("GCC unroll 4") for (int z = 0; z < 4; ++z)                         \
          _mm_prefetch((const char*)(b + (jj + PF) * ldb + 16 * z), _MM_HINT_T0); \
    __m512 bz[4];                                                                 \
    _Pragma("GCC unroll 4") for (int z = 0; z < 4; ++z) bz[z] =                   \
        _mm512_loadu_ps(b + jj * ldb + 16 * z);                                   \
    _Pragma("GCC unroll 8") for (int r = 0; r < 6; ++r) {                         \
      const __m512 x = _mm512_set1_ps(a[r * ars + jj * acs]);                     \
      _Pragma("GCC unroll 4") for (int z = 0; z < 4; ++z) s[r][z] =               \
          _mm512_fmadd_ps(x, bz[z], s[r][z]);                                     \
    }                                                                             \
  } while (0)
  int64_t j = 0;
  if constexpr (U == 4)
    for (; j + 4 <= nk; j += 4) {
      STEP(j);
      STEP(j + 1);
      STEP(j + 2);
      STEP(j + 3);
    }
  for (; j < nk; ++j) STEP(j);
#pragma GCC unroll 8
  for (int r = 0; r < 6; ++r)
#pragma GCC unroll 4
    for (int z = 0; z < 4; ++z) _mm512_storeu_ps(c + r * ldc + 16 * z, s[r][z]);
}

template <int U, int PF>
void mm(int64_t m, int64_t n, int64_t nk, const float* a, int64_t ars, int64_t acs, const float* b,
        int64_t ldb, float* c, int64_t ldc) {
  for (int64_t r = 0; r + 6 <= m; r += 6)
    for (int64_t n0 = 0; n0 < n; n0 += 64)
      k664<U, PF>(a + r * ars, ars, acs, b + n0, ldb, nk, c + r * ldc + n0, ldc);
}

}  // namespace

int main() {
  const int64_t C = 64, K = 128, V = 128;
  std::vector<float> S(K * V), kq(2 * C * K), X(2 * C * V), U(C * V), kd(C * K), S2(K * V),
      Sp(K * V), ap(6 * K);
  for (size_t i = 0; i < S.size(); ++i) S[i] = float(i % 7) * 0.01f;
  for (size_t i = 0; i < kq.size(); ++i) kq[i] = float(i % 5) * 0.01f;
  for (size_t i = 0; i < kd.size(); ++i) kd[i] = float(i % 3) * 0.01f;
  const double f126 = 126.0 * 128 * 128;  // 21 row blocks of 6 (126 rows)
  for (int round = 0; round < 4; ++round) {
    timeit("X (126 rows) library block<6,4> (masked last load)", f126, 3000, [&] {
      for (int64_t r = 0; r + 6 <= 126; r += 6)
        for (int64_t n0 = 0; n0 < V; n0 += 64)
          block_avx512_signed<6, 4, false, true>(kq.data() + r * K, K, 1, S.data() + n0, V, K,
                                                 false, 1.0f, X.data() + r * V + n0, V,
                                                 __mmask16(0xFFFF));
    });
    timeit("X (126 rows) 6x64 unmasked", f126, 3000,
           [&] { mm<1, 0>(126, V, K, kq.data(), K, 1, S.data(), V, X.data(), V); });
    timeit("X (126 rows) 6x64 unmasked, prefetch +8", f126, 3000,
           [&] { mm<1, 8>(126, V, K, kq.data(), K, 1, S.data(), V, X.data(), V); });
    timeit("X (126 rows) 6x64 unmasked, unroll 4", f126, 3000,
           [&] { mm<4, 0>(126, V, K, kq.data(), K, 1, S.data(), V, X.data(), V); });
  }
}
