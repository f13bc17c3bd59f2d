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

// The kernels prefetch W's rows ahead, in one of two ways picked by the matrix's size (a
// prefetch past the end of W is dropped, never a fault); f32 weights only in the `far` way. In f32
// `near` did not pay: 12.2-13.5 GB/s with it against 13.5-14.1 without from DRAM, the d_model 128
// preset the same within the noise (bench/results/2026-12-05-cpu-decode-2).
enum class Prefetch {
  // Matrices below kParallelBytes, which a model that has them reads from the caches: each pass
  // of kRows rows prefetches the same columns of the next pass's rows into L1 (T0), every 16
  // columns. The d_model 128 preset with bf16 weights (in the L3) at T = 256: 0.103-0.106 ->
  // 0.093-0.098 ms/token at its fastest steps against none (bench/results/2026-12-05-cpu-decode-2,
  // three alternating runs, load 10). `far` instead: 0.102-0.105 against 0.093-0.100 CPU ms a
  // step at the median (bench/results/2026-12-05-cpu-decode-4/small-prefetch.txt, four
  // alternating runs of 200 steps, load 20): slower here.
  near,
  // Matrices of kParallelBytes or more, streamed from memory: the same columns 2 kRows rows ahead
  // into L2 (T1), once per 64 bytes of a row. Measured on the 93M llama's 189 MB of bf16
  // matrices, 2 threads, CPU ms a pass (bench/results/2026-12-05-cpu-decode-4/bf16_stream.cpp,
  // medians of 30 passes alternating, three runs, 2-core AVX-512 dev VM at load 16-21): no
  // prefetch 20.9-22.0; `near` 16.6-18.1; `near` once per 64 bytes 15.9-17.6; `far` 15.5-17.1 (16
  // or 32 rows ahead, or T2: the same within the spread; 2 or 8 rows a pass: the same); the same
  // bytes read with no arithmetic, each thread one half of one buffer: 15.5-16.9 (two runs).
  // (Likely why the hardware prefetchers fall behind there: a Cin = 1024 row is 2 KB, so 4 rows a
  // pass stream from two 4 KB pages; a guess, this VM has no counters.) bench_decode's 93M model
  // with bf16 weights, 2 threads: 17.2-19.2 -> 16.1-17.2 CPU ms a token, 0-11% less in each of
  // five alternating pairs (load 19-31, where the wall times are the scheduler's; decode-4).
  // f32 (two prefetches a step: 128 bytes of a row), the 93M llama's 372 MB of f32 matrices, 2
  // threads, on the 2-core Emerald Rapids VM (idle but for the runs;
  // bench/results/2026-12-06-cpu-decode-emr): the kernel's stream of those matrices with and
  // without, alternating in one process, 0.81-0.95 of the time in 20 of 20 rounds; in the library
  // the 57 GEMVs 18.1-19.1 -> 16.3-17.8 ms a token, faster in 6 of 6 alternating rounds (bf16,
  // the same code in both builds, the control: 8.2-10.1 against 9.2-10.3).
  far,
};
constexpr int64_t kFarRows = 2 * kRows;
// The kernels step over 32 columns (two 16-lane steps) a prefetch: 64 bytes of a bf16 row (an f32
// row's 128 bytes take two). A `k % 32` test inside a 16-column loop instead let GCC 12 drop the
// prefetches altogether.
constexpr int64_t kPrefetchCols = 32;
static_assert(kPrefetchCols * sizeof(bf16) == 64, "one prefetch per 64-byte line of a bf16 row");

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
// Re-measured at load 12-15 (bench/results/2026-12-05-cpu-decode-6): the same, f32 0.174-0.182
// -> 0.128-0.140 ms/token spinning (one run 0.203; 0.140-0.154 splitting only matrices of 32,
// 64 or 128 KB up), 0.30 passive; one run of 200 steps splitting 128 KB up, spinning, took 280 ms a
// step at the median (the spinning thread and the caller fighting for the loaded cores). The L2
// effect itself is real: a stand-in of the 29 GEMVs (l2_split.cpp there) takes 100-114 us on one
// thread, 36-43 on two with each thread's rows fixed and a spinning barrier between GEMVs, 52-68
// when the halves change owner every step (so L2 residency is worth ~20 us of the 60 saved), 57-59
// with one libgomp region a GEMV and spinning workers, 174-204 with sleeping ones (~5 us a
// hand-off).
// One region for the whole decode step instead (the caller runs the step, parallel_for's items go
// to the region's other thread through atomics, every matrix split): the small preset f32
// 0.17-0.18 -> 0.10-0.13 ms/token with spinning workers (one run 0.23), but 10 of 15 such runs
// at load 6-9 took 6-20 ms a token (a guess: two spinning threads need two cores at once), and
// under OMP_WAIT_POLICY=passive 0.17-0.18 -> 0.16-0.20 (f32), 0.09-0.11 -> 0.11-0.14 (bf16): the
// worker is woken at the region's start and waited for at its end
// (bench/results/2026-12-05-cpu-decode-7). Not done.
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

