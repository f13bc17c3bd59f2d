// GEMV on the CPU: y = W @ x [+ bias] streaming W once (see gemv.h).
//
// Every y[o]: lane l of 16 partial sums accumulates W[o][k] * x[k] for k = l, l + 16, ... (one FMA
// chain per lane, in k order) over the first Cin - Cin % 16 columns; the 16 lanes are reduced by
// reduce16's fixed tree; the tail columns are added in order (FMA), then bias[o]. The AVX2 kernel
// holds the 16 lanes in two ymm registers, the AVX-512 one in one zmm: the same chains, so the
// same bits.
#include "src/cpu/gemv.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "src/cpu/blas.h"
#include "src/cpu/isa.h"
#include "src/cpu/parallel.h"

namespace longctx::cpu {
namespace {

// Rows per pass: each load of x feeds kRows rows' FMAs, and kRows rows stream at once.
constexpr int64_t kRows = 4;

// bf16 weights: each pass prefetches the same columns of the next pass's rows (a prefetch past
// the end of W is dropped, never a fault). gemv_stream.cpp (96 matrices of 2048 x 2048, beyond
// the L3; bench/results/2026-12-05-cpu-decode-2/gemv-prefetch.txt) moved 10.4-11.1 GB/s of bf16
// weights a CPU second without and 10.7-12.0 with it (three alternating runs of two passes,
// one thread, 2-core AVX-512 dev VM, load 9-10); one prefetch a 64-byte line instead of one
// every 16 columns: 10.5-11.8, not better; 8 rows ahead: the same. The d_model 128 llama
// preset with bf16 weights (in the L3) at T = 256: 0.103-0.106 -> 0.093-0.098 ms/token at its
// fastest steps, 0.130-0.163 -> 0.113-0.134 CPU ms at the median (bench_decode, three
// alternating runs, load 10). In f32 the hardware prefetchers keep up: 12.2-13.5 GB/s with it
// against 13.5-14.1 without (DRAM), the small model the same within the noise: not done.
constexpr int64_t kPrefetchRows = kRows;

// Below this many weight bytes the matrix is done by the calling thread alone: waking the other
// thread (an OpenMP region, passive wait) costs more than its share of the work saves. Square
// f32 GEMVs in cache, 1 vs 2 threads, best of 400 calls in each of two runs, on the 2-core
// AVX-512 dev VM at load 12 (bench/results/2026-12-05-cpu-decode/gemv-threads.txt): 64 KB 1.3
// vs 4.0-4.8 us, 1 MB 18.4-18.9 vs 21.0-21.9, 2 MB 42-44 vs 42-44, 4 MB 132-139 vs 59-120. The
// threshold sits below that crossover because a matrix streamed from memory (a large model's)
// gains more from a second core's outstanding misses than one in cache does.
//
// Splitting every matrix, however small, would give each thread the same rows token after
// token (one block per thread, parallel_for's static schedule runs item p on thread p), so that
// a model too big for one core's L2 might sit in two: the d_model 128 llama preset reads 3.3 MB
// of f32 matrices a token against a 2 MB L2 a core, and streams them from the L3 at ~32 GB/s.
// Measured on the 2-core AVX-512 dev VM at load 18-20, T = 256, 200 steps, 2 threads, against
// this threshold (bench/results/2026-12-05-cpu-decode-small/l2-split-runs.txt): with
// OMP_WAIT_POLICY=passive 0.18 -> 0.28-0.31 ms/token in f32 and 0.10 -> 0.21-0.23 with bf16
// weights (29 GEMVs a token, each waking the sleeping thread: ~4 us a region); with spinning
// workers (active, or libgomp's default spin) f32 0.18 -> 0.13-0.15 (1.2-1.3x) but bf16 0.10 ->
// 0.105-0.116, for a second core's whole CPU time; with OMP_PROC_BIND=true 1.3-13 ms (a bound
// thread waits for its core's other tenants). Not done: it pays only with a core to spin on.
constexpr int64_t kParallelBytes = int64_t(1) << 20;

float widen(float w) {
  return w;
}
float widen(bf16 w) {
  return to_float(w);
}

// The fixed reduction of the 16 lanes: lane l + lane l + 8, then + 4, + 2, + 1.
float reduce16(const float* lane) {
  float a[8];
  for (int l = 0; l < 8; ++l) a[l] = lane[l] + lane[l + 8];
  for (int l = 0; l < 4; ++l) a[l] = a[l] + a[l + 4];
  for (int l = 0; l < 2; ++l) a[l] = a[l] + a[l + 2];
  return a[0] + a[1];
}

// Everything after the 16 lanes' sum: the tail columns [k0, Cin) in order, then the bias.
template <class W>
float finish(float sum, const W* w, const float* x, int64_t k0, int64_t Cin, const float* bias,
             int64_t o) {
  for (int64_t k = k0; k < Cin; ++k) sum = std::fma(widen(w[k]), x[k], sum);
  return bias ? sum + bias[o] : sum;
}

#if defined(__AVX2__) && defined(__FMA__)

// The prefetches of kPrefetchRows (bf16 weights only).
template <class W>
inline void prefetch_next(const W* w, int64_t o0, int64_t NR, int64_t Cin, int64_t k) {
  if constexpr (std::is_same_v<W, bf16>) {
    // By integer address: the rows ahead may lie past the end of W.
    const uintptr_t base = reinterpret_cast<uintptr_t>(w);
    for (int64_t r = 0; r < NR; ++r)
      _mm_prefetch(reinterpret_cast<const char*>(
                       base + uintptr_t((o0 + r + kPrefetchRows) * Cin + k) * sizeof(W)),
                   _MM_HINT_T0);
  }
}

// reduce16 in registers, lanes 0-7 in lo and 8-15 in hi: the same tree, so the same bits. A
// store and 15 scalar adds cost as much as the 8 FMAs of a Cin = 128 row (the d_model 128
// preset's projections).
inline float reduce16_avx2(__m256 lo, __m256 hi) {
  const __m256 a8 = _mm256_add_ps(lo, hi);  // l, l + 8
  const __m128 a4 = _mm_add_ps(_mm256_castps256_ps128(a8), _mm256_extractf128_ps(a8, 1));  // + 4
  const __m128 a2 = _mm_add_ps(a4, _mm_movehl_ps(a4, a4));                                 // + 2
  return _mm_cvtss_f32(_mm_add_ss(a2, _mm_movehdup_ps(a2)));                               // + 1
}

inline __m256 load8(const float* p) {
  return _mm256_loadu_ps(p);
}
inline __m256 load8(const bf16* p) {  // bf16 -> f32: the 16 bits above 16 zero bits
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

// y[o] for the NR rows from o0, AVX2: lanes 0-7 in lo, 8-15 in hi.
template <int NR, class W>
void rows_avx2(int64_t o0, int64_t Cin, const W* w, const float* x, const float* bias, float* y) {
  __m256 lo[NR], hi[NR];
  for (int r = 0; r < NR; ++r) lo[r] = hi[r] = _mm256_setzero_ps();
  const int64_t k16 = Cin / 16 * 16;
  for (int64_t k = 0; k < k16; k += 16) {
    const __m256 x0 = _mm256_loadu_ps(x + k), x1 = _mm256_loadu_ps(x + k + 8);
    prefetch_next(w, o0, NR, Cin, k);
    for (int r = 0; r < NR; ++r) {
      const W* row = w + (o0 + r) * Cin + k;
      lo[r] = _mm256_fmadd_ps(load8(row), x0, lo[r]);
      hi[r] = _mm256_fmadd_ps(load8(row + 8), x1, hi[r]);
    }
  }
  for (int r = 0; r < NR; ++r)
    y[o0 + r] = finish(reduce16_avx2(lo[r], hi[r]), w + (o0 + r) * Cin, x, k16, Cin, bias, o0 + r);
}

__attribute__((target("avx512f"))) inline __m512 load16(const float* p) {
  return _mm512_loadu_ps(p);
}
__attribute__((target("avx512f"))) inline __m512 load16(const bf16* p) {
  // The all-ones-mask forms: the plain ones start from _mm512_undefined_epi32(), which GCC 12
  // warns about (-Wmaybe-uninitialized).
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  const __m512i wide = _mm512_maskz_cvtepu16_epi32(__mmask16(0xffff), h);
  return _mm512_castsi512_ps(_mm512_maskz_slli_epi32(__mmask16(0xffff), wide, 16));
}

// The same for AVX-512: the 16 lanes in one zmm.
template <int NR, class W>
__attribute__((target("avx512f"))) void rows_avx512(int64_t o0, int64_t Cin, const W* w,
                                                    const float* x, const float* bias, float* y) {
  __m512 acc[NR];
  for (int r = 0; r < NR; ++r) acc[r] = _mm512_setzero_ps();
  const int64_t k16 = Cin / 16 * 16;
  for (int64_t k = 0; k < k16; k += 16) {
    const __m512 xv = _mm512_loadu_ps(x + k);
    prefetch_next(w, o0, NR, Cin, k);
    for (int r = 0; r < NR; ++r)
      acc[r] = _mm512_fmadd_ps(load16(w + (o0 + r) * Cin + k), xv, acc[r]);
  }
  for (int r = 0; r < NR; ++r) {
    // The halves by masked extracts: the plain ones start from an undefined value, which GCC 12
    // warns about.
    const __m512d pd = _mm512_castps_pd(acc[r]);
    const __m256 lo = _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(__mmask8(0xff), pd, 0));
    const __m256 hi = _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(__mmask8(0xff), pd, 1));
    y[o0 + r] = finish(reduce16_avx2(lo, hi), w + (o0 + r) * Cin, x, k16, Cin, bias, o0 + r);
  }
}

#endif

// Portable version (a build without AVX2): the same chains in scalar code.
template <int NR, class W>
void rows_scalar(int64_t o0, int64_t Cin, const W* w, const float* x, const float* bias, float* y) {
  const int64_t k16 = Cin / 16 * 16;
  for (int r = 0; r < NR; ++r) {
    const W* row = w + (o0 + r) * Cin;
    float lane[16] = {};
    for (int64_t k = 0; k < k16; k += 16)
      for (int l = 0; l < 16; ++l) lane[l] = std::fma(widen(row[k + l]), x[k + l], lane[l]);
    y[o0 + r] = finish(reduce16(lane), row, x, k16, Cin, bias, o0 + r);
  }
}

// Rows [o0, o1): kRows at a time, then one at a time.
template <class W>
void rows(int64_t o0, int64_t o1, int64_t Cin, const W* w, const float* x, const float* bias,
          float* y) {
  int64_t o = o0;
#if defined(__AVX2__) && defined(__FMA__)
  if (cpu_isa() == CpuIsa::avx512) {
    for (; o + kRows <= o1; o += kRows) rows_avx512<kRows>(o, Cin, w, x, bias, y);
    for (; o < o1; ++o) rows_avx512<1>(o, Cin, w, x, bias, y);
    return;
  }
  for (; o + kRows <= o1; o += kRows) rows_avx2<kRows>(o, Cin, w, x, bias, y);
  for (; o < o1; ++o) rows_avx2<1>(o, Cin, w, x, bias, y);
#else
  for (; o + kRows <= o1; o += kRows) rows_scalar<kRows>(o, Cin, w, x, bias, y);
  for (; o < o1; ++o) rows_scalar<1>(o, Cin, w, x, bias, y);
#endif
}

// One contiguous block of rows per thread (a multiple of kRows but the last), so each thread
// streams its own part of W.
template <class W>
void gemv_rows_split(const Context& ctx, int64_t Cout, int64_t Cin, const W* w, const float* x,
                     const float* bias, float* y) {
  const int64_t groups = (Cout + kRows - 1) / kRows;
  const bool big = Cout * Cin * int64_t(sizeof(W)) >= kParallelBytes;
  const int64_t parts = big ? std::min<int64_t>(ctx.cpu_threads(), groups) : 1;
  if (parts == 1) return rows(0, Cout, Cin, w, x, bias, y);
  parallel_for(ctx, parts, [&](int64_t p) {
    const int64_t o0 = groups * p / parts * kRows;
    const int64_t o1 = std::min(Cout, groups * (p + 1) / parts * kRows);
    rows(o0, o1, Cin, w, x, bias, y);
  });
}

}  // namespace

