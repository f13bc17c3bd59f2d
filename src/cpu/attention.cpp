// attention on the CPU: FlashAttention-style tiles with an online softmax; never a Tq x Tk matrix.
//
// Forward, per (batch, head, query tile of kBlockQ rows), over the key tiles the tile can see:
//   S = scale·Q·Kᵀ (log2 domain), m' = max(m, rowmax S), P = 2^(S − m'),
//   l = 2^(m − m')·l + rowsum P,  O = 2^(m − m')·O + P·V;  at the end O /= l, lse = (m + log2
//   l)·ln 2.
// Backward (FA2), with Di = rowsum(dO∘O) and P recomputed from lse:
//   dV += Pᵀ·dO, dP = dO·Vᵀ, dS = P∘(dP − Di) (∘ (1 − tanh²) under softcap),
//   dK += scale·dSᵀ·Q   — one owner per (batch, kv head, key tile);
//   dQ += scale·dS·K    — a second pass, one owner per (batch, head, query tile).
// Both passes own what they write, so the backward is deterministic for any thread count.
// Decode: split-KV over the cache, each split a normalised (O_s, lse_s), then
//   L = logsumexp_s lse_s, O = Σ_s e^(lse_s − L)·O_s.
//
// The tile matmuls go to OpenBLAS (its OpenMP build runs single-threaded inside our parallel
// region, which is what we want: the parallelism is over tiles). Extra memory per thread is a few
// tiles; the backward's only O(T) buffer is Di, (B, H, Tq).
//
// NaN and inf propagate as in the plain formulas summed over the visible pairs (the tests'
// reference): a NaN or +inf score makes its row's softmax NaN (exp2 carries NaN; +inf - +inf is
// NaN), a row whose visible scores are all -inf is NaN, and a row that sees no key has out = 0,
// lse = -inf. A masked position is never read: in a tile with masked entries whose operand (V, K,
// Q or dO rows) holds a non-finite value, the product skips the masked pairs instead of
// multiplying a masked 0 by it (masked_product; the finite case keeps the BLAS and packed
// kernels).
#include <cblas.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <type_traits>
#include <vector>

#include "src/core/dispatch.h"
#include "src/cpu/isa.h"
#include "src/cpu/parallel.h"  // parallel_for: loops without BLAS calls
#include "src/ops/attention.h"

namespace longctx::cpu {
namespace {

constexpr double kLog2e = 1.4426950408889634074;
constexpr double kLn2 = 0.6931471805599453094;

// Tile sizes. Measured on the 2-core AMD EPYC (Zen 3, AVX2) dev machine, f32, B=1, T=4096,
// H=8, D=64, non-causal forward: see the table in the commit adding them.
constexpr int64_t kBlockQ = 128;
constexpr int64_t kBlockK = 256;

// ---- Threads ----------------------------------------------------------------------------------

// body(i) for i in [0, n) on ctx.cpu_threads() threads, dynamically scheduled (tiles differ in
// cost under masks; heavy ones are numbered first). OpenBLAS's OpenMP build sizes its own thread
// team from the caller's nthreads ICV when not inside an active region — as in a 1-thread
// context — and its multithreaded sgemm rounds differently: setting the ICV to 1 in each worker
// keeps every tile matmul on its own thread, so results do not depend on the thread count.
template <class Body>
void parallel_tiles(const Context& ctx, int64_t n, Body&& body) {
#pragma omp parallel num_threads(ctx.cpu_threads())
  {
    omp_set_num_threads(1);
#pragma omp for schedule(dynamic, 1)
    for (int64_t i = 0; i < n; ++i) body(i);
  }
}

// A 64-byte aligned scratch buffer (BLAS and the vector loops see the same alignment every run).
template <class T>
struct Scratch {
  std::unique_ptr<T[], void (*)(void*)> p;
  explicit Scratch(int64_t n)
      : p(static_cast<T*>(std::aligned_alloc(64, size_t((n * int64_t(sizeof(T)) + 63) / 64 * 64))),
          std::free) {
    LONGCTX_CHECK(p, "attention (CPU): out of memory allocating ", n * sizeof(T), " bytes");
  }
  T* get() const { return p.get(); }
};

// ---- Tile matmuls: row-major C = alpha·op(A)·op(B) + beta·C ------------------------------------

inline void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                 const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                 int64_t ldc) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, int(m), int(n), int(k), alpha, a, int(lda), b,
              int(ldb), beta, c, int(ldc));
}
inline void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha,
                 const double* a, int64_t lda, const double* b, int64_t ldb, double beta, double* c,
                 int64_t ldc) {
  cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, int(m), int(n), int(k), alpha, a, int(lda), b,
              int(ldb), beta, c, int(ldc));
}

// ---- Hand-blocked f32 tile kernels (AVX2 + FMA) -----------------------------------------------
//
// The two forward matmuls on packed tiles. OpenBLAS on these small tiles (64 x 256 x 64) spent
// as long packing its operands as multiplying (perf: sgemm_kernel 48%, its copy routines 27%);
// here a key tile is packed once per query tile and both kernels keep a 6 x 16 block of the
// result in 12 registers.
#if defined(__AVX2__) && defined(__FMA__)
constexpr bool kPackedF32 = true;

// Six rows at a time with twelve named accumulators (GCC spilled an array of __m256 accumulators
// to the stack on every iteration, halving the kernel's speed). Rows past the end of a tile read
// row 0 and write to `sink`, so every row block runs the same code.
#define LONGCTX_ROWS6(X) X(0) X(1) X(2) X(3) X(4) X(5)

