// dW (N, K) = dyᵀ (N, M) · x (M, K): OpenBLAS sgemm (trans_a) against a register-blocked kernel.
#include <cblas.h>
#include <immintrin.h>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

template <int R>
__attribute__((noinline, target("avx512f"))) void tile_tn(const float* a, long lda, const float* b,
                                                          long ldb, long rows, float* c, long ldc,
                                                          long cols, bool accumulate) {
  const __mmask16 k0 = __mmask16((1u << std::clamp<long>(cols, 0, 16)) - 1);
  const __mmask16 k1 = __mmask16((1u << std::clamp<long>(cols - 16, 0, 16)) - 1);
  __m512 acc[R][2];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    acc[r][0] = accumulate ? _mm512_maskz_loadu_ps(k0, c + r * ldc) : _mm512_setzero_ps();
    acc[r][1] = accumulate ? _mm512_maskz_loadu_ps(k1, c + r * ldc + 16) : _mm512_setzero_ps();
  }
  for (long m = 0; m < rows; ++m) {
    const __m512 b0 = _mm512_maskz_loadu_ps(k0, b + m * ldb);
    const __m512 b1 = _mm512_maskz_loadu_ps(k1, b + m * ldb + 16);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m512 av = _mm512_set1_ps(a[m * lda + r]);
      acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    _mm512_mask_storeu_ps(c + r * ldc, k0, acc[r][0]);
    _mm512_mask_storeu_ps(c + r * ldc + 16, k1, acc[r][1]);
  }
}
using Tile = void (*)(const float*, long, const float*, long, long, float*, long, long, bool);
Tile tiles[13] = {nullptr,     tile_tn<1>,  tile_tn<2>, tile_tn<3>, tile_tn<4>,
                  tile_tn<5>,  tile_tn<6>,  tile_tn<7>, tile_tn<8>, tile_tn<9>,
                  tile_tn<10>, tile_tn<11>, tile_tn<12>};

void tn(long N, long K, long M, const float* a, const float* b, float* c, long chunk) {
  for (long m0 = 0; m0 < M; m0 += chunk) {
    const long rows = std::min(chunk, M - m0);
    for (long k0 = 0; k0 < K; k0 += 32)
      for (long n0 = 0; n0 < N; n0 += 12)
        tiles[std::min(12L, N - n0)](a + m0 * N + n0, N, b + m0 * K + k0, K, rows, c + n0 * K + k0,
                                     K, std::min(32L, K - k0), m0 > 0);
  }
}

template <int R>
__attribute__((noinline, target("avx512f"))) void tile_p(const float* a, const float* b, long rows,
                                                         float* c, long ldc, long cols,
                                                         bool accumulate) {
  // a: rows x 12 (packed dy tile), b: rows x 32 (packed x panel)
  const __mmask16 k0 = __mmask16((1u << std::clamp<long>(cols, 0, 16)) - 1);
  const __mmask16 k1 = __mmask16((1u << std::clamp<long>(cols - 16, 0, 16)) - 1);
  __m512 acc[R][2];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    acc[r][0] = accumulate ? _mm512_maskz_loadu_ps(k0, c + r * ldc) : _mm512_setzero_ps();
    acc[r][1] = accumulate ? _mm512_maskz_loadu_ps(k1, c + r * ldc + 16) : _mm512_setzero_ps();
  }
  for (long m = 0; m < rows; ++m) {
    const __m512 b0 = _mm512_load_ps(b + m * 32), b1 = _mm512_load_ps(b + m * 32 + 16);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m512 av = _mm512_set1_ps(a[m * 12 + r]);
      acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    _mm512_mask_storeu_ps(c + r * ldc, k0, acc[r][0]);
    _mm512_mask_storeu_ps(c + r * ldc + 16, k1, acc[r][1]);
  }
}
Tile ptiles_dummy;
using PTile = void (*)(const float*, const float*, long, float*, long, long, bool);
PTile ptiles[13] = {nullptr,   tile_p<1>, tile_p<2>, tile_p<3>,  tile_p<4>,  tile_p<5>, tile_p<6>,
                    tile_p<7>, tile_p<8>, tile_p<9>, tile_p<10>, tile_p<11>, tile_p<12>};
