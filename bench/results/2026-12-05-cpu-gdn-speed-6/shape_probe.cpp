// Register blocks of the row kernel (R rows x 16 NZ columns of zmm accumulators, unmasked), each
// on the forward's X = [K̂; Q̂] S (rows to a multiple of R near 128, K = V = 128) and on the
// state update S += (ρ ⊙ K̂)ᵀ U (a by stride), cache-resident; alternated over rounds.
//   g++ -O2 -std=c++17 -march=x86-64-v3 shape_probe.cpp -o shape_probe
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <vector>

namespace {

double cpu_s() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

template <class F>
void timeit(const char* name, double fma, int reps, F f) {
  double best = 1e9;
  for (int b = 0; b < 7; ++b) {
    const double c0 = cpu_s();
    for (int r = 0; r < reps; ++r) f();
    best = std::min(best, (cpu_s() - c0) / reps);
  }
  std::printf("%-40s %8.2f us  %7.1f GFLOP/s\n", name, best * 1e6, 2 * fma / best * 1e-9);
}

template <int R, int NZ>
__attribute__((target("avx512f"))) void kern(const float* a, int64_t ars, int64_t acs,
                                             const float* b, int64_t ldb, int64_t nk, float* c,
                                             int64_t ldc) {
  __m512 s[R][NZ];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int z = 0; z < NZ; ++z) s[r][z] = _mm512_setzero_ps();
  for (int64_t j = 0; j < nk; ++j) {
    __m512 bz[NZ];
#pragma GCC unroll 8
    for (int z = 0; z < NZ; ++z) bz[z] = _mm512_loadu_ps(b + j * ldb + 16 * z);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m512 x = _mm512_set1_ps(a[r * ars + j * acs]);
#pragma GCC unroll 8
      for (int z = 0; z < NZ; ++z) s[r][z] = _mm512_fmadd_ps(x, bz[z], s[r][z]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int z = 0; z < NZ; ++z) _mm512_storeu_ps(c + r * ldc + 16 * z, s[r][z]);
}

template <int R, int NZ>
void run(const char* tag, const float* kq, const float* S, const float* kd, const float* U,
         float* X) {
  const int64_t K = 128, V = 128, C = 64, m = 128 / R * R, W = 16 * NZ, n = V / W * W;
  char name[64];
  std::snprintf(name, sizeof name, "X %s (%ld x %ld)", tag, long(m), long(n));
  timeit(name, double(m) * n * K, 2000, [&] {
    for (int64_t r = 0; r < m; r += R)
      for (int64_t n0 = 0; n0 < n; n0 += W)
        kern<R, NZ>(kq + r * K, K, 1, S + n0, V, K, X + r * V + n0, V);
  });
  std::snprintf(name, sizeof name, "S %s (%ld x %ld)", tag, long(m), long(n));
  timeit(name, double(m) * n * C, 2000, [&] {
    for (int64_t r = 0; r < m; r += R)
      for (int64_t n0 = 0; n0 < n; n0 += W)
        kern<R, NZ>(kd + r, 1, K, U + n0, V, C, X + r * V + n0, V);
  });
}

}  // namespace

int main() {
  const int64_t C = 64, K = 128, V = 128;
  std::vector<float> S(K * V), kq(2 * C * K), X(2 * C * V), U(C * V), kd(C * K);
  for (size_t i = 0; i < S.size(); ++i) S[i] = float(i % 7) * 0.01f;
  for (size_t i = 0; i < kq.size(); ++i) kq[i] = float(i % 5) * 0.01f;
  for (size_t i = 0; i < kd.size(); ++i) kd[i] = float(i % 3) * 0.01f;
  for (size_t i = 0; i < U.size(); ++i) U[i] = float(i % 11) * 0.01f;
  for (int round = 0; round < 2; ++round) {
    run<6, 4>(" 6x64", kq.data(), S.data(), kd.data(), U.data(), X.data());
    run<5, 4>(" 5x64", kq.data(), S.data(), kd.data(), U.data(), X.data());
    run<7, 4>(" 7x64", kq.data(), S.data(), kd.data(), U.data(), X.data());
    run<4, 6>(" 4x96", kq.data(), S.data(), kd.data(), U.data(), X.data());
    run<8, 3>(" 8x48", kq.data(), S.data(), kd.data(), U.data(), X.data());
    run<12, 2>("12x32", kq.data(), S.data(), kd.data(), U.data(), X.data());
    run<14, 2>("14x32", kq.data(), S.data(), kd.data(), U.data(), X.data());
    run<3, 8>(" 3x128", kq.data(), S.data(), kd.data(), U.data(), X.data());
  }
}