// s rows (16 columns each) = alpha · a rows (D each) · panel, panel (D, 16).
inline void abt_block6(const float* const* a, const float* panel, int64_t D, float alpha,
                       float* const* s) {
#define DECL(r) __m256 c##r##0 = _mm256_setzero_ps(), c##r##1 = _mm256_setzero_ps();
  LONGCTX_ROWS6(DECL)
#undef DECL
  for (int64_t d = 0; d < D; ++d) {
    const __m256 b0 = _mm256_load_ps(panel + d * 16), b1 = _mm256_load_ps(panel + d * 16 + 8);
#define STEP(r)                                     \
  {                                                 \
    const __m256 x = _mm256_broadcast_ss(a[r] + d); \
    c##r##0 = _mm256_fmadd_ps(x, b0, c##r##0);      \
    c##r##1 = _mm256_fmadd_ps(x, b1, c##r##1);      \
  }
    LONGCTX_ROWS6(STEP)
#undef STEP
  }
  const __m256 al = _mm256_set1_ps(alpha);
#define STORE(r)                                      \
  _mm256_storeu_ps(s[r], _mm256_mul_ps(c##r##0, al)); \
  _mm256_storeu_ps(s[r] + 8, _mm256_mul_ps(c##r##1, al));
  LONGCTX_ROWS6(STORE)
#undef STORE
}

// c rows (16 columns each) += p rows (nk each) · vp (nk rows, ld ldv; 16 columns).
inline void pv_block6(const float* const* p, const float* vp, int64_t ldv, int64_t nk,
                      float* const* c) {
#define DECL(r) __m256 c##r##0 = _mm256_loadu_ps(c[r]), c##r##1 = _mm256_loadu_ps(c[r] + 8);
  LONGCTX_ROWS6(DECL)
#undef DECL
  for (int64_t j = 0; j < nk; ++j) {
    const __m256 v0 = _mm256_load_ps(vp + j * ldv), v1 = _mm256_load_ps(vp + j * ldv + 8);
#define STEP(r)                                     \
  {                                                 \
    const __m256 x = _mm256_broadcast_ss(p[r] + j); \
    c##r##0 = _mm256_fmadd_ps(x, v0, c##r##0);      \
    c##r##1 = _mm256_fmadd_ps(x, v1, c##r##1);      \
  }
    LONGCTX_ROWS6(STEP)
#undef STEP
  }
#define STORE(r)                   \
  _mm256_storeu_ps(c[r], c##r##0); \
  _mm256_storeu_ps(c[r] + 8, c##r##1);
  LONGCTX_ROWS6(STORE)
#undef STORE
}

// AVX-512 versions of the two kernels, used when cpu_isa() says so (src/cpu/isa.h): a 6 x 32
// block of the result — two 16-key panels, or 32 columns of V — in twelve zmm registers. Per
// step 2 loads and 6 broadcasts feed 12 FMAs of 16 lanes where the AVX2 kernel's feed 12 of 8.
// Each element is the same chain of FMAs in the same order as in the AVX2 kernels (and the same
// final scaling), so the two give bitwise equal results. NP = 1: a last panel (16 columns) alone.
// Measured in one build (LONGCTX_CPU_ISA=avx2 against the default, alternating) on the 2-core
// Sapphire Rapids class dev machine, B=1 T=4096 H=8 D=64 f32, causal and not: 1.24x fewer CPU
// seconds for the forward (4.27 -> 3.43 s, best of 3 runs each, spread 2%), 1.23x for forward +
// backward (18.6 -> 15.1 s; the backward's dV, dK, dQ products stay in OpenBLAS); wall-clock
// 0.9-2.7x over the sweep at load 14 (bench/results/2026-12-05-cpu-peers/attention-isa-*).
template <int NP>
__attribute__((target("avx512f"))) void abt_block6_avx512(const float* const* a,
                                                          const float* panels, int64_t D,
                                                          float alpha, float* const* s) {
#define DECL(r) __m512 c##r##0 = _mm512_setzero_ps(), c##r##1 = _mm512_setzero_ps();
  LONGCTX_ROWS6(DECL)
#undef DECL
  const float* second = panels + 16 * D;  // the next panel (read only when NP == 2)
  for (int64_t d = 0; d < D; ++d) {
    const __m512 b0 = _mm512_loadu_ps(panels + d * 16);
    const __m512 b1 = NP == 2 ? _mm512_loadu_ps(second + d * 16) : b0;
#define STEP(r)                                                       \
  {                                                                   \
    const __m512 x = _mm512_set1_ps(a[r][d]);                         \
    c##r##0 = _mm512_fmadd_ps(x, b0, c##r##0);                        \
    if constexpr (NP == 2) c##r##1 = _mm512_fmadd_ps(x, b1, c##r##1); \
  }
    LONGCTX_ROWS6(STEP)
#undef STEP
  }
  const __m512 al = _mm512_set1_ps(alpha);
#define STORE(r)                                      \
  _mm512_storeu_ps(s[r], _mm512_mul_ps(c##r##0, al)); \
  if constexpr (NP == 2) _mm512_storeu_ps(s[r] + 16, _mm512_mul_ps(c##r##1, al));
  LONGCTX_ROWS6(STORE)
#undef STORE
}

// c rows (16·NV columns each) += p rows (nk each) · vp (nk rows, ld ldv; 16·NV columns).
template <int NV>
__attribute__((target("avx512f"))) void pv_block6_avx512(const float* const* p, const float* vp,
                                                         int64_t ldv, int64_t nk, float* const* c) {
#define DECL(r)                           \
  __m512 c##r##0 = _mm512_loadu_ps(c[r]); \
  __m512 c##r##1 = NV == 2 ? _mm512_loadu_ps(c[r] + 16) : c##r##0;
  LONGCTX_ROWS6(DECL)
#undef DECL
  for (int64_t j = 0; j < nk; ++j) {
    const __m512 v0 = _mm512_loadu_ps(vp + j * ldv);
    const __m512 v1 = NV == 2 ? _mm512_loadu_ps(vp + j * ldv + 16) : v0;
#define STEP(r)                                                       \
  {                                                                   \
    const __m512 x = _mm512_set1_ps(p[r][j]);                         \
    c##r##0 = _mm512_fmadd_ps(x, v0, c##r##0);                        \
    if constexpr (NV == 2) c##r##1 = _mm512_fmadd_ps(x, v1, c##r##1); \
  }
    LONGCTX_ROWS6(STEP)
#undef STEP
  }
#define STORE(r)                   \
  _mm512_storeu_ps(c[r], c##r##0); \
  if constexpr (NV == 2) _mm512_storeu_ps(c[r] + 16, c##r##1);
  LONGCTX_ROWS6(STORE)
#undef STORE
}
#undef LONGCTX_ROWS6

// Row pointers of block [r, r + 6) of an n-row operand: past the end, `pad`.
template <class P>
inline void block_rows(P* rows, P base, int64_t ld, int64_t r, int64_t n, P pad) {
  for (int64_t x = 0; x < 6; ++x) rows[x] = r + x < n ? base + (r + x) * ld : pad;
}
#else
constexpr bool kPackedF32 = false;
#endif

// The forward's two tile matmuls, S = alpha·A·Bᵀ and C += P·V, for tiles of up to kBlockK keys.
// C has leading dim ldc() (D rounded up to 16; the extra columns are scratch).
template <class T>
struct TileMatmul {
  static constexpr bool kPacked = kPackedF32 && std::is_same_v<T, float>;
  int64_t D, D16;
  Scratch<T> pack;  // kBlockK x D16: B as panels (D, 16), or V as rows of D16
  // What `pack` holds, so a tile used again (the backward's key tile against every query tile)
  // is packed once.
  const T* packed_from = nullptr;
  int64_t packed_rows = 0;
  bool packed_as_panels = false;

  explicit TileMatmul(int64_t D_) : D(D_), D16((D_ + 15) / 16 * 16), pack(kBlockK * D16) {}
  bool reuse(const T* src, int64_t rows, bool panels) {
    if (src == packed_from && rows == packed_rows && panels == packed_as_panels) return true;
    packed_from = src;
    packed_rows = rows;
    packed_as_panels = panels;
    return false;
  }
  int64_t ldc() const { return D16; }

  // Packs rows [0, nk) of b (ld ldb) as panels (D, 16), zero-padded to a multiple of 16 rows.
  static void pack_panels(const T* b, int64_t ldb, int64_t nk, int64_t D, T* panels) {
    for (int64_t j0 = 0; j0 < nk; j0 += 16) {
      T* panel = panels + j0 * D;
      const int64_t w = std::min<int64_t>(16, nk - j0);
      if (w < 16) std::fill(panel, panel + D * 16, T(0));
      for (int64_t j = 0; j < w; ++j)
        for (int64_t d = 0; d < D; ++d) panel[d * 16 + j] = b[(j0 + j) * ldb + d];
    }
  }
  // Packs rows [0, nk) of v (ld ldv) as rows of D16, zero-padded.
  static void pack_rows(const T* v, int64_t ldv, int64_t nk, int64_t D, int64_t D16, T* rows) {
    for (int64_t j = 0; j < nk; ++j) {
      std::copy(v + j * ldv, v + j * ldv + D, rows + j * D16);
      std::fill(rows + j * D16 + D, rows + (j + 1) * D16, T(0));
    }
  }

  // S (n x nk, ld lds >= nk rounded up to 16) = alpha · a (n x D) · b (nk x D)ᵀ. With `panels`
  // (b already packed by pack_panels) b is not read.
  void abt(const T* a, int64_t lda, const T* b, int64_t ldb, int64_t n, int64_t nk, T alpha, T* S,
           int64_t lds, const T* panels = nullptr) {
    if constexpr (kPacked) {
      if (!panels) {
        if (!reuse(b, nk, /*panels=*/true)) pack_panels(b, ldb, nk, D, pack.get());
        panels = pack.get();
      }
      alignas(64) float sink[32];
      const float* arows[6];
      float* srows[6];
      if (cpu_isa() == CpuIsa::avx512) {
        for (int64_t j0 = 0; j0 < nk; j0 += 32)
          for (int64_t r = 0; r < n; r += 6) {
            block_rows(arows, a, lda, r, n, a);
            block_rows(srows, S + j0, lds, r, n, static_cast<float*>(sink));
            if (j0 + 16 < nk)
              abt_block6_avx512<2>(arows, panels + j0 * D, D, alpha, srows);
            else
              abt_block6_avx512<1>(arows, panels + j0 * D, D, alpha, srows);
          }
        return;
      }
      for (int64_t j0 = 0; j0 < nk; j0 += 16)
        for (int64_t r = 0; r < n; r += 6) {
          block_rows(arows, a, lda, r, n, a);
          block_rows(srows, S + j0, lds, r, n, static_cast<float*>(sink));
          abt_block6(arows, panels + j0 * D, D, alpha, srows);
        }
    } else {
      gemm(false, true, n, nk, D, alpha, a, lda, b, ldb, T(0), S, lds);
    }
  }

  // c (n x D, ld ldc()) += p (n x nk) · v (nk x D). With `rows` (v already packed by pack_rows)
  // v is not read.
  void pv(const T* p, int64_t ldp, const T* v, int64_t ldv, int64_t n, int64_t nk, T* c,
          const T* rows = nullptr) {
    if constexpr (kPacked) {
      if (!rows) {
        if (!reuse(v, nk, /*panels=*/false)) pack_rows(v, ldv, nk, D, D16, pack.get());
        rows = pack.get();
      }
      alignas(64) float sink[32] = {};
      const float* prows[6];
      float* crows[6];
      if (cpu_isa() == CpuIsa::avx512) {
        for (int64_t r = 0; r < n; r += 6) {
          block_rows(prows, p, ldp, r, n, p);
          for (int64_t d0 = 0; d0 < D16; d0 += 32) {
            block_rows(crows, c + d0, D16, r, n, static_cast<float*>(sink));
            if (d0 + 16 < D16)
              pv_block6_avx512<2>(prows, rows + d0, D16, nk, crows);
            else
              pv_block6_avx512<1>(prows, rows + d0, D16, nk, crows);
          }
        }
        return;
      }
      for (int64_t r = 0; r < n; r += 6) {
        block_rows(prows, p, ldp, r, n, p);
        for (int64_t d0 = 0; d0 < D16; d0 += 16) {
          block_rows(crows, c + d0, D16, r, n, static_cast<float*>(sink));
          pv_block6(prows, rows + d0, D16, nk, crows);
        }
      }
    } else {
      gemm(false, false, n, D, nk, T(1), p, ldp, v, ldv, T(1), c, D16);
    }
  }
};

// K and V of one (batch, kv head) packed once for the whole sequence (f32 fast path): key j's
// panel row at k_panels + j * D (j a multiple of 16), its value row at v_rows + j * D16. Packing
// per query tile instead cost a quarter of the forward (strided K rows missing cache each time).
template <class T>
struct PackedKV {
  const T* k_panels = nullptr;
  const T* v_rows = nullptr;
};

// ---- 2^x for the softmax --------------------------------------------------------------------

// 2^x in f32 for the x <= 0 of a softmax (score minus a running max); exactly 0 below 2^-125 and
// for -inf (masked scores). x = n + f with |f| <= 1/2; 2^f by its degree-7 Taylor polynomial
// (truncation 5e-9, below f32 rounding); 2^n added to the exponent bits. libm's exp2f does not
// vectorise without -ffast-math: the scalar softmax took as long as the two matmuls.
constexpr float kExp2Poly[] = {1.5252733804059841e-05f, 1.5403530393381609e-04f,
                               1.3333558146428443e-03f, 9.6181291076284772e-03f,
                               5.5504108664821580e-02f, 2.4022650695910071e-01f,
                               6.9314718055994531e-01f, 1.0f};  // ln2^k / k!, k = 7 .. 0

#if defined(__AVX2__) && defined(__FMA__)
inline __m256 exp2_ps(__m256 x) {
  const __m256 lo = _mm256_set1_ps(-125.f);
  // The clamps return their second operand when one is NaN: a NaN x stays NaN through them and
  // the polynomial (the exponent bits added are then 0), so exp2(NaN) = NaN at no extra cost.
  const __m256 xc = _mm256_min_ps(_mm256_set1_ps(127.f), _mm256_max_ps(lo, x));
  const __m256 n = _mm256_round_ps(xc, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 f = _mm256_sub_ps(xc, n);
  __m256 p = _mm256_set1_ps(kExp2Poly[0]);
  for (int c = 1; c < 8; ++c) p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kExp2Poly[c]));
  const __m256i e = _mm256_slli_epi32(_mm256_cvtps_epi32(n), 23);
  const __m256 r = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), e));
  // 0 below 2^-125 and for -inf (an ordered comparison: false for NaN, which passes).
  return _mm256_andnot_ps(_mm256_cmp_ps(x, lo, _CMP_LT_OQ), r);
}
// The last n % 8 elements go through the same vector code (padded with -inf), so every element
// and every sum is computed the same way whatever the row's length and alignment.
inline __m256 load_tail(const float* s, int64_t n) {
  alignas(32) float buf[8];
  for (int j = 0; j < 8; ++j) buf[j] = j < n ? s[j] : -INFINITY;
  return _mm256_load_ps(buf);
}
inline void store_tail(float* s, int64_t n, __m256 x) {
  alignas(32) float buf[8];
  _mm256_store_ps(buf, x);
  for (int j = 0; j < n; ++j) s[j] = buf[j];
}
#endif

inline float exp2_scalar(float x) {
  if (std::isnan(x)) return x;
  const float xc = std::min(std::max(x, -125.f), 127.f);
  const float n = std::nearbyint(xc);
  const float f = xc - n;
  float p = kExp2Poly[0];
  for (int c = 1; c < 8; ++c) p = p * f + kExp2Poly[c];
  const uint32_t bits = float_to_bits(p) + uint32_t(int32_t(n) * (1 << 23));
  return x < -125.f ? 0.f : bits_to_float(bits);
}

// max(a, b), NaN if either is (std::max keeps `a` when `b` is NaN).
template <class T>
T nan_max(T a, T b) {
  return a != a || b != b ? std::numeric_limits<T>::quiet_NaN() : std::max(a, b);
}

// max_j s[j] (-inf for an empty or fully masked row). NaN entries are skipped or not (maxps
// keeps its second operand): a row with a NaN is NaN through exp2 whatever its max, so the only
// case to catch is a max of -inf (see attend_rows).
template <class T>
T row_max(const T* s, int64_t n) {
  T mx = -std::numeric_limits<T>::infinity();
  int64_t j = 0;
#if defined(__AVX2__) && defined(__FMA__)
  if constexpr (std::is_same_v<T, float>) {
    __m256 m8 = _mm256_set1_ps(-INFINITY);
    for (; j + 8 <= n; j += 8) m8 = _mm256_max_ps(m8, _mm256_loadu_ps(s + j));
    alignas(32) float buf[8];
    _mm256_store_ps(buf, m8);
    for (float x : buf) mx = std::max(mx, x);
  }
#endif
  for (; j < n; ++j) mx = std::max(mx, s[j]);
  return mx;
}

template <class T>
bool has_nan(const T* s, int64_t n) {
  return std::any_of(s, s + n, [](T x) { return x != x; });
}

// Whether every entry of rows x cols (leading dim ld) is finite: x · 0 is 0 for a finite x and
// NaN for inf or NaN, and the sum of those is a vector reduction (one multiply-add per element,
// ~1/100 of a masked tile's products).
template <class T>
bool all_finite(const T* x, int64_t rows, int64_t cols, int64_t ld) {
  T acc = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const T* row = x + r * ld;
#pragma omp simd reduction(+ : acc)
    for (int64_t c = 0; c < cols; ++c) acc += row[c] * T(0);
  }
  return acc == T(0);
}

// s[j] = 2^(s[j] − m) in place; returns the sum, in an order fixed by n alone (deterministic).
template <class T>
T exp2_shifted(T* s, int64_t n, T m) {
  if constexpr (std::is_same_v<T, float>) {
#if defined(__AVX2__) && defined(__FMA__)
    const __m256 m8 = _mm256_set1_ps(m);
    __m256 sum8 = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
      const __m256 p = exp2_ps(_mm256_sub_ps(_mm256_loadu_ps(s + j), m8));
      _mm256_storeu_ps(s + j, p);
      sum8 = _mm256_add_ps(sum8, p);
    }
    if (j < n) {
      const __m256 p = exp2_ps(_mm256_sub_ps(load_tail(s + j, n - j), m8));
      store_tail(s + j, n - j, p);
      sum8 = _mm256_add_ps(sum8, p);
    }
    alignas(32) float buf[8];
    _mm256_store_ps(buf, sum8);
    return ((buf[0] + buf[4]) + (buf[1] + buf[5])) + ((buf[2] + buf[6]) + (buf[3] + buf[7]));
#else
    float sum = 0;
    for (int64_t j = 0; j < n; ++j) sum += (s[j] = exp2_scalar(s[j] - m));
    return sum;
#endif
  } else {
    T sum = 0;
    for (int64_t j = 0; j < n; ++j) sum += (s[j] = std::exp2(s[j] - m));
    return sum;
  }
}

// ---- Masking --------------------------------------------------------------------------------

// The visible band, bottom-right aligned: query i sees key j iff lo(i) <= j < hi(i), with
//   lo(i) = i + Tk − Tq − left,  hi(i) = i + Tk − Tq + right + 1,  both clamped to [0, Tk].
// lo and hi never decrease with i, so the keys a query tile sees form one interval (each row's
// interval overlaps the next one's), and so do the queries that see a key tile.
struct Band {
  static constexpr int64_t kUnbounded = int64_t(1) << 40;  // a window side of -1
  int64_t Tq, Tk, left, right;

  Band(int64_t Tq_, int64_t Tk_, const AttentionArgs& a) : Tq(Tq_), Tk(Tk_) {
    left = a.window_left < 0 ? kUnbounded : a.window_left;
    right = a.window_right < 0 ? kUnbounded : a.window_right;
  }
  int64_t lo(int64_t i) const { return std::clamp(i + Tk - Tq - left, int64_t(0), Tk); }
  int64_t hi(int64_t i) const { return std::clamp(i + Tk - Tq + right + 1, int64_t(0), Tk); }
  // The queries that see some key of [j0, j1): [first_query(j0), end_query(j1)).
  int64_t first_query(int64_t j0) const {
    return std::clamp(j0 - (Tk - Tq) - right, int64_t(0), Tq);
  }
  int64_t end_query(int64_t j1) const { return std::clamp(j1 - (Tk - Tq) + left, int64_t(0), Tq); }
  // Every (i, j) of rows [i0, i1) x keys [j0, j1) is visible: no element mask needed.
  bool full(int64_t i0, int64_t i1, int64_t j0, int64_t j1) const {
    return j0 >= lo(i1 - 1) && j1 <= hi(i0);
  }
  // Query i sees key j (and j is not below `first`, another split's key in decode).
  bool sees(int64_t i, int64_t j, int64_t first = 0) const {
    return j >= std::max(lo(i), first) && j < hi(i);
  }
  // Query i sees some key of [kb, ke).
  bool sees_any(int64_t i, int64_t kb, int64_t ke) const {
    return std::max(lo(i), kb) < std::min(hi(i), ke);
  }
  // Sets the invisible entries of row i (keys j0 .. j0 + nk) of a tile to `fill` (-inf for
  // scores, 0 for probabilities and their gradients), and those of keys below `first`.
  template <class T>
  void mask_row(T* s, int64_t i, int64_t j0, int64_t nk, int64_t first = 0,
                T fill = -std::numeric_limits<T>::infinity()) const {
    const int64_t a = std::clamp(std::max(lo(i), first) - j0, int64_t(0), nk);
    const int64_t e = std::clamp(hi(i) - j0, a, nk);
    std::fill(s, s + a, fill);
    std::fill(s + e, s + nk, fill);
  }
};

// c += alpha · w · x over the visible pairs of a tile only — the product for a tile with masked
// entries whose operand x holds a non-finite value (a BLAS product would read the masked
// positions: 0 · NaN is NaN). w is the (n x nk) tile of query rows i0.. by keys j0.., leading dim
// ldw. by_query: c (n x D) += alpha w x with x (nk x D), as P·V and dS·K; otherwise c (nk x D)
// += alpha wᵀ x with x (n x D), as Pᵀ·dO and dSᵀ·Q.
template <class T>
void masked_product(bool by_query, const Band& band, int64_t i0, int64_t n, int64_t j0, int64_t nk,
                    int64_t first, T alpha, const T* w, int64_t ldw, const T* x, int64_t ldx,
                    int64_t D, T* c, int64_t ldc) {
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = 0; j < nk; ++j) {
      if (!band.sees(i0 + r, j0 + j, first)) continue;
      const T weight = alpha * w[r * ldw + j];
      T* out = c + (by_query ? r : j) * ldc;
      const T* in = x + (by_query ? j : r) * ldx;
      for (int64_t d = 0; d < D; ++d) out[d] += weight * in[d];
    }
}

// Scores in the log2 domain: s = log2e · softcap(scale · q·k).
template <class T>
struct Scores {
  T scale;    // softmax_scale, resolved
  T softcap;  // 0: off

  explicit Scores(const AttentionArgs& a) : scale(T(a.scale)), softcap(T(a.softcap)) {}

  // S (n x nk, leading dim ld) = log2e · softcap(scale · Q·Kᵀ). With softcap, `dcap` (same
  // layout) receives its derivative 1 − tanh² when given.
  void compute(TileMatmul<T>& mm, const T* q, int64_t ldq, const T* k, int64_t ldk, int64_t n,
               int64_t nk, T* S, int64_t ld, T* dcap = nullptr, const T* k_panels = nullptr) const {
    if (softcap == T(0)) {
      mm.abt(q, ldq, k, ldk, n, nk, T(scale * kLog2e), S, ld, k_panels);
      return;
    }
    mm.abt(q, ldq, k, ldk, n, nk, scale, S, ld, k_panels);
    const T inv_cap = T(1) / softcap, cap2 = T(softcap * kLog2e);
    for (int64_t r = 0; r < n; ++r) {
      T* s = S + r * ld;
      for (int64_t j = 0; j < nk; ++j) {
        const T t = std::tanh(s[j] * inv_cap);
        s[j] = cap2 * t;
        if (dcap) dcap[r * ld + j] = T(1) - t * t;
      }
    }
  }
};

// ---- Forward tile ---------------------------------------------------------------------------

// Query rows [i0, i0 + n) of one (batch, head) against keys [kb, ke) ∩ visible. Writes the
// normalised output rows (leading dim ldo) and lse (natural log, contiguous over rows): out = 0,
// lse = -inf for a row that sees no key in the range.
template <class T>
void attend_rows(const T* q, int64_t ldq, const T* k, const T* v, int64_t ldkv, int64_t D,
                 const Band& band, const Scores<T>& scores, int64_t i0, int64_t n, int64_t kb,
                 int64_t ke, T* out, int64_t ldo, T* lse, const PackedKV<T>& packed = {}) {
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
  TileMatmul<T> mm(D);
  const int64_t ldo_acc = mm.ldc();
  const Scratch<T> work(kBlockQ * kBlockK + kBlockQ * ldo_acc + 2 * kBlockQ);
  T* S = work.get();             // (kBlockQ, kBlockK) scores, then probabilities
  T* O = S + kBlockQ * kBlockK;  // (kBlockQ, ldo_acc) unnormalised output
  T* m = O + kBlockQ * ldo_acc;  // (kBlockQ) running max, log2 domain
  T* l = m + kBlockQ;            // (kBlockQ) running sum
  std::fill(O, O + n * ldo_acc, T(0));
  std::fill(m, m + n, kNegInf);
  std::fill(l, l + n, T(0));

  const int64_t i1 = i0 + n;
  int64_t k_begin = std::max(kb, band.lo(i0));
  const int64_t k_end = std::min(ke, band.hi(i1 - 1));
  if (packed.k_panels) k_begin = k_begin / 16 * 16;  // panels start at multiples of 16
  for (int64_t j0 = k_begin; j0 < k_end; j0 += kBlockK) {
    const int64_t nk = std::min(kBlockK, k_end - j0);
    scores.compute(mm, q + i0 * ldq, ldq, k + j0 * ldkv, ldkv, n, nk, S, kBlockK,
                   /*dcap=*/nullptr, packed.k_panels ? packed.k_panels + j0 * D : nullptr);
    const bool masked = j0 < kb || !band.full(i0, i1, j0, j0 + nk);
    for (int64_t r = 0; r < n; ++r) {
      T* s = S + r * kBlockK;
      if (masked) band.mask_row(s, i0 + r, j0, nk, kb);
      // A NaN running max stays NaN (std::max keeps its first operand then).
      T m_new = std::max(m[r], row_max(s, nk));
      if (m_new == kNegInf) {
        if (!has_nan(s, nk)) {  // no visible key so far (or only -inf scores): nothing to add
          std::fill(s, s + nk, T(0));
          continue;
        }
        m_new = std::numeric_limits<T>::quiet_NaN();  // a NaN score among -inf ones
      }
      const T alpha = m[r] == kNegInf ? T(0) : T(std::exp2(m[r] - m_new));
      l[r] = l[r] * alpha + exp2_shifted(s, nk, m_new);
      m[r] = m_new;
      if (alpha != T(1)) {
        T* o = O + r * ldo_acc;
        for (int64_t d = 0; d < D; ++d) o[d] *= alpha;
      }
    }
    if (masked && !all_finite(v + j0 * ldkv, nk, D, ldkv))
      masked_product(/*by_query=*/true, band, i0, n, j0, nk, kb, T(1), S, kBlockK, v + j0 * ldkv,
                     ldkv, D, O, ldo_acc);
    else
      mm.pv(S, kBlockK, v + j0 * ldkv, ldkv, n, nk, O,
            packed.v_rows ? packed.v_rows + j0 * mm.ldc() : nullptr);
  }

  // l = 0: no finite weight. A row that sees keys of [kb, ke) whose scores were all -inf is NaN
  // (exp(-inf - -inf)) when this is its whole range; for a decode split the combine decides.
  const bool whole_row = kb == 0 && ke == band.Tk;
  for (int64_t r = 0; r < n; ++r) {
    T* o = out + (i0 + r) * ldo;
    if (l[r] == T(0)) {
      const bool nan = whole_row && band.sees_any(i0 + r, kb, ke);
      std::fill(o, o + D, nan ? std::numeric_limits<T>::quiet_NaN() : T(0));
      lse[r] = nan ? std::numeric_limits<T>::quiet_NaN() : kNegInf;
      continue;
    }
    const T inv = T(1) / l[r];
    for (int64_t d = 0; d < D; ++d) o[d] = O[r * ldo_acc + d] * inv;
    lse[r] = T((double(m[r]) + std::log2(double(l[r]))) * kLn2);
  }
}

// Where sequence s's rows of head h start in lse (and in the backward's Di, laid out alike):
// (B, H, Tq) for a rectangular batch, (1, H, Tq) with the sequence at its first query for a
// packed one.
template <class T>
T* lse_rows(T* lse, const AttentionArgs& a, int64_t s, int64_t h) {
  return a.seqs_q.packed() ? lse + h * a.Tq + a.seqs_q.begin(s) : lse + (s * a.H + h) * a.Tq;
}

// The (sequence, tile) pairs of a batch: every sequence's tiles of `block` rows of queries
// (by_query) or of keys, so that a packed batch's work is its sequences' and no more.
std::vector<std::pair<int64_t, int64_t>> tiles_of(const AttentionArgs& a, bool by_query,
                                                  int64_t block) {
  const Sequences& seqs = by_query ? a.seqs_q : a.seqs_k;
  std::vector<std::pair<int64_t, int64_t>> tiles;
  for (int64_t s = 0; s < seqs.count; ++s)
    for (int64_t t = 0; t * block < seqs.length(s); ++t) tiles.emplace_back(s, t);
  return tiles;
}

template <class T>
void fwd_impl(const Context& ctx, const AttentionArgs& a) {
  const int64_t H = a.H, D = a.D, Hkv = a.Hkv, group = H / Hkv;
  const Scores<T> scores(a);
  const T* qp = static_cast<const T*>(a.q);
  const T* kp = static_cast<const T*>(a.k);
  const T* vp = static_cast<const T*>(a.v);
  T* op = static_cast<T*>(a.out);
  T* lp = static_cast<T*>(a.lse);
  // f32: K and V of every (sequence, kv head) packed once, read by all of its query tiles.
  const int64_t D16 = (D + 15) / 16 * 16;
  const bool prepack = TileMatmul<T>::kPacked;
  std::vector<int64_t> panel_at(size_t(a.seqs_k.count) + 1, 0), row_at = panel_at;
  for (int64_t s = 0; s < a.seqs_k.count; ++s) {
    const int64_t Tk = a.seqs_k.length(s);
    panel_at[size_t(s) + 1] = panel_at[size_t(s)] + Hkv * ((Tk + 15) / 16 * 16) * D;
    row_at[size_t(s) + 1] = row_at[size_t(s)] + Hkv * Tk * D16;
  }
  const Scratch<T> k_panels(prepack ? std::max<int64_t>(panel_at.back(), 1) : 1);
  const Scratch<T> v_rows(prepack ? std::max<int64_t>(row_at.back(), 1) : 1);
  // Sequence s, kv head hk: its key panels and value rows.
  auto panels_of = [&](int64_t s, int64_t hk) {
    const int64_t Tk16 = (a.seqs_k.length(s) + 15) / 16 * 16;
    return k_panels.get() + panel_at[size_t(s)] + hk * Tk16 * D;
  };
  auto rows_of = [&](int64_t s, int64_t hk) {
    return v_rows.get() + row_at[size_t(s)] + hk * a.seqs_k.length(s) * D16;
  };
  if (prepack) {
    const auto key_tiles = tiles_of(a, /*by_query=*/false, kBlockK);
    parallel_for(ctx, int64_t(key_tiles.size()) * Hkv, [&](int64_t item) {
      const auto [s, tile] = key_tiles[size_t(item / Hkv)];
      const int64_t hk = item % Hkv, j0 = tile * kBlockK;
      const int64_t nk = std::min(kBlockK, a.seqs_k.length(s) - j0);
      const T* kh = kp + ((a.seqs_k.begin(s) + j0) * Hkv + hk) * D;
      const T* vh = vp + ((a.seqs_k.begin(s) + j0) * Hkv + hk) * D;
      TileMatmul<T>::pack_panels(kh, Hkv * D, nk, D, panels_of(s, hk) + j0 * D);
      TileMatmul<T>::pack_rows(vh, Hkv * D, nk, D, D16, rows_of(s, hk) + j0 * D16);
    });
  }
  // Under a causal mask the last query tiles of a sequence see the most keys; they go first.
  auto query_tiles = tiles_of(a, /*by_query=*/true, kBlockQ);
  std::reverse(query_tiles.begin(), query_tiles.end());
  parallel_tiles(ctx, int64_t(query_tiles.size()) * H, [&](int64_t item) {
    const auto [s, tile] = query_tiles[size_t(item / H)];
    const int64_t h = item % H, hk = h / group;
    const int64_t Tq = a.seqs_q.length(s), Tk = a.seqs_k.length(s);
    const int64_t q0 = a.seqs_q.begin(s), k0 = a.seqs_k.begin(s);
    const int64_t i0 = tile * kBlockQ, n = std::min(kBlockQ, Tq - i0);
    attend_rows(qp + (q0 * H + h) * D, H * D, kp + (k0 * Hkv + hk) * D, vp + (k0 * Hkv + hk) * D,
                Hkv * D, D, Band(Tq, Tk, a), scores, i0, n, int64_t(0), Tk, op + (q0 * H + h) * D,
                H * D, lse_rows(lp, a, s, h) + i0,
                prepack && Tk > 0 ? PackedKV<T>{panels_of(s, hk), rows_of(s, hk)} : PackedKV<T>{});
  });
}

// ---- Backward -------------------------------------------------------------------------------

// One (query rows, key rows) tile of the backward: P from lse, then dS.
template <class T>
struct BwdTile {
  TileMatmul<T> mm_k, mm_v;  // one each, so a key tile met again is not packed again
  Scratch<T> buf;
  T *P, *dS, *dcap;  // (kBlockQ, kBlockK) each

  bool masked = false;  // the last tile computed has entries some row does not see

  explicit BwdTile(int64_t D) : mm_k(D), mm_v(D), buf(3 * kBlockQ * kBlockK) {
    P = buf.get();
    dS = P + kBlockQ * kBlockK;
    dcap = dS + kBlockQ * kBlockK;
  }

  // Rows [i0, i0 + n) of q/dout/lse/Di (pointers at row 0 of the head), keys [j0, j0 + nk).
  void compute(const T* q, const T* dout, int64_t ldq, const T* k, const T* v, int64_t ldkv,
               const T* lse, const T* Di, const Band& band, const Scores<T>& scores, int64_t i0,
               int64_t n, int64_t j0, int64_t nk) {
    constexpr int64_t ld = kBlockK;
    const bool capped = scores.softcap != T(0);
    scores.compute(mm_k, q + i0 * ldq, ldq, k + j0 * ldkv, ldkv, n, nk, P, ld,
                   capped ? dcap : nullptr);
    masked = !band.full(i0, i0 + n, j0, j0 + nk);
    for (int64_t r = 0; r < n; ++r) {
      T* p = P + r * ld;
      const T l2 = lse[i0 + r] * T(kLog2e);
      if (l2 == -std::numeric_limits<T>::infinity()) {  // a row that sees no key: P = 0
        std::fill(p, p + nk, T(0));
        continue;
      }
      exp2_shifted(p, nk, l2);  // NaN everywhere for a NaN row, as the forward's
      // Masked after the exp: exp2(-inf - NaN) would be NaN where P must be 0.
      if (masked) band.mask_row(p, i0 + r, j0, nk, 0, T(0));
    }
    // dS = dO·Vᵀ, then P∘(dS − Di)(∘ dcap).
    mm_v.abt(dout + i0 * ldq, ldq, v + j0 * ldkv, ldkv, n, nk, T(1), dS, ld);
    for (int64_t r = 0; r < n; ++r) {
      const T* p = P + r * ld;
      T* ds = dS + r * ld;
      const T di = Di[i0 + r];
      if (capped) {
        const T* g = dcap + r * ld;
#pragma omp simd
        for (int64_t j = 0; j < nk; ++j) ds[j] = p[j] * (ds[j] - di) * g[j];
      } else {
#pragma omp simd
        for (int64_t j = 0; j < nk; ++j) ds[j] = p[j] * (ds[j] - di);
      }
      // dS = 0 where the row does not see the key, even when dP there is NaN (a NaN value row
      // or dout row) or Di is.
      if (masked) band.mask_row(ds, i0 + r, j0, nk, 0, T(0));
    }
  }
};

template <class T>
void bwd_impl(const Context& ctx, const AttentionArgs& a) {
  const int64_t H = a.H, D = a.D, Hkv = a.Hkv, group = H / Hkv;
  const Scores<T> scores(a);
  const T* qp = static_cast<const T*>(a.q);
  const T* kp = static_cast<const T*>(a.k);
  const T* vp = static_cast<const T*>(a.v);
  const T* op = static_cast<const T*>(a.out);
  const T* dop = static_cast<const T*>(a.dout);
  T* lp = static_cast<T*>(a.lse);
  T* dqp = static_cast<T*>(a.dq);
  T* dkp = static_cast<T*>(a.dk);
  T* dvp = static_cast<T*>(a.dv);

  // Di = rowsum(dO ∘ O), laid out like lse.
  std::vector<T> Di(size_t(a.B * H * a.Tq));
  parallel_for(ctx, a.seqs_q.count * H, [&](int64_t sh) {
    const int64_t s = sh / H, h = sh % H, q0 = a.seqs_q.begin(s);
    T* di = lse_rows(Di.data(), a, s, h);
    for (int64_t i = 0; i < a.seqs_q.length(s); ++i) {
      const T* o = op + ((q0 + i) * H + h) * D;
      const T* d_o = dop + ((q0 + i) * H + h) * D;
      T sum = 0;
      for (int64_t d = 0; d < D; ++d) sum += o[d] * d_o[d];
      di[i] = sum;
    }
  });

  // dK, dV: one owner per (sequence, kv head, key tile), looping over the group's query heads.
  const auto key_tiles = tiles_of(a, /*by_query=*/false, kBlockK);
  parallel_tiles(ctx, int64_t(key_tiles.size()) * Hkv, [&](int64_t item) {
    const auto [s, tile] = key_tiles[size_t(item / Hkv)];
    const int64_t hk = item % Hkv;
    const int64_t Tq = a.seqs_q.length(s), Tk = a.seqs_k.length(s);
    const int64_t q0 = a.seqs_q.begin(s), k0 = a.seqs_k.begin(s);
    const Band band(Tq, Tk, a);
    const int64_t j0 = tile * kBlockK, nk = std::min(kBlockK, Tk - j0);
    const T* kh = kp + (k0 * Hkv + hk) * D;
    const T* vh = vp + (k0 * Hkv + hk) * D;
    const Scratch<T> acc(2 * nk * D);
    T* dk_acc = acc.get();  // (nk, D)
    std::fill(dk_acc, dk_acc + 2 * nk * D, T(0));
    T* dv_acc = dk_acc + nk * D;  // (nk, D)
    BwdTile<T> t(D);
    const int64_t q_begin = band.first_query(j0), q_end = band.end_query(j0 + nk);
    for (int64_t h = hk * group; h < (hk + 1) * group; ++h) {
      const T* qh = qp + (q0 * H + h) * D;
      const T* doh = dop + (q0 * H + h) * D;
      const T* lh = lse_rows(lp, a, s, h);
      const T* dih = lse_rows(Di.data(), a, s, h);
      for (int64_t i0 = q_begin; i0 < q_end; i0 += kBlockQ) {
        const int64_t n = std::min(kBlockQ, q_end - i0);
        t.compute(qh, doh, H * D, kh, vh, Hkv * D, lh, dih, band, scores, i0, n, j0, nk);
        if (t.masked && !all_finite(doh + i0 * H * D, n, D, H * D))
          masked_product(/*by_query=*/false, band, i0, n, j0, nk, 0, T(1), t.P, kBlockK,
                         doh + i0 * H * D, H * D, D, dv_acc, D);
        else
          gemm(true, false, nk, D, n, T(1), t.P, kBlockK, doh + i0 * H * D, H * D, T(1), dv_acc, D);
        if (t.masked && !all_finite(qh + i0 * H * D, n, D, H * D))
          masked_product(/*by_query=*/false, band, i0, n, j0, nk, 0, scores.scale, t.dS, kBlockK,
                         qh + i0 * H * D, H * D, D, dk_acc, D);
        else
          gemm(true, false, nk, D, n, scores.scale, t.dS, kBlockK, qh + i0 * H * D, H * D, T(1),
               dk_acc, D);
      }
    }
    for (int64_t j = 0; j < nk; ++j) {
      std::copy(dk_acc + j * D, dk_acc + (j + 1) * D, dkp + ((k0 + j0 + j) * Hkv + hk) * D);
      std::copy(dv_acc + j * D, dv_acc + (j + 1) * D, dvp + ((k0 + j0 + j) * Hkv + hk) * D);
    }
  });

  // dQ: one owner per (sequence, head, query tile), recomputing P and dS.
  auto query_tiles = tiles_of(a, /*by_query=*/true, kBlockQ);
  std::reverse(query_tiles.begin(), query_tiles.end());
  parallel_tiles(ctx, int64_t(query_tiles.size()) * H, [&](int64_t item) {
    const auto [s, tile] = query_tiles[size_t(item / H)];
    const int64_t h = item % H, hk = h / group;
    const int64_t Tq = a.seqs_q.length(s), Tk = a.seqs_k.length(s);
    const int64_t q0 = a.seqs_q.begin(s), k0 = a.seqs_k.begin(s);
    const Band band(Tq, Tk, a);
    const int64_t i0 = tile * kBlockQ, n = std::min(kBlockQ, Tq - i0);
    const T* qh = qp + (q0 * H + h) * D;
    const T* doh = dop + (q0 * H + h) * D;
    const T* kh = kp + (k0 * Hkv + hk) * D;
    const T* vh = vp + (k0 * Hkv + hk) * D;
    const Scratch<T> dq_scratch(n * D);
    T* dq_acc = dq_scratch.get();  // (n, D)
    std::fill(dq_acc, dq_acc + n * D, T(0));
    BwdTile<T> t(D);
    const int64_t k_begin = band.lo(i0), k_end = band.hi(i0 + n - 1);
    for (int64_t j0 = k_begin; j0 < k_end; j0 += kBlockK) {
      const int64_t nk = std::min(kBlockK, k_end - j0);
      t.compute(qh, doh, H * D, kh, vh, Hkv * D, lse_rows(lp, a, s, h),
                lse_rows(Di.data(), a, s, h), band, scores, i0, n, j0, nk);
      if (t.masked && !all_finite(kh + j0 * Hkv * D, nk, D, Hkv * D))
        masked_product(/*by_query=*/true, band, i0, n, j0, nk, 0, scores.scale, t.dS, kBlockK,
                       kh + j0 * Hkv * D, Hkv * D, D, dq_acc, D);
      else
        gemm(false, false, n, D, nk, scores.scale, t.dS, kBlockK, kh + j0 * Hkv * D, Hkv * D, T(1),
             dq_acc, D);
    }
    for (int64_t r = 0; r < n; ++r)
      std::copy(dq_acc + r * D, dq_acc + (r + 1) * D, dqp + ((q0 + i0 + r) * H + h) * D);
  });
}

// ---- Decode ---------------------------------------------------------------------------------

// q·k with 8 partial sums (a vector FMA each step, where one sum would be a chain of D
// dependent FMAs), reduced in a fixed order.
template <class T>
T dot8(const T* q, const T* k, int64_t D) {
  T acc[8] = {};
  int64_t d = 0;
  for (; d + 8 <= D; d += 8)
    for (int l = 0; l < 8; ++l) acc[l] += q[d + l] * k[d + l];
  for (; d < D; ++d) acc[0] += q[d] * k[d];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

// attend_rows for one query row (a decode step, Tq = 1) of one (batch, head): the same online
// softmax over blocks of kBlockK keys, with the scores as Tk dot products and the output as a
// weighted sum of V rows, so nothing is packed and no 6-row block is computed for one row.
// The d_model 128 llama preset decoded at T = 256 in 0.30 ms/token with attend_rows' tiles for
// the one row (42% of its profile), in 0.21 with this (one thread, the 2-core AVX-512 dev VM at
// load 10). The one row sees a contiguous range of keys, so no mask is needed.
// Head dims up to kOneQueryMaxD (its accumulator is on the stack); larger ones take attend_rows.
constexpr int64_t kOneQueryMaxD = 512;
template <class T>
void attend_one(const T* q, const T* k, const T* v, int64_t ldkv, int64_t D, const Band& band,
                const Scores<T>& scores, int64_t kb, int64_t ke, T* out, T* lse) {
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
  T s[kBlockK], o[kOneQueryMaxD] = {};
  T m = kNegInf, l = 0;
  const int64_t k_begin = std::max(kb, band.lo(0)), k_end = std::min(ke, band.hi(0));
  const T scale = scores.softcap == T(0) ? T(scores.scale * kLog2e) : scores.scale;
  const T inv_cap = scores.softcap == T(0) ? T(0) : T(1) / scores.softcap;
  const T cap2 = T(scores.softcap * kLog2e);
  for (int64_t j0 = k_begin; j0 < k_end; j0 += kBlockK) {
    const int64_t nk = std::min(kBlockK, k_end - j0);
    for (int64_t j = 0; j < nk; ++j) {
      s[j] = scale * dot8(q, k + (j0 + j) * ldkv, D);
      if (scores.softcap != T(0)) s[j] = cap2 * std::tanh(s[j] * inv_cap);
    }
    // As attend_rows: a NaN running max stays NaN; an all -inf block adds nothing.
    T m_new = std::max(m, row_max(s, nk));
    if (m_new == kNegInf) {
      if (!has_nan(s, nk)) continue;
      m_new = std::numeric_limits<T>::quiet_NaN();
    }
    const T alpha = m == kNegInf ? T(0) : T(std::exp2(m - m_new));
    l = l * alpha + exp2_shifted(s, nk, m_new);
    m = m_new;
    if (alpha != T(1))
      for (int64_t d = 0; d < D; ++d) o[d] *= alpha;
    for (int64_t j = 0; j < nk; ++j) {
      const T p = s[j], *vj = v + (j0 + j) * ldkv;
      for (int64_t d = 0; d < D; ++d) o[d] += p * vj[d];
    }
  }
  if (l == T(0)) {
    const bool nan = kb == 0 && ke == band.Tk && band.sees_any(0, kb, ke);
    std::fill(out, out + D, nan ? std::numeric_limits<T>::quiet_NaN() : T(0));
    *lse = nan ? std::numeric_limits<T>::quiet_NaN() : kNegInf;
    return;
  }
  const T inv = T(1) / l;
  for (int64_t d = 0; d < D; ++d) out[d] = o[d] * inv;
  *lse = T((double(m) + std::log2(double(l))) * kLn2);
}

// Below this many multiply-adds (Tk x D, twice, over every head) a decode step's attention runs
// on the calling thread: waking the other costs more than its share saves. The GEMV's
// measurement (src/cpu/gemv.cpp) puts the crossover of 1 vs 2 threads at about 2^19
// multiply-adds (2 MB of f32 weights: 42-44 us either way) on the 2-core dev VM; the attention's
// loops are alike (a dot product or an axpy per key).
constexpr int64_t kDecodeParallelMacs = int64_t(1) << 19;

template <class T>
void decode_impl(const Context& ctx, const AttentionArgs& a) {
  const int64_t B = a.B, Tq = a.Tq, H = a.H, D = a.D;
  const int64_t Tmax = a.Tk, Hkv = a.Hkv, group = H / Hkv;
  const int32_t* lens = a.cache_seqlens;
  const T* qp = static_cast<const T*>(a.q);
  T* kc = const_cast<T*>(static_cast<const T*>(a.k));  // the caches take the appended keys
  T* vc = const_cast<T*>(static_cast<const T*>(a.v));
  T* op = static_cast<T*>(a.out);
  T* lp = static_cast<T*>(a.lse);
  const Scores<T> scores(a);
  const int num_splits = a.num_splits;

  // Append: (b, t) of k_new/v_new goes to cache row lens[b] + t.
  const bool append = a.k_new != nullptr;
  if (append) {
    const T* kn = static_cast<const T*>(a.k_new);
    const T* vn = static_cast<const T*>(a.v_new);
    const int64_t row = Hkv * D;
    parallel_for(ctx, B * Tq, [&](int64_t bt) {
      const int64_t b = bt / Tq, t = bt % Tq, dst = (b * Tmax + lens[b] + t) * row;
      std::copy(kn + bt * row, kn + (bt + 1) * row, kc + dst);
      std::copy(vn + bt * row, vn + (bt + 1) * row, vc + dst);
    });
  }
  auto keys = [&](int64_t b) { return int64_t(lens[b]) + (append ? Tq : 0); };
  int64_t max_keys = 0;
  for (int64_t b = 0; b < B; ++b) max_keys = std::max(max_keys, keys(b));

  // Splits: enough work items for every thread twice over, each split at least 256 keys.
  int64_t splits = num_splits;
  if (splits == 0) {
    const int64_t want = (2 * ctx.cpu_threads() + B * H - 1) / std::max<int64_t>(B * H, 1);
    splits = std::clamp(want, int64_t(1), std::max<int64_t>(1, max_keys / 256));
  }
  // Partial results per (b, h, split): normalised O_s (Tq, D) and lse_s (Tq).
  std::vector<T> part_o(size_t(B * H * splits * Tq * D)), part_lse(size_t(B * H * splits * Tq));
  auto attend = [&](int64_t item) {
    const int64_t s = item % splits, bh = item / splits, b = bh / H, h = bh % H, hk = h / group;
    const int64_t Tk = keys(b), len = (Tk + splits - 1) / splits;
    const int64_t kb = std::min(Tk, s * len), ke = std::min(Tk, kb + len);
    const Band band(Tq, Tk, a);
    T* po = part_o.data() + item * Tq * D;
    T* pl = part_lse.data() + item * Tq;
    const T* kh = kc + (b * Tmax * Hkv + hk) * D;
    const T* vh = vc + (b * Tmax * Hkv + hk) * D;
    if (Tq == 1 && D <= kOneQueryMaxD)
      return attend_one(qp + (b * H + h) * D, kh, vh, Hkv * D, D, band, scores, kb, ke, po, pl);
    for (int64_t i0 = 0; i0 < Tq; i0 += kBlockQ)
      attend_rows(qp + (b * Tq * H + h) * D, H * D, kh, vh, Hkv * D, D, band, scores, i0,
                  std::min(kBlockQ, Tq - i0), kb, ke, po, D, pl + i0);
  };
  const bool serial = Tq * B * H * max_keys * D * 2 < kDecodeParallelMacs;
  if (serial) {
    for (int64_t item = 0; item < B * H * splits; ++item) attend(item);
  } else {
    parallel_tiles(ctx, B * H * splits, attend);
  }

  // Combine, in double: L = logsumexp_s lse_s, O = Σ_s e^(lse_s − L)·O_s.
  auto combine = [&](int64_t row) {
    const int64_t i = row % Tq, bh = row / Tq, b = bh / H, h = bh % H;
    T* o = op + ((b * Tq + i) * H + h) * D;
    double L = -std::numeric_limits<double>::infinity();
    for (int64_t s = 0; s < splits; ++s)
      L = nan_max(L, double(part_lse[size_t((bh * splits + s) * Tq + i)]));
    if (L == -std::numeric_limits<double>::infinity()) {
      // No split had a finite weight: out = 0, lse = -inf if the row sees no key, NaN if the
      // scores of the keys it sees were all -inf (as one softmax over them would be).
      const bool nan = Band(Tq, keys(b), a).sees_any(i, 0, keys(b));
      std::fill(o, o + D, nan ? std::numeric_limits<T>::quiet_NaN() : T(0));
      lp[bh * Tq + i] = nan ? std::numeric_limits<T>::quiet_NaN() : T(L);
      return;
    }
    std::vector<double> acc(size_t(D), 0.0);
    double sum = 0;
    for (int64_t s = 0; s < splits; ++s) {
      const double w = std::exp(double(part_lse[size_t((bh * splits + s) * Tq + i)]) - L);
      if (w == 0) continue;
      const T* po = part_o.data() + ((bh * splits + s) * Tq + i) * D;
      for (int64_t d = 0; d < D; ++d) acc[size_t(d)] += w * double(po[d]);
      sum += w;
    }
    for (int64_t d = 0; d < D; ++d) o[d] = T(acc[size_t(d)] / sum);
    lp[bh * Tq + i] = T(L + std::log(sum));
  };
  if (serial) {
    for (int64_t row = 0; row < B * H * Tq; ++row) combine(row);
  } else {
    parallel_for(ctx, B * H * Tq, combine);
  }
}

}  // namespace

void attention_fwd(const Context& ctx, const AttentionArgs& args) {
  dispatch_cpu_float("attention_fwd", args.dtype,
                     [&](auto tag) { fwd_impl<typename decltype(tag)::type>(ctx, args); });
}

void attention_bwd(const Context& ctx, const AttentionArgs& args) {
  dispatch_cpu_float("attention_bwd", args.dtype,
                     [&](auto tag) { bwd_impl<typename decltype(tag)::type>(ctx, args); });
}

void attention_decode(const Context& ctx, const AttentionArgs& args) {
  dispatch_cpu_float("attention_decode", args.dtype,
                     [&](auto tag) { decode_impl<typename decltype(tag)::type>(ctx, args); });
}

}  // namespace longctx::cpu
