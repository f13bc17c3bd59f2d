// y = x · wᵀ [+ bias] (or x · w) at a small K by register-blocked tiles (see small_k_gemm.h).
//
// w is packed into panels of NR columns of y (NR = 32 with AVX-512, 16 with AVX2): panel p holds,
// for each k, w[p·NR + j][k] for j < NR (w (N, K); for a (K, N) w, its row k's columns), zero
// past N, so one k step of a tile is NR/16 (or NR/8) aligned vector loads. A tile is R <= MR rows
// of y by one panel, held in registers for the whole K loop: per k step it broadcasts x[m][k] of
// each of its rows (read from x in place) against the panel's vectors. It starts from the panel's
// bias (or zero) and is stored once (masked past N). Work items are blocks of kBlockRows rows: x's
// block stays in L1 while every panel passes over it.
#include "src/cpu/small_k_gemm.h"

#include <algorithm>
#include <cstdlib>
#include <memory>

#include "longctx/error.h"
#include "src/cpu/isa.h"
#include "src/cpu/parallel.h"

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__) && defined(__GNUC__)
#include <immintrin.h>
#define LONGCTX_SMALL_K_GEMM 1
#endif

namespace longctx::cpu {

namespace {
// Rows of y a work item: 48 rows of x at K = 128 are 24 KB, half the L1 of the SPR dev VM. A
// multiple of both kernels' MR. On the 2-core Zen 4 VM (32 KB L1, 1 MB L2; 2026-12-06) blocks of
// 24, 36 and 96 rows were no faster at the prefill's shapes (one thread, within +-2 %), nor is
// the L1 the limit: tile_avx512<12> alone with x and the panels hot runs at 111.5 GFLOP/s with
// 48 rows x 12 panels (196 KB, from L2), 115 at K = 384 (a 48 KB panel), of the 117 that 24
// independent zmm FMA chains reach (bench/results/2026-12-06-cpu-small-k-gemm, kpeak.cpp).
constexpr int64_t kBlockRows = 48;
}  // namespace

#ifdef LONGCTX_SMALL_K_GEMM
namespace {

// A tile: rows of y [0, R) (R fixed by the instance), columns [0, cols) of the panel.
using Tile = void (*)(const float* x, int64_t K, const float* panel, const float* bias, float* y,
                      int64_t ldy, int64_t cols);

// AVX2: R x 16, two ymm accumulators a row (MR = 6: 12 accumulators, 2 panel vectors and a
// broadcast in the 16 ymm registers).
constexpr int64_t kMrAvx2 = 6, kNrAvx2 = 16;

template <int R>
void tile_avx2(const float* x, int64_t K, const float* panel, const float* bias, float* y,
               int64_t ldy, int64_t cols) {
  const __m256 b0 = bias ? _mm256_load_ps(bias) : _mm256_setzero_ps();
  const __m256 b1 = bias ? _mm256_load_ps(bias + 8) : _mm256_setzero_ps();
  __m256 c0[R], c1[R];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) c0[r] = b0, c1[r] = b1;
  for (int64_t k = 0; k < K; ++k) {
    const __m256 w0 = _mm256_load_ps(panel + k * 16), w1 = _mm256_load_ps(panel + k * 16 + 8);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m256 xv = _mm256_broadcast_ss(x + r * K + k);
      c0[r] = _mm256_fmadd_ps(xv, w0, c0[r]);
      c1[r] = _mm256_fmadd_ps(xv, w1, c1[r]);
    }
  }
  if (cols == 16) {
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      _mm256_storeu_ps(y + r * ldy, c0[r]);
      _mm256_storeu_ps(y + r * ldy + 8, c1[r]);
    }
    return;
  }
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(cols)), lane);
  const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(cols) - 8), lane);
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    _mm256_maskstore_ps(y + r * ldy, m0, c0[r]);
    _mm256_maskstore_ps(y + r * ldy + 8, m1, c1[r]);
  }
}