void tnp(long N, long K, long M, const float* a, const float* b, float* c, long chunk) {
  static thread_local std::vector<float> ap, bp;
  const long nt = (N + 11) / 12, kp = (K + 31) / 32;
  ap.resize(nt * chunk * 12 + 16);
  bp.resize(kp * chunk * 32 + 16);
  float* A = (float*)(((uintptr_t)ap.data() + 63) & ~uintptr_t(63));
  float* Bp = (float*)(((uintptr_t)bp.data() + 63) & ~uintptr_t(63));
  for (long m0 = 0; m0 < M; m0 += chunk) {
    const long rows = std::min(chunk, M - m0);
    for (long t = 0; t < nt; ++t) {
      const long n0 = t * 12, w = std::min(12L, N - n0);
      for (long m = 0; m < rows; ++m) {
        const float* src = a + (m0 + m) * N + n0;
        float* dst = A + (t * chunk + m) * 12;
        for (long j = 0; j < w; ++j) dst[j] = src[j];
        for (long j = w; j < 12; ++j) dst[j] = 0;
      }
    }
    for (long p = 0; p < kp; ++p) {
      const long k0 = p * 32, w = std::min(32L, K - k0);
      for (long m = 0; m < rows; ++m) {
        const float* src = b + (m0 + m) * K + k0;
        float* dst = Bp + (p * chunk + m) * 32;
        for (long j = 0; j < w; ++j) dst[j] = src[j];
        for (long j = w; j < 32; ++j) dst[j] = 0;
      }
    }
    for (long p = 0; p < kp; ++p)
      for (long t = 0; t < nt; ++t)
        ptiles[std::min(12L, N - t * 12)](A + t * chunk * 12, Bp + p * chunk * 32, rows,
                                          c + t * 12 * K + p * 32, K, std::min(32L, K - p * 32),
                                          m0 > 0);
  }
}
double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
#include <omp.h>
#include <cstdint>
#include <vector>
int main(int argc, char** argv) {
  long shapes[][2] = {{128, 128}, {64, 128}, {384, 128}, {128, 384}, {256, 128}};
  const long M = argc > 1 ? atol(argv[1]) : 4096;
  for (int round = 0; round < 2; ++round)
    for (auto& s : shapes) {
      const long N = s[0], K = s[1];
      float *a = (float*)aligned_alloc(64, M * N * 4), *b = (float*)aligned_alloc(64, M * K * 4);
      float* c = (float*)aligned_alloc(64, 2 * N * K * 4);
      for (long i = 0; i < M * N; ++i) a[i] = float(rand()) / RAND_MAX - 0.5f;
      for (long i = 0; i < M * K; ++i) b[i] = float(rand()) / RAND_MAX - 0.5f;
      printf("N %ld K %ld:", N, K);
      for (int kind = 0; kind < 3; ++kind)
        for (int th = 1; th <= 2; ++th) {
          double best = 1e9;
          for (int r = 0; r < 20; ++r) {
            double t = now();
#pragma omp parallel num_threads(th)
            {
              int p = omp_get_thread_num();
              long m0 = M * p / th, m1 = M * (p + 1) / th;
              if (th == 1) {
                m0 = 0;
                m1 = M / 2;
              }
              if (kind == 0)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, K, m1 - m0, 1.f, a + m0 * N,
                            N, b + m0 * K, K, 0.f, c + p * N * K, K);
              else if (kind == 1)
                tn(N, K, m1 - m0, a + m0 * N, b + m0 * K, c + p * N * K, 128);
              else
                tnp(N, K, m1 - m0, a + m0 * N, b + m0 * K, c + p * N * K, 256);
            }
            best = std::min(best, now() - t);
          }
          printf("  %s %dT %.1f",
                 kind == 2 ? "tnp"
                 : kind    ? "tn"
                           : "blas",
                 th, 2.0 * (M / 2) * N * K / best * 1e-9);
        }
      printf("  GFLOP/s per thread\n");
    }
}