void gemv(const Context& ctx, int64_t Cout, int64_t Cin, const float* W, const float* x,
          const float* bias, float* y) {
  gemv_rows_split(ctx, Cout, Cin, W, x, bias, y);
}

void gemv(const Context& ctx, int64_t Cout, int64_t Cin, const bf16* W, const float* x,
          const float* bias, float* y) {
  gemv_rows_split(ctx, Cout, Cin, W, x, bias, y);
}

void linear_fwd_bf16_weight(const Context& ctx, const LinearArgs& args) {
  const int64_t M = args.M, Cin = args.Cin, Cout = args.Cout;
  const bf16* w = static_cast<const bf16*>(args.weight);  // (Cout, Cin)
  const float* x = static_cast<const float*>(args.x);     // (M, Cin)
  const float* bias = static_cast<const float*>(args.bias);
  float* y = static_cast<float*>(args.out);  // (M, Cout)
  if (M == 0) return;
  if (M == 1) return gemv(ctx, Cout, Cin, w, x, bias, y);
  // 64 weight rows at a time: the widened block (64 x Cin f32, 256 KB at Cin = 1024) stays in L2
  // while sgemm reads it.
  constexpr int64_t kBlock = 64;
  std::vector<float> wide(size_t(std::min(kBlock, Cout) * Cin));
  BlasThreads threads(ctx);
  for (int64_t o0 = 0; o0 < Cout; o0 += kBlock) {
    const int64_t n = std::min(kBlock, Cout - o0);
    for (int64_t i = 0; i < n * Cin; ++i) wide[size_t(i)] = to_float(w[o0 * Cin + i]);
    if (bias)
      for (int64_t m = 0; m < M; ++m) std::copy(bias + o0, bias + o0 + n, y + m * Cout + o0);
    // y[:, o0:o0+n] (M, n) = x (M, Cin) @ wide^T (Cin, n) [+ y]
    gemm(/*trans_a=*/false, /*trans_b=*/true, M, n, Cin, 1.0f, x, Cin, wide.data(), Cin,
         bias ? 1.0f : 0.0f, y + o0, Cout);
  }
}

}  // namespace longctx::cpu