// AVX-512: R x 32, two zmm accumulators a row (MR = 12: 24 accumulators; per k step 2 loads and
// 12 broadcasts feed 24 FMAs). Other blockings against OpenBLAS in one run each (the prefill's
// nine shapes of linear_kernel_probe.cpp, two runs, load 18-20; bench/results/
// 2026-12-05-cpu-linear-kernel/README.md): 12 x 32 1.09-1.28x, 6 x 64 1.02-1.43x (wastes more
// of 648 columns), 8 x 32 0.99-1.33x, 14 x 32 1.03-1.29x, 8 x 48 0.94-1.34x, 12 x 32 in blocks of
// 96 rows 1.03-1.34x.
constexpr int kNv512 = 2;  // zmm vectors a row
constexpr int64_t kMrAvx512 = 12, kNrAvx512 = 16 * kNv512;

template <int R>
__attribute__((target("avx512f"))) void tile_avx512(const float* x, int64_t K, const float* panel,
                                                    const float* bias, float* y, int64_t ldy,
                                                    int64_t cols) {
  constexpr int NV = kNv512;
  __m512 b[NV], c[R][NV];
#pragma GCC unroll 16
  for (int v = 0; v < NV; ++v) b[v] = bias ? _mm512_load_ps(bias + 16 * v) : _mm512_setzero_ps();
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) c[r][v] = b[v];
  for (int64_t k = 0; k < K; ++k) {
    __m512 wv[NV];
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) wv[v] = _mm512_load_ps(panel + k * 16 * NV + 16 * v);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m512 xv = _mm512_set1_ps(x[r * K + k]);
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) c[r][v] = _mm512_fmadd_ps(xv, wv[v], c[r][v]);
    }
  }
  __mmask16 m[NV];
#pragma GCC unroll 16
  for (int v = 0; v < NV; ++v) {
    const int64_t n = std::clamp<int64_t>(cols - 16 * v, 0, 16);
    m[v] = __mmask16((1u << n) - 1);
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) _mm512_mask_storeu_ps(y + r * ldy + 16 * v, m[v], c[r][v]);
}

// dst rows i < 8 (stride ldd) = src columns i of 8 rows (stride lds), 8 floats each.
inline void transpose8x8(const float* src, int64_t lds, float* dst, int64_t ldd) {
  __m256 r[8];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * lds);
  __m256 t[8], u[8];
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
#pragma GCC unroll 2
  for (int h = 0; h < 2; ++h) {  // rows 4h .. 4h + 3
    __m256* const th = t + 4 * h;
    u[4 * h + 0] = _mm256_shuffle_ps(th[0], th[2], 0x44);
    u[4 * h + 1] = _mm256_shuffle_ps(th[0], th[2], 0xEE);
    u[4 * h + 2] = _mm256_shuffle_ps(th[1], th[3], 0x44);
    u[4 * h + 3] = _mm256_shuffle_ps(th[1], th[3], 0xEE);
  }
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    _mm256_storeu_ps(dst + i * ldd, _mm256_permute2f128_ps(u[i], u[4 + i], 0x20));
    _mm256_storeu_ps(dst + (4 + i) * ldd, _mm256_permute2f128_ps(u[i], u[4 + i], 0x31));
  }
}

// tiles[R] is the R-row tile (R = 1 .. MR; the last block's remainder).
constexpr Tile kTilesAvx2[kMrAvx2 + 1] = {nullptr,      tile_avx2<1>, tile_avx2<2>, tile_avx2<3>,
                                          tile_avx2<4>, tile_avx2<5>, tile_avx2<6>};
constexpr Tile kTilesAvx512[kMrAvx512 + 1] = {
    nullptr,         tile_avx512<1>,  tile_avx512<2>, tile_avx512<3>, tile_avx512<4>,
    tile_avx512<5>,  tile_avx512<6>,  tile_avx512<7>, tile_avx512<8>, tile_avx512<9>,
    tile_avx512<10>, tile_avx512<11>, tile_avx512<12>};
static_assert(kBlockRows % kMrAvx2 == 0 && kBlockRows % kMrAvx512 == 0);

const Tile* tiles_for(CpuIsa isa) {
  return isa == CpuIsa::avx512 ? kTilesAvx512 : kTilesAvx2;
}

}  // namespace
#endif