// The prefetches for columns [k, k + kPrefetchCols) of the NR rows from o0 (f32: `far` only).
template <Prefetch P, class W>
inline void prefetch_ahead(const W* w, int64_t o0, int64_t NR, int64_t Cin, int64_t k) {
  if constexpr (std::is_same_v<W, bf16> || P == Prefetch::far) {
    // By integer address: the rows ahead may lie past the end of W.
    const uintptr_t base = reinterpret_cast<uintptr_t>(w);
    auto at = [&](int64_t row, int64_t col) {
      return reinterpret_cast<const char*>(base + uintptr_t(row * Cin + col) * sizeof(W));
    };
    for (int64_t r = 0; r < NR; ++r) {
      if constexpr (P == Prefetch::far) {
        _mm_prefetch(at(o0 + r + kFarRows, k), _MM_HINT_T1);
        if constexpr (std::is_same_v<W, float>)  // the step's 32 columns are two lines
          _mm_prefetch(at(o0 + r + kFarRows, k + 16), _MM_HINT_T1);
      } else {
        _mm_prefetch(at(o0 + r + kRows, k), _MM_HINT_T0);
        _mm_prefetch(at(o0 + r + kRows, k + 16), _MM_HINT_T0);
      }
    }
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

// Columns [k, k + 16) of the NR rows from o0 into their lanes (lo: 0-7, hi: 8-15).
template <int NR, class W>
inline void step16_avx2(__m256* lo, __m256* hi, const W* w, int64_t o0, int64_t Cin, const float* x,
                        int64_t k) {
  const __m256 x0 = _mm256_loadu_ps(x + k), x1 = _mm256_loadu_ps(x + k + 8);
  for (int r = 0; r < NR; ++r) {
    const W* row = w + (o0 + r) * Cin + k;
    lo[r] = _mm256_fmadd_ps(load8(row), x0, lo[r]);
    hi[r] = _mm256_fmadd_ps(load8(row + 8), x1, hi[r]);
  }
}

// y[o] for the NR rows from o0, AVX2: lanes 0-7 in lo, 8-15 in hi.
template <int NR, Prefetch P, class W>
void rows_avx2(int64_t o0, int64_t Cin, const W* w, const float* x, const float* bias, float* y) {
  __m256 lo[NR], hi[NR];
  for (int r = 0; r < NR; ++r) lo[r] = hi[r] = _mm256_setzero_ps();
  const int64_t k16 = Cin / 16 * 16;
  int64_t k = 0;
  for (; k + kPrefetchCols <= k16; k += kPrefetchCols) {
    prefetch_ahead<P>(w, o0, NR, Cin, k);
    step16_avx2<NR>(lo, hi, w, o0, Cin, x, k);
    step16_avx2<NR>(lo, hi, w, o0, Cin, x, k + 16);
  }
  if (k < k16) {
    prefetch_ahead<P>(w, o0, NR, Cin, k);
    step16_avx2<NR>(lo, hi, w, o0, Cin, x, k);
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

// Columns [k, k + 16) of the NR rows from o0 into their lanes.
template <int NR, class W>
__attribute__((target("avx512f"))) inline void step16_avx512(__m512* acc, const W* w, int64_t o0,
                                                             int64_t Cin, const float* x,
                                                             int64_t k) {
  const __m512 xv = _mm512_loadu_ps(x + k);
  for (int r = 0; r < NR; ++r) acc[r] = _mm512_fmadd_ps(load16(w + (o0 + r) * Cin + k), xv, acc[r]);
}

// The same for AVX-512: the 16 lanes in one zmm.
template <int NR, Prefetch P, class W>
__attribute__((target("avx512f"))) void rows_avx512(int64_t o0, int64_t Cin, const W* w,
                                                    const float* x, const float* bias, float* y) {
  __m512 acc[NR];
  for (int r = 0; r < NR; ++r) acc[r] = _mm512_setzero_ps();
  const int64_t k16 = Cin / 16 * 16;
  int64_t k = 0;
  for (; k + kPrefetchCols <= k16; k += kPrefetchCols) {
    prefetch_ahead<P>(w, o0, NR, Cin, k);
    step16_avx512<NR>(acc, w, o0, Cin, x, k);
    step16_avx512<NR>(acc, w, o0, Cin, x, k + 16);
  }
  if (k < k16) {
    prefetch_ahead<P>(w, o0, NR, Cin, k);
    step16_avx512<NR>(acc, w, o0, Cin, x, k);
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
template <Prefetch P, class W>
void rows(int64_t o0, int64_t o1, int64_t Cin, const W* w, const float* x, const float* bias,
          float* y) {
  int64_t o = o0;
#if defined(__AVX2__) && defined(__FMA__)
  if (cpu_isa() == CpuIsa::avx512) {
    for (; o + kRows <= o1; o += kRows) rows_avx512<kRows, P>(o, Cin, w, x, bias, y);
    for (; o < o1; ++o) rows_avx512<1, P>(o, Cin, w, x, bias, y);
    return;
  }
  for (; o + kRows <= o1; o += kRows) rows_avx2<kRows, P>(o, Cin, w, x, bias, y);
  for (; o < o1; ++o) rows_avx2<1, P>(o, Cin, w, x, bias, y);
#else
  for (; o + kRows <= o1; o += kRows) rows_scalar<kRows>(o, Cin, w, x, bias, y);
  for (; o < o1; ++o) rows_scalar<1>(o, Cin, w, x, bias, y);
#endif
}

// One contiguous block of rows per thread (a multiple of kRows but the last), so each thread
// streams its own part of W. Chunks of 64 rows handed out dynamically instead (so that a worker
// woken late takes fewer): the 93M model with bf16 weights 16.7-17.2 CPU ms a token against
// 16.1-16.4 (bench/results/2026-12-05-cpu-decode-4, load 20-25, its wall time not measurable
// there): not done. A big matrix on one thread also takes `far`, measured with 2 threads only.
// (tests/test_linear.cpp's 517 x 1053 bf16 GEMV sits just above kParallelBytes, to reach `far`.)
template <class W>
void gemv_rows_split(const Context& ctx, int64_t Cout, int64_t Cin, const W* w, const float* x,
                     const float* bias, float* y) {
  const int64_t groups = (Cout + kRows - 1) / kRows;
  const bool big = Cout * Cin * int64_t(sizeof(W)) >= kParallelBytes;
  if (!big) return rows<Prefetch::near>(0, Cout, Cin, w, x, bias, y);
  const int64_t parts = std::min<int64_t>(ctx.cpu_threads(), groups);
  if (parts == 1) return rows<Prefetch::far>(0, Cout, Cin, w, x, bias, y);
  parallel_for(ctx, parts, [&](int64_t p) {
    const int64_t o0 = groups * p / parts * kRows;
    const int64_t o1 = std::min(Cout, groups * (p + 1) / parts * kRows);
    rows<Prefetch::far>(o0, o1, Cin, w, x, bias, y);
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
