// The forward's state products alone (C = 64, K = V = 128), cache-resident, in variants of
// mul_add's loop order and register block: which one runs the row kernels nearest the FMA peak.
// Includes the op's source to reach its internal kernels (block_avx512_signed).
//   g++ -O2 -std=c++17 -march=x86-64-v3 -I<repo> -I<repo>/include loop_probe.cpp \
//       -L<build> -llongctx -o loop_probe
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
  std::printf("%-52s %8.2f us  %7.1f GFLOP/s\n", name, best * 1e6, 2 * fma / best * 1e-9);
  return best;
}

// R rows (runtime, up to 14) of one NZ-wide panel.
template <int NZ, int R = 14>
void rows_dyn(int rows, const float* a, int64_t ars, int64_t acs, const float* b, int64_t ldb,
              int64_t nk, bool acc, float* c, int64_t ldc) {
  if constexpr (R >= 1) {
    if (rows == R)
      block_avx512_signed<R, NZ, false, true>(a, ars, acs, b, ldb, nk, acc, 1.0f, c, ldc,
                                              __mmask16(0xFFFF));
    else
      rows_dyn<NZ, R - 1>(rows, a, ars, acs, b, ldb, nk, acc, c, ldc);
  }
}

// c (m x n, n % (16 NZ) == 0) (+)= a b with blocks of RB rows x 16 NZ columns; cols_outer: the
// column panel loop outside the row-block loop (a panel of b stays in L1 across the row blocks).
template <int RB, int NZ>
void mul_var(bool cols_outer, int64_t m, int64_t n, int64_t nk, const float* a, int64_t ars,
             int64_t acs, const float* b, int64_t ldb, bool acc, float* c, int64_t ldc) {
  const int64_t W = 16 * NZ;
  if (cols_outer) {
    for (int64_t n0 = 0; n0 < n; n0 += W)
      for (int64_t r = 0; r < m; r += RB)
        rows_dyn<NZ>(int(std::min<int64_t>(RB, m - r)), a + r * ars, ars, acs, b + n0, ldb, nk, acc,
                     c + r * ldc + n0, ldc);
  } else {
    for (int64_t r = 0; r < m; r += RB)
      for (int64_t n0 = 0; n0 < n; n0 += W)
        rows_dyn<NZ>(int(std::min<int64_t>(RB, m - r)), a + r * ars, ars, acs, b + n0, ldb, nk, acc,
                     c + r * ldc + n0, ldc);
  }
}

__attribute__((target("avx512f"))) void peak(int64_t n, float* out) {
  __m512 s[24];
  for (int i = 0; i < 24; ++i) s[i] = _mm512_set1_ps(float(i));
  const __m512 x = _mm512_set1_ps(0.999f), y = _mm512_set1_ps(0.001f);
  for (int64_t j = 0; j < n; ++j)
#pragma GCC unroll 24
    for (int i = 0; i < 24; ++i) s[i] = _mm512_fmadd_ps(x, s[i], y);
  __m512 t = s[0];
  for (int i = 1; i < 24; ++i) t = _mm512_add_ps(t, s[i]);
  _mm512_storeu_ps(out, t);
}

}  // namespace

int main() {
  const int64_t C = 64, K = 128, V = 128;
  std::vector<float> S(K * V), kq(2 * C * K), X(2 * C * V), X2(2 * C * V), U(C * V), kd(C * K),
      S2(K * V), pk(16);
  for (size_t i = 0; i < S.size(); ++i) S[i] = float(i % 7) * 0.01f;
  for (size_t i = 0; i < kq.size(); ++i) kq[i] = float(i % 5) * 0.01f;
  for (size_t i = 0; i < kd.size(); ++i) kd[i] = float(i % 3) * 0.01f;
  for (size_t i = 0; i < U.size(); ++i) U[i] = float(i % 11) * 0.01f;
  const double fx = 2.0 * C * K * V, fs = 1.0 * C * K * V;
  timeit("peak: 24 zmm FMA chains, registers only", 24.0 * 16 * 200000, 20,
         [&] { peak(200000, pk.data()); });
  timeit("L1: 6x64 block, b 32 x 64 (8 KB)", 6.0 * 64 * 32, 200000, [&] {
    block_avx512_signed<6, 4, false, true>(kq.data(), K, 1, S.data(), V, 32, false, 1.0f, X.data(),
                                           V, __mmask16(0xFFFF));
  });
  timeit("X = [K;Q] S  library mul_add", fx, 2000,
         [&] { mul_add(2 * C, V, K, false, kq.data(), K, 1, S.data(), V, false, X.data(), V); });
  timeit("S += kd^T U  library mul_add", fs, 2000,
         [&] { mul_add(K, V, C, false, kd.data(), 1, K, U.data(), V, true, S2.data(), V); });
  for (int co = 0; co < 2; ++co) {
    const char* o = co ? "cols outer" : "rows outer";
    char name[96];
#define VAR(RB, NZ)                                                                      \
  std::snprintf(name, sizeof name, "X  %2dx%-3d %s", RB, 16 * NZ, o);                    \
  timeit(name, fx, 2000, [&] {                                                           \
    mul_var<RB, NZ>(co, 2 * C, V, K, kq.data(), K, 1, S.data(), V, false, X2.data(), V); \
  });                                                                                    \
  std::snprintf(name, sizeof name, "S  %2dx%-3d %s", RB, 16 * NZ, o);                    \
  timeit(name, fs, 2000,                                                                 \
         [&] { mul_var<RB, NZ>(co, K, V, C, kd.data(), 1, K, U.data(), V, true, S2.data(), V); });
    VAR(6, 4)
    VAR(4, 4)
    VAR(8, 3)
    VAR(12, 2)
    VAR(14, 2)
    VAR(8, 2)
  }
  mul_add(2 * C, V, K, false, kq.data(), K, 1, S.data(), V, false, X.data(), V);
  mul_var<6, 4>(true, 2 * C, V, K, kq.data(), K, 1, S.data(), V, false, X2.data(), V);
  std::printf("6x64 cols outer bitwise equal to mul_add: %s\n",
              std::memcmp(X.data(), X2.data(), X.size() * 4) == 0 ? "yes" : "NO");
}