SmallKWeight::SmallKWeight(int64_t N, int64_t K, const float* w, bool transposed, const float* bias)
    : N_(N), K_(K), isa_(cpu_isa()), pack_(nullptr, std::free) {
#ifdef LONGCTX_SMALL_K_GEMM
  const int64_t NR = isa_ == CpuIsa::avx512 ? kNrAvx512 : kNrAvx2;
  const int64_t panels = (N + NR - 1) / NR, Np = panels * NR;
  // The panels, then the bias padded to Np (64-byte aligned: NR floats are 64 bytes).
  const int64_t floats = Np * K + (bias ? Np : 0);
  pack_.reset(static_cast<float*>(std::aligned_alloc(64, size_t(floats) * sizeof(float))));
  LONGCTX_CHECK(pack_, "linear (CPU): out of memory allocating ", floats * sizeof(float),
                " bytes for the packed weight");
  float* wp = pack_.get();
  for (int64_t p = 0; p < panels; ++p) {
    float* panel = wp + p * NR * K;
    const int64_t n0 = p * NR, cols = std::min(NR, N - n0);
    if (transposed) {  // w (K, N): the panel's row k is w's row k, columns [n0, n0 + cols)
      for (int64_t k = 0; k < K; ++k) {
        std::copy(w + k * N + n0, w + k * N + n0 + cols, panel + k * NR);
        std::fill(panel + k * NR + cols, panel + (k + 1) * NR, 0.f);
      }
    } else {  // w (N, K): the panel's column j is w's row n0 + j
      // By 8 x 8 transposes in registers, not by rows k (strided reads) nor columns (scattered
      // writes): at N = 128, K = 384 (the down projection) 5.4 us hot and 41-48 cold (w and the
      // panels out of the caches) against 15 and 53-68 by rows, 31 hot by columns; 128 x 128
      // 1.3 and 14-15 against 4.9 and 18 (one thread, two runs, pack_probe.cpp). In the T = 256
      // llama prefill (the caller packs before the region, the other thread asleep; the pack
      // timed inside small_k_gemm, 11 prefills, 4 runs alternating, load 3.4-4.2) the 29 calls'
      // packs took 0.49-0.55 ms a prefill against 0.98-1.23 by rows (one pair 1.08 / 1.04).
      // 2-core Zen 4 VM, 2026-12-06.
      const float* wr = w + n0 * K;  // (cols, K)
      if (cols < NR) std::fill(panel, panel + NR * K, 0.f);
      int64_t j0 = 0;
      for (; j0 + 8 <= cols; j0 += 8) {
        int64_t k = 0;
        for (; k + 8 <= K; k += 8) transpose8x8(wr + j0 * K + k, K, panel + k * NR + j0, NR);
        for (; k < K; ++k)
          for (int64_t j = j0; j < j0 + 8; ++j) panel[k * NR + j] = wr[j * K + k];
      }
      for (int64_t k = 0; k < K; ++k)
        for (int64_t j = j0; j < cols; ++j) panel[k * NR + j] = wr[j * K + k];
    }
  }
  if (bias) {
    bias_ = wp + Np * K;
    std::copy(bias, bias + N, bias_);
    std::fill(bias_ + N, bias_ + Np, 0.f);
  }
#else
  (void)w, (void)transposed, (void)bias;
  LONGCTX_CHECK(false, "small_k_gemm: not built (no AVX2/FMA)");
#endif
}

void SmallKWeight::rows(const float* x, int64_t m0, int64_t m1, float* y) const {
#ifdef LONGCTX_SMALL_K_GEMM
  const Tile* tiles = tiles_for(isa_);
  const int64_t MR = isa_ == CpuIsa::avx512 ? kMrAvx512 : kMrAvx2;
  const int64_t NR = isa_ == CpuIsa::avx512 ? kNrAvx512 : kNrAvx2;
  const int64_t N = N_, K = K_;
  for (int64_t b0 = m0; b0 < m1; b0 += kBlockRows) {
    const int64_t b1 = std::min(m1, b0 + kBlockRows);
    for (int64_t n0 = 0; n0 < N; n0 += NR) {
      const int64_t cols = std::min(NR, N - n0);
      const float* panel = pack_.get() + n0 * K;
      const float* pb = bias_ ? bias_ + n0 : nullptr;
      for (int64_t m = b0; m < b1; m += MR)
        tiles[std::min(MR, b1 - m)](x + m * K, K, panel, pb, y + m * N + n0, N, cols);
    }
  }
#else
  (void)x, (void)m0, (void)m1, (void)y;
#endif
}

// Measured against OpenBLAS (its AVX-512 kernels, and with OPENBLAS_CORETYPE=Haswell its AVX2
// ones, against ours of the same width), linear_kernel_probe.cpp, 2 threads, CPU time ratios
// OpenBLAS / this (bench/results/2026-12-05-cpu-linear-kernel; 2-core AVX-512 dev VM, load
// 15-23):
// - the prefill's shapes, M = 4096, K = 128, 256, 384, forward: AVX-512 1.03-1.31, AVX2
//   1.03-1.34 (ops-run.txt, two runs); dx: AVX-512 1.07-1.41, AVX2 1.02-1.21 (dx-run.txt);
//   PyTorch's F.linear in the same runs / this (AVX-512): 0.88-1.14 without a bias, 1.31-1.45
//   with one (OpenBLAS was 0.79-1.05 of PyTorch without a bias);
// - M = 4096, N = 384, K = 32 ... 1024: AVX-512 0.92 (K = 32), 1.04-1.22 (64-1024); AVX2
//   1.06-1.40 up to K = 512, 1.00 at 768, 0.97 at 1024: so K <= 512;
// - M = 4096, K = 128, N = 1024-4096: AVX-512 1.25-1.27, AVX2 1.08-1.15; N = 8192 (a 4 MB packed
//   weight, out of L2 for every block of rows) 1.00 and 0.98: so a packed weight of at most
//   2 MB (N·K <= 2^19);
// - few rows, K = 128: M = 64 1.25-1.28 (AVX-512) and 0.86-1.45 (AVX2, two runs); M = 16 with
//   N = 128 0.81 in one run: so M >= 64 (fewer rows are batched decoding, where OpenBLAS's
//   split of the columns between threads reads the weight once).
bool use_small_k_gemm(int64_t M, int64_t N, int64_t K) {
#ifdef LONGCTX_SMALL_K_GEMM
  return M >= 64 && K <= 512 && N * K <= (int64_t(1) << 19);
#else
  (void)M, (void)N, (void)K;
  return false;
#endif
}

void small_k_gemm(const Context& ctx, int64_t M, int64_t N, int64_t K, const float* x,
                  const float* w, const float* bias, float* y) {
  const SmallKWeight packed(N, K, w, /*transposed=*/false, bias);
  const int64_t blocks = (M + kBlockRows - 1) / kBlockRows;
  auto block_rows = [&](int64_t block) {
    packed.rows(x, block * kBlockRows, std::min(M, (block + 1) * kBlockRows), y);
  };
  // Each thread its static share of the blocks (parallel_for's, so that the next op's
  // threads find their rows of y in their own caches), from the front; a thread done with its
  // own takes the next unclaimed blocks of the others'. So the caller works on while a
  // sleeping worker wakes (15-25 us under OMP_WAIT_POLICY=passive, of a 640 us call at
  // N = K = 128), and a worker descheduled on a loaded machine holds back only its block.
  // Against parallel_for's static split (bench/results/2026-12-06-cpu-small-k-gemm; 2-core
  // Zen 4 VM, both cores free, load 0.7-1.2): gemm_ab_probe.cpp, M = 4096, 2 threads, medians
  // of 15 alternating, 3 runs: wall 1.00-1.05x at 128 x 128, 1.04-1.08x at 64 x 128 (k, v),
  // 1.00-1.05x at 384 x 128, 1.00-1.04x at 128 x 384, the seven shapes' sum 1.00-1.04x, the
  // same bits; the T = 256 llama prefill, 10 runs alternating the two libraries: linear_fwd's
  // 29 calls 36.2 -> 35.4 ms wall (medians; pairs 0.94-1.12x), `bench scaling` prefill
  // 80.8k -> 82.0k tok/s, train 25.9k -> 26.1k (medians). Not kept: the caller packing w
  // inside the region while the workers wait for it by spinning, and the caller spinning for
  // the last block instead of sleeping at the region's end (to skip its wake-up): while
  // another process held a core, the medians of some runs were 1.5-4.4x slower than the base
  // (ab_calls_probe.cpp, spin-variants.txt.gz); this schedule alone at worst 1.2x there, and
  // 0.99-1.06x in 10 more runs.
  parallel_for_stealing(ctx, blocks, block_rows);
}

}  // namespace longctx::cpu
