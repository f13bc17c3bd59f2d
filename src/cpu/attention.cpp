// attention on the CPU: FlashAttention-style tiles with an online softmax; never a Tq x Tk matrix.
//
// Forward, per (batch, head, query tile of kBlockQ rows), over the key tiles the tile can see:
//   S = scale·Q·Kᵀ (log2 domain), m' = max(m, rowmax S), P = 2^(S − m'),
//   l = 2^(m − m')·l + rowsum P,  O = 2^(m − m')·O + P·V;  at the end O /= l, lse = (m + log2
//   l)·ln 2. The max moves lazily: m' = m while no score of the tile's row exceeds m + 8.
// Backward (FA2), with Di = rowsum(dO∘O) and P recomputed from lse:
//   dV += Pᵀ·dO, dP = dO·Vᵀ, dS = scale·P∘(dP − Di) (∘ (1 − tanh²) under softcap),
//   dK += dSᵀ·Q, dQ += dS·K — fused, one owner per (batch, kv head) that writes its dK, dV and
//   dQ, or per (batch, query head) with the group's dK, dV shares added after; or in two passes
//   (one owner per key tile for dK, dV, one per query tile for dQ) when there are too few
//   owners for the threads (see bwd_impl).
// Every owner owns what it writes, so the backward is deterministic for any thread count.
// Decode: split-KV over the cache, each split a normalised (O_s, lse_s), then
//   L = logsumexp_s lse_s, O = Σ_s e^(lse_s − L)·O_s.
//
// f32 tile matmuls use the packed AVX2 / AVX-512 kernels below; f64's go to OpenBLAS (its OpenMP
// build runs single-threaded inside our parallel region, which is what we want: the parallelism
// is over tiles). Extra memory per thread is a few
// tiles; the backward's only O(T) buffer is Di, (B, H, Tq).
//
// NaN and inf propagate as in the plain formulas summed over the visible pairs (the tests'
// reference): a NaN or +inf score makes its row's softmax NaN (exp2 carries NaN; +inf - +inf is
// NaN), a row whose visible scores are all -inf is NaN, and a row that sees no key has out = 0,
// lse = -inf. A masked position is never read: in a tile with masked entries whose operand (V, K,
// Q or dO rows) holds a non-finite value, the product skips the masked pairs instead of
// multiplying a masked 0 by it (masked_product; the finite case keeps the BLAS and packed
// kernels).
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <type_traits>
#include <vector>

#include "src/core/dispatch.h"
#include "src/cpu/blas.h"
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
// The backward's key tiles (each one owner's dK, dV rows in the two-pass shape). They were half
// the forward's, so that under a causal mask the diagonal tiles wasted less (causal T = 512
// backward 55 -> 66 GFLOP per CPU second with 128); since the key side (dV, dK) skips a masked
// tile's zeros as S, dP and dQ do (BwdTile::key_begin), 256 costs causal short sequences nothing
// and halves the per-tile work of the rest (each key tile rereads all its query tiles).
// Measured, 256 against 128 (probe_bwd.cpp in bench/results/2026-12-05-cpu-attention-bwd/, 3
// alternating runs, 2 threads, AVX-512, load 23-27; this comparison's output is not stored there):
// D = 64, H = 8: non-causal T = 2048 110-112 -> 117-127, T = 512 99-100 -> 100-106; causal T = 512
// 78-81 and T = 1024 94-100 both unchanged; D = 32, H = 4, Hkv = 2, causal: T = 4096 96-100 ->
// 103-105, T = 1024 93-100 -> 98, T = 256 59-62 -> 58-60 (the one point that may lose, by ~2%).
constexpr int64_t kBlockKBwd = 256;
static_assert(kBlockKBwd <= kBlockK,
              "BwdTile's key arrays and the backward's acc hold kBlockK keys");
// The most the backward's per-query-head shape may allocate for its dK, dV shares (bwd_impl):
// a bound on the extra memory, not a tuned size; a batch past it takes the two passes.
constexpr int64_t kMaxShareBytes = int64_t(256) << 20;

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

// Tile matmuls: gemm from blas.h (row-major C = alpha·op(A)·op(B) + beta·C).

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
#define LONGCTX_ROWS8(X) LONGCTX_ROWS6(X) X(6) X(7)

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

// c rows (16 columns each) += p rows (nk each, element j at p[r][j * ps]) · vp (nk rows, ld ldv;
// 16 columns). ps = 1 for P·V; ps = the tile's row length for the backward's Pᵀ·dO and dSᵀ·Q,
// which read the (query, key) tile down its columns instead of transposing it.
inline void pv_block6(const float* const* p, int64_t ps, const float* vp, int64_t ldv, int64_t nk,
                      float* const* c) {
#define DECL(r) __m256 c##r##0 = _mm256_loadu_ps(c[r]), c##r##1 = _mm256_loadu_ps(c[r] + 8);
  LONGCTX_ROWS6(DECL)
#undef DECL
  for (int64_t j = 0; j < nk; ++j) {
    const int64_t jp = j * ps;
    const __m256 v0 = _mm256_loadu_ps(vp + j * ldv), v1 = _mm256_loadu_ps(vp + j * ldv + 8);
#define STEP(r)                                      \
  {                                                  \
    const __m256 x = _mm256_broadcast_ss(p[r] + jp); \
    c##r##0 = _mm256_fmadd_ps(x, v0, c##r##0);       \
    c##r##1 = _mm256_fmadd_ps(x, v1, c##r##1);       \
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

// AVX-512 versions of the two kernels, used when cpu_isa() says so (src/cpu/isa.h). Each
// element is the same chain of FMAs in the same order as in the AVX2 kernels (and the same final
// scaling), so the two give bitwise equal results whatever the blocking.
// First version (6 x 32 blocks in both kernels), measured in one build (LONGCTX_CPU_ISA=avx2
// against the default, alternating) on the 2-core Sapphire Rapids class dev machine, B=1 T=4096
// H=8 D=64 f32, causal and not: 1.24x fewer CPU seconds for the forward (4.27 -> 3.43 s, best of
// 3 runs each, spread 2%); wall-clock 0.9-2.7x over the sweep at load 14
// (bench/results/2026-12-05-cpu-peers/attention-isa-*).
//
// a rows (D each) · panelsᵀ on an 8 x 32 block — two 16-key panels — in sixteen zmm registers;
// per step 2 loads and 8 broadcasts feed 16 FMAs (6 and 12 in the 6 x 32 block), and a query
// tile of 128 rows is 16 blocks with no padding row (6-row blocks computed 132). NP = 1: a last
// panel (16 columns) alone. `store.row<NP>(r, c0, c1)` writes row r's result (c1: the second
// panel's), so the forward's S and the backward's P and dS (BwdStore) share the product.
template <int NP, class Store>
__attribute__((target("avx512f"), always_inline)) inline void block8_avx512(const float* const* a,
                                                                            const float* panels,
                                                                            int64_t D,
                                                                            const Store& store) {
#define DECL(r) __m512 c##r##0 = _mm512_setzero_ps(), c##r##1 = _mm512_setzero_ps();
  LONGCTX_ROWS8(DECL)
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
    LONGCTX_ROWS8(STEP)
#undef STEP
  }
#define STORE(r) store.template row<NP>(r, c##r##0, c##r##1);
  LONGCTX_ROWS8(STORE)
#undef STORE
}

// The forward's S = alpha·A·Bᵀ rows.
struct ScoresStore {
  float alpha;
  float* const* s;
  template <int NP>
  __attribute__((target("avx512f"), always_inline)) void row(int r, __m512 c0, __m512 c1) const {
    const __m512 al = _mm512_set1_ps(alpha);
    _mm512_storeu_ps(s[r], _mm512_mul_ps(c0, al));
    if constexpr (NP == 2) _mm512_storeu_ps(s[r] + 16, _mm512_mul_ps(c1, al));
  }
};

// s rows (16·NP columns each) = alpha · a rows · panelsᵀ.
template <int NP>
__attribute__((target("avx512f"))) void abt_block8_avx512(const float* const* a,
                                                          const float* panels, int64_t D,
                                                          float alpha, float* const* s) {
  block8_avx512<NP>(a, panels, D, ScoresStore{alpha, s});
}

// c rows (16·NV columns each, NV <= 4) += p rows (nk each) · vp (nk rows, ld ldv; 16·NV
// columns): a 6 x 64 block in 24 zmm registers, so that with D = 64 each row of V is loaded and
// each P entry broadcast once per block (the 6 x 32 block went over P twice: 16 loads and
// broadcasts per 24 FMAs, here 10).
template <int NV>
__attribute__((target("avx512f"))) void pv_block6_avx512(const float* const* p, int64_t ps,
                                                         const float* vp, int64_t ldv, int64_t nk,
                                                         float* const* c) {
#define DECL(r)                                                    \
  __m512 c##r##0 = _mm512_loadu_ps(c[r]);                          \
  __m512 c##r##1 = NV >= 2 ? _mm512_loadu_ps(c[r] + 16) : c##r##0; \
  __m512 c##r##2 = NV >= 3 ? _mm512_loadu_ps(c[r] + 32) : c##r##0; \
  __m512 c##r##3 = NV >= 4 ? _mm512_loadu_ps(c[r] + 48) : c##r##0;
  LONGCTX_ROWS6(DECL)
#undef DECL
  for (int64_t j = 0; j < nk; ++j) {
    const int64_t jp = j * ps;
    const float* vj = vp + j * ldv;
    const __m512 v0 = _mm512_loadu_ps(vj);
    const __m512 v1 = NV >= 2 ? _mm512_loadu_ps(vj + 16) : v0;
    const __m512 v2 = NV >= 3 ? _mm512_loadu_ps(vj + 32) : v0;
    const __m512 v3 = NV >= 4 ? _mm512_loadu_ps(vj + 48) : v0;
#define STEP(r)                                                       \
  {                                                                   \
    const __m512 x = _mm512_set1_ps(p[r][jp]);                        \
    c##r##0 = _mm512_fmadd_ps(x, v0, c##r##0);                        \
    if constexpr (NV >= 2) c##r##1 = _mm512_fmadd_ps(x, v1, c##r##1); \
    if constexpr (NV >= 3) c##r##2 = _mm512_fmadd_ps(x, v2, c##r##2); \
    if constexpr (NV >= 4) c##r##3 = _mm512_fmadd_ps(x, v3, c##r##3); \
  }
    LONGCTX_ROWS6(STEP)
#undef STEP
  }
#define STORE(r)                                               \
  _mm512_storeu_ps(c[r], c##r##0);                             \
  if constexpr (NV >= 2) _mm512_storeu_ps(c[r] + 16, c##r##1); \
  if constexpr (NV >= 3) _mm512_storeu_ps(c[r] + 32, c##r##2); \
  if constexpr (NV >= 4) _mm512_storeu_ps(c[r] + 48, c##r##3);
  LONGCTX_ROWS6(STORE)
#undef STORE
}
#undef LONGCTX_ROWS6
#undef LONGCTX_ROWS8

// Row pointers of block [r, r + R) of an n-row operand: past the end, `pad`.
template <int R, class P>
inline void block_rows(P* rows, P base, int64_t ld, int64_t r, int64_t n, P pad) {
  for (int64_t x = 0; x < R; ++x) rows[x] = r + x < n ? base + (r + x) * ld : pad;
}

// ---- Packing K as panels: 8 x 8 transposes -----------------------------------------------------
//
// Panel row d holds column d of 16 consecutive keys. The scalar copy stored one float per
// instruction with a 64-byte stride; these load key rows 8 floats at a time and transpose in
// registers. A data move only: the panels are the same bytes whichever path wrote them.
// Measured (the forward alone, GFLOP per CPU second, one probe binary against main's library and
// this one alternating, medians of 8 rounds (AVX-512) and 6 (AVX2 forced), load 6-9;
// bench/results/2026-12-05-cpu-attention-pack/): AVX-512 +2-7% at 7 of the 8 D = 64 points of
// bench_attention's sweep (0.99 at causal T = 4096), 0.98-1.00 at the llama shapes (D = 32);
// AVX2 +3-9% at D = 64, +1-6% at D = 32. perf at D = 32, causal T = 256: the packing 4.2% of
// the samples before, 1.6% after. The llama preset's prefill at T = 256: no change beyond the
// noise (0.995x and 1.013x in two runs of 12 and 8 rounds, per-round spread 0.87-1.08).

// Columns [d, d + 8) of rows r[0..8) as 8 vectors: out[c] = (r[0][d + c], ..., r[7][d + c]).
inline void transpose8(const float* const* r, int64_t d, __m256* out) {
  __m256 t[8], u[8];
  for (int k = 0; k < 4; ++k) {
    const __m256 a = _mm256_loadu_ps(r[2 * k] + d), b = _mm256_loadu_ps(r[2 * k + 1] + d);
    t[2 * k] = _mm256_unpacklo_ps(a, b);      // a0 b0 a1 b1 | a4 b4 a5 b5
    t[2 * k + 1] = _mm256_unpackhi_ps(a, b);  // a2 b2 a3 b3 | a6 b6 a7 b7
  }
  for (int k = 0; k < 2; ++k) {  // rows 4k .. 4k + 3
    const __m256 lo = t[4 * k], hi = t[4 * k + 1], lo2 = t[4 * k + 2], hi2 = t[4 * k + 3];
    u[4 * k + 0] = _mm256_shuffle_ps(lo, lo2, _MM_SHUFFLE(1, 0, 1, 0));  // column 0 | 4
    u[4 * k + 1] = _mm256_shuffle_ps(lo, lo2, _MM_SHUFFLE(3, 2, 3, 2));  // column 1 | 5
    u[4 * k + 2] = _mm256_shuffle_ps(hi, hi2, _MM_SHUFFLE(1, 0, 1, 0));  // column 2 | 6
    u[4 * k + 3] = _mm256_shuffle_ps(hi, hi2, _MM_SHUFFLE(3, 2, 3, 2));  // column 3 | 7
  }
  for (int c = 0; c < 4; ++c) {
    out[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
    out[c + 4] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
  }
}

// Columns [0, D8) of 16 full rows (ld ldb) into one panel, D8 a multiple of 8.
inline void pack_panel16_avx2(const float* b, int64_t ldb, int64_t D8, float* panel) {
  const float* r[16];
  for (int j = 0; j < 16; ++j) r[j] = b + j * ldb;
  __m256 c[8];
  for (int64_t d = 0; d < D8; d += 8)
    for (int half = 0; half < 2; ++half) {
      transpose8(r + 8 * half, d, c);
      for (int k = 0; k < 8; ++k) _mm256_storeu_ps(panel + (d + k) * 16 + 8 * half, c[k]);
    }
}

// Key rows j (lanes 0-7) and j + 8 (lanes 8-15), 8 floats each from x and x + 8 ldb. (The maskz
// forms here and in pack_panel16_avx512 with every lane set, as exp2_ps512's: GCC 12 warns of an
// uninitialised operand in the unmasked ones' headers.)
__attribute__((target("avx512f"))) inline __m512 keys_j_j8(const float* x, int64_t ldb) {
  const __m256d lo = _mm256_castps_pd(_mm256_loadu_ps(x));
  const __m256d hi = _mm256_castps_pd(_mm256_loadu_ps(x + 8 * ldb));
  return _mm512_castpd_ps(_mm512_maskz_insertf64x4(0xFF, _mm512_castpd256_pd512(lo), hi, 1));
}

// The same under AVX-512: keys j and j + 8 share a register (lanes 0-7, 8-15), the 8 x 8
// transpose runs in both halves at once, and each panel row is one 64-byte store.
__attribute__((target("avx512f"))) inline void pack_panel16_avx512(const float* b, int64_t ldb,
                                                                   int64_t D8, float* panel) {
  const __m512i lo = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
  const __m512i hi = _mm512_setr_epi32(4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
  for (int64_t d = 0; d < D8; d += 8) {
    __m512 t[8], u[8];
    for (int k = 0; k < 4; ++k) {
      const __m512 a = keys_j_j8(b + 2 * k * ldb + d, ldb),
                   c = keys_j_j8(b + (2 * k + 1) * ldb + d, ldb);
      t[2 * k] = _mm512_maskz_unpacklo_ps(0xFFFF, a, c);
      t[2 * k + 1] = _mm512_maskz_unpackhi_ps(0xFFFF, a, c);
    }
    for (int k = 0; k < 2; ++k) {
      const __m512 l0 = t[4 * k], h0 = t[4 * k + 1], l1 = t[4 * k + 2], h1 = t[4 * k + 3];
      u[4 * k + 0] = _mm512_shuffle_ps(l0, l1, _MM_SHUFFLE(1, 0, 1, 0));
      u[4 * k + 1] = _mm512_shuffle_ps(l0, l1, _MM_SHUFFLE(3, 2, 3, 2));
      u[4 * k + 2] = _mm512_shuffle_ps(h0, h1, _MM_SHUFFLE(1, 0, 1, 0));
      u[4 * k + 3] = _mm512_shuffle_ps(h0, h1, _MM_SHUFFLE(3, 2, 3, 2));
    }
    // u[c] holds column c (keys 0-3, 8-11) in its 128-bit lanes 0 and 2 and column c + 4 in
    // lanes 1 and 3; u[4 + c] the same for keys 4-7, 12-15.
    for (int c = 0; c < 4; ++c) {
      _mm512_storeu_ps(panel + (d + c) * 16, _mm512_permutex2var_ps(u[c], lo, u[4 + c]));
      _mm512_storeu_ps(panel + (d + c + 4) * 16, _mm512_permutex2var_ps(u[c], hi, u[4 + c]));
    }
  }
}
#else
constexpr bool kPackedF32 = false;
#endif

// dst[0, D) = src[0, D). f32 rows 8 floats at a time: std::copy called memmove once per row,
// and at D = 32 (128-byte rows: the llama preset's V packs and query tiles) those calls took 6%
// of the forward's samples at causal T = 256 (perf; see attend_rows for the measurement). But
// GCC 12 recognises this loop too and calls memcpy where it is inlined into attend_rows (4 call
// sites there; perf at D = 64, bench/results/2026-12-06-cpu-attention-fwd-1024/): keeping it a
// vector loop there is left to do.
template <class T>
inline void copy_row(const T* src, int64_t D, T* dst) {
  int64_t d = 0;
#if defined(__AVX2__) && defined(__FMA__)
  if constexpr (std::is_same_v<T, float>)
    for (; d + 8 <= D; d += 8) _mm256_storeu_ps(dst + d, _mm256_loadu_ps(src + d));
#endif
  for (; d < D; ++d) dst[d] = src[d];
}

// A row of q, k, v or out (B, T, H, D) brought towards L2 before it is read (or written). One
// head's rows lie H·D floats apart (2 KB at H = 8, D = 64: two rows a page), a stride the
// hardware prefetchers did not cover: at bench_attention's non-causal T = 512 (32 (sequence, head)
// items a thread, each reading 512 KB of strided rows for 0.6 ms of tiles) the pack copies, the
// query tile's copy and the output's stores took 8.9% of the forward's samples (perf), 6.4% with
// the copies prefetching kPrefetchRows rows ahead and attend_rows fetching the next query tile's
// rows and its own output rows a slice per key tile (see attend_rows for the time).
template <class T>
inline void prefetch_row(const T* row, int64_t D) {
  for (int64_t byte = 0; byte < D * int64_t(sizeof(T)); byte += 64)
    __builtin_prefetch(reinterpret_cast<const char*>(row) + byte, /*rw=*/0, /*locality=*/2);
}
constexpr int64_t kPrefetchRows = 8;

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
  // f32 full panels: columns up to D's multiple of 8 by the 8 x 8 transposes above, the rest
  // (and a last panel of fewer than 16 keys) one float at a time.
  static void pack_panels(const T* b, int64_t ldb, int64_t nk, int64_t D, T* panels) {
    for (int64_t j0 = 0; j0 < nk; j0 += 16) {
      T* panel = panels + j0 * D;
      const int64_t w = std::min<int64_t>(16, nk - j0);
      for (int64_t j = j0 + 16; j < std::min(nk, j0 + 32); ++j) prefetch_row(b + j * ldb, D);
      int64_t d0 = 0;
      if constexpr (kPacked) {
        if (w == 16) {
          d0 = D / 8 * 8;
          if (cpu_isa() == CpuIsa::avx512)
            pack_panel16_avx512(b + j0 * ldb, ldb, d0, panel);
          else
            pack_panel16_avx2(b + j0 * ldb, ldb, d0, panel);
        }
      }
      if (w < 16) std::fill(panel, panel + D * 16, T(0));
      for (int64_t j = 0; j < w; ++j)
        for (int64_t d = d0; d < D; ++d) panel[d * 16 + j] = b[(j0 + j) * ldb + d];
    }
  }
  // Packs rows [0, nk) of v (ld ldv) as rows of D16, zero-padded.
  static void pack_rows(const T* v, int64_t ldv, int64_t nk, int64_t D, int64_t D16, T* rows) {
    for (int64_t j = 0; j < nk; ++j) {
      if (j + kPrefetchRows < nk) prefetch_row(v + (j + kPrefetchRows) * ldv, D);
      copy_row(v + j * ldv, D, rows + j * D16);
      std::fill(rows + j * D16 + D, rows + (j + 1) * D16, T(0));
    }
  }

  // S (n x nk, ld lds >= nk rounded up to 16) = alpha · a (n x D) · b (nk x D)ᵀ. With `panels`
  // (b already packed by pack_panels) b is not read. With `row_end` (nondecreasing), the entries
  // of row r at columns >= row_end[r] may be left unwritten: the caller masks them (a causal
  // tile's part above the diagonal; packed path only).
  void abt(const T* a, int64_t lda, const T* b, int64_t ldb, int64_t n, int64_t nk, T alpha, T* S,
           int64_t lds, const T* panels = nullptr, const int64_t* row_end = nullptr) {
    if constexpr (kPacked) {
      if (!panels) {
        if (!reuse(b, nk, /*panels=*/true)) pack_panels(b, ldb, nk, D, pack.get());
        panels = pack.get();
      }
      alignas(64) float sink[32];
      const float* arows[6];
      float* srows[6];
      if (cpu_isa() == CpuIsa::avx512) {
        const float* arows8[8];
        float* srows8[8];
        for (int64_t j0 = 0; j0 < nk; j0 += 32)
          for (int64_t r = 0; r < n; r += 8) {
            if (row_end && j0 >= row_end[std::min(r + 8, n) - 1]) continue;
            block_rows<8>(arows8, a, lda, r, n, a);
            block_rows<8>(srows8, S + j0, lds, r, n, static_cast<float*>(sink));
            // One panel where the block's rows end within the first (the diagonal's blocks
            // under a causal mask; +4% at the llama prefill, see attend_rows).
            if (j0 + 16 < (row_end ? std::min(nk, row_end[std::min(r + 8, n) - 1]) : nk))
              abt_block8_avx512<2>(arows8, panels + j0 * D, D, alpha, srows8);
            else
              abt_block8_avx512<1>(arows8, panels + j0 * D, D, alpha, srows8);
          }
        return;
      }
      for (int64_t j0 = 0; j0 < nk; j0 += 16)
        for (int64_t r = 0; r < n; r += 6) {
          if (row_end && j0 >= row_end[std::min(r + 6, n) - 1]) continue;
          block_rows<6>(arows, a, lda, r, n, a);
          block_rows<6>(srows, S + j0, lds, r, n, static_cast<float*>(sink));
          abt_block6(arows, panels + j0 * D, D, alpha, srows);
        }
    } else {
      gemm(false, true, n, nk, D, alpha, a, lda, b, ldb, T(0), S, lds);
    }
  }

  // c (n x D, ld ldc) += p (n x nk) · v (nk x D), element (r, j) of p at p[r * ldp + j * ps].
  // With `rows` (v already packed by pack_rows) v is not read; without, v's rows are read in
  // place when D is a multiple of 16 (packing them cost 3% of a T = 512 backward, perf), else
  // packed. ldc: on the packed path the kernels write whole blocks of 16 columns, so c's rows
  // have D16 writable columns. With `row_end` (nondecreasing), row r of p is 0 from column
  // row_end[r] on, and those terms are not added: c + (+0)·v is c for a finite v (the callers
  // take masked_product for a non-finite one), and c is never -0 (a sum from +0). Likewise with
  // `row_begin` (nondecreasing; the backward's key side), row r of p is 0 before column
  // row_begin[r].
  // How many columns of row r of p pv reads with row_end (the row's 6-row block's last row's
  // end), or all nk on the BLAS path.
  static int64_t pv_reads(const int64_t* row_end, int64_t r, int64_t n, int64_t nk) {
    return kPacked ? row_end[std::min((r / 6 + 1) * 6, n) - 1] : nk;
  }
  void pv(const T* p, int64_t ldp, int64_t ps, const T* v, int64_t ldv, int64_t n, int64_t nk, T* c,
          int64_t ldc, const T* rows = nullptr, const int64_t* row_end = nullptr,
          const int64_t* row_begin = nullptr) {
    if constexpr (kPacked) {
      int64_t ldr = D16;
      if (!rows && D == D16) {
        rows = v;
        ldr = ldv;
      } else if (!rows) {
        if (!reuse(v, nk, /*panels=*/false)) pack_rows(v, ldv, nk, D, D16, pack.get());
        rows = pack.get();
      }
      alignas(64) float sink[64] = {};  // the padding rows' output: up to 64 columns
      const float* prows[6];
      float* crows[6];
      if (cpu_isa() == CpuIsa::avx512) {
        for (int64_t r = 0; r < n; r += 6) {
          const int64_t nj = row_end ? std::min(nk, row_end[std::min(r + 6, n) - 1]) : nk;
          const int64_t jb = row_begin ? std::min(nj, row_begin[r]) : 0;
          block_rows<6>(prows, p + jb * ps, ldp, r, n, p + jb * ps);
          const float* vb = rows + jb * ldr;
          for (int64_t d0 = 0; d0 < D16; d0 += 64) {
            block_rows<6>(crows, c + d0, ldc, r, n, static_cast<float*>(sink));
            switch (std::min<int64_t>(4, (D16 - d0) / 16)) {
              case 4:
                pv_block6_avx512<4>(prows, ps, vb + d0, ldr, nj - jb, crows);
                break;
              case 3:
                pv_block6_avx512<3>(prows, ps, vb + d0, ldr, nj - jb, crows);
                break;
              case 2:
                pv_block6_avx512<2>(prows, ps, vb + d0, ldr, nj - jb, crows);
                break;
              default:
                pv_block6_avx512<1>(prows, ps, vb + d0, ldr, nj - jb, crows);
            }
          }
        }
        return;
      }
      for (int64_t r = 0; r < n; r += 6) {
        const int64_t nj = row_end ? std::min(nk, row_end[std::min(r + 6, n) - 1]) : nk;
        const int64_t jb = row_begin ? std::min(nj, row_begin[r]) : 0;
        block_rows<6>(prows, p + jb * ps, ldp, r, n, p + jb * ps);
        for (int64_t d0 = 0; d0 < D16; d0 += 16) {
          block_rows<6>(crows, c + d0, ldc, r, n, static_cast<float*>(sink));
          pv_block6(prows, ps, rows + jb * ldr + d0, ldr, nj - jb, crows);
        }
      }
    } else {
      // ps is 1 here: the BLAS path's callers pass transposes as such (see BwdTile).
      gemm(false, false, n, D, nk, T(1), p, ldp, v, ldv, T(1), c, ldc);
    }
  }
};

// K and V of one (batch, kv head) packed for the whole sequence (SeqPack; f32 fast path).
template <class T>
struct PackedKV {
  const T* k_panels = nullptr;
  const T* v_rows = nullptr;
  // Every row of V is finite, checked once by the pack's owner (fwd_impl) instead of by each
  // masked tile (each diagonal tile of each head of the group; see attend_rows' lse loop).
  bool v_finite = false;
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
// Four independent chains of 8 lanes: one chain was 32 dependent vmaxps (latency 4) per 256-key
// row, ~128 cycles against ~1024 for the row's two kernel steps. Max is exact, so the value is
// the same whatever the order (same bits as one chain). Measured: the standalone prototype
// (bench/results/2026-12-05-cpu-attention-softmax/, `basefm`) +5-6% median at T = 4096, one
// thread. In the library, together with exp2_ps512's vscalefps (one build; not measured apart):
// the forward +4-8% GFLOP per CPU second over bench_attention's default sweep, causal and not
// (median of 9 runs alternating with main's library, 2 threads, AVX-512, load 9-20;
// bench/results/2026-12-05-cpu-attention-fwd-2/).
template <class T>
T row_max(const T* s, int64_t n) {
  T mx = -std::numeric_limits<T>::infinity();
  int64_t j = 0;
#if defined(__AVX2__) && defined(__FMA__)
  if constexpr (std::is_same_v<T, float>) {
    __m256 m8 = _mm256_set1_ps(-INFINITY), m8b = m8, m8c = m8, m8d = m8;
    for (; j + 32 <= n; j += 32) {
      m8 = _mm256_max_ps(m8, _mm256_loadu_ps(s + j));
      m8b = _mm256_max_ps(m8b, _mm256_loadu_ps(s + j + 8));
      m8c = _mm256_max_ps(m8c, _mm256_loadu_ps(s + j + 16));
      m8d = _mm256_max_ps(m8d, _mm256_loadu_ps(s + j + 24));
    }
    for (; j + 8 <= n; j += 8) m8 = _mm256_max_ps(m8, _mm256_loadu_ps(s + j));
    m8 = _mm256_max_ps(_mm256_max_ps(m8, m8b), _mm256_max_ps(m8c, m8d));
    alignas(32) float buf[8];
    _mm256_store_ps(buf, m8);
    for (float x : buf) mx = std::max(mx, x);
  }
#endif
  for (; j < n; ++j) mx = std::max(mx, s[j]);
  return mx;
}

#if defined(__AVX2__) && defined(__FMA__)
// any_greater on 16 lanes, the tail by a masked compare (the same answer).
__attribute__((target("avx512f"))) inline bool any_greater_avx512(const float* s, int64_t n,
                                                                  float t) {
  const __m512 t16 = _mm512_set1_ps(t);
  __mmask16 acc = 0;
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) acc |= _mm512_cmp_ps_mask(_mm512_loadu_ps(s + j), t16, _CMP_GT_OQ);
  if (j < n) {
    const __mmask16 k = __mmask16((1u << (n - j)) - 1);
    acc |= _mm512_mask_cmp_ps_mask(k, _mm512_maskz_loadu_ps(k, s + j), t16, _CMP_GT_OQ);
  }
  return acc != 0;
}
#endif

// Whether some s[j] > t: an ordered compare, false for NaN entries and for t = NaN (the lazy
// rescaling's test in attend_rows). At D = 32 (causal T = 1024) the 8-lane loop was a quarter
// of attend_rows' own samples (perf), the 16-lane one halves its instructions; measured
// together with all_finite: see there.
template <class T>
bool any_greater(const T* s, int64_t n, T t) {
  int64_t j = 0;
#if defined(__AVX2__) && defined(__FMA__)
  if constexpr (std::is_same_v<T, float>) {
    if (cpu_isa() == CpuIsa::avx512) return any_greater_avx512(s, n, t);
    const __m256 t8 = _mm256_set1_ps(t);
    __m256 acc = _mm256_setzero_ps();
    for (; j + 8 <= n; j += 8)
      acc = _mm256_or_ps(acc, _mm256_cmp_ps(_mm256_loadu_ps(s + j), t8, _CMP_GT_OQ));
    if (_mm256_movemask_ps(acc) != 0) return true;
  }
#endif
  for (; j < n; ++j)
    if (s[j] > t) return true;
  return false;
}

template <class T>
bool has_nan(const T* s, int64_t n) {
  return std::any_of(s, s + n, [](T x) { return x != x; });
}

#if defined(__AVX2__) && defined(__FMA__)
__attribute__((target("avx512f"))) inline bool all_finite_avx512(const float* x, int64_t rows,
                                                                 int64_t cols, int64_t ld) {
  const __m512 zero = _mm512_setzero_ps();
  __mmask16 bad = 0;
  const __mmask16 tail = __mmask16((1u << (cols % 16)) - 1);
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * ld;
    int64_t c = 0;
    for (; c + 16 <= cols; c += 16) {
      const __m512 v = _mm512_loadu_ps(row + c);
      bad |= _mm512_cmp_ps_mask(_mm512_sub_ps(v, v), zero, _CMP_NEQ_UQ);
    }
    if (c < cols) {
      const __m512 v = _mm512_maskz_loadu_ps(tail, row + c);
      bad |= _mm512_cmp_ps_mask(_mm512_sub_ps(v, v), zero, _CMP_NEQ_UQ);
    }
  }
  return bad == 0;
}
#endif

// Whether every entry of rows x cols (leading dim ld) is finite (masked tiles' operands: a 0
// weight times inf would be NaN where the masked entry must contribute nothing). In f32, x − x is
// 0 for a finite x and NaN for inf or NaN, and each vector's compare is independent of the
// others; the other types sum x · 0, one chain of dependent multiply-adds (4 cycles per 8 floats),
// which f32 took before: perf at D = 32, causal T = 1024, put 14% of attend_rows' own samples on
// that chain (perf annotate, not stored), every diagonal tile checking its 256 rows of V.
// Measured in the forward with any_greater's 16 lanes (one build against main's library,
// alternating, GFLOP per CPU second, medians of 5 and 6 rounds at load 18-31;
// bench/results/2026-12-05-cpu-attention-fwd-3/ ab2, ab3): the D = 64 sweep's causal points
// +2-7%, its non-causal ones -3..+6%, the llama shapes (D = 32, GQA, causal) -3..+2%; the spread
// between batches of rounds is ~5%, so read it as "not slower; a few % on D = 64 causal, nothing
// shown at D = 32". The backward's checks take the same function (the same answers).
template <class T>
bool all_finite(const T* x, int64_t rows, int64_t cols, int64_t ld) {
#if defined(__AVX2__) && defined(__FMA__)
  if constexpr (std::is_same_v<T, float>) {
    if (cpu_isa() == CpuIsa::avx512) return all_finite_avx512(x, rows, cols, ld);
    const __m256 zero = _mm256_setzero_ps();
    __m256 bad = zero;
    bool tail_ok = true;
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = x + r * ld;
      int64_t c = 0;
      for (; c + 8 <= cols; c += 8) {
        const __m256 v = _mm256_loadu_ps(row + c);
        bad = _mm256_or_ps(bad, _mm256_cmp_ps(_mm256_sub_ps(v, v), zero, _CMP_NEQ_UQ));
      }
      for (; c < cols; ++c) tail_ok = tail_ok && std::isfinite(row[c]);
    }
    return tail_ok && _mm256_movemask_ps(bad) == 0;
  }
#endif
  T acc = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const T* row = x + r * ld;
#pragma omp simd reduction(+ : acc)
    for (int64_t c = 0; c < cols; ++c) acc += row[c] * T(0);
  }
  return acc == T(0);
}

#if defined(__AVX2__) && defined(__FMA__)
// exp2_ps on 16 lanes: the same values. (The maskz forms with every lane set: GCC 12 warns of an
// uninitialised operand in the unmasked ones' headers.) 2^n is applied by vscalefps under the
// "x >= -125" mask, one instruction for exp2_ps's cvt, shift, integer add and masked move: p is
// in [2^-1/2, 2^1/2] and n in [-125, 127], so p·2^n is a normal float and exact either way —
// the same bits as exp2_ps on all 2^32 inputs (checked exhaustively in
// bench/results/2026-12-05-cpu-attention-softmax/). NaN: the clamps keep it and scalef of NaN is
// NaN. Measured: the prototype's `basefmsf` over `basefm`, +1-3% at T = 4096 one thread; in the
// library with row_max's chains, the forward +4-8% (see row_max); the backward, whose
// recomputed P uses it (and no row max), 1.00-1.13x (median of only 2 alternating runs each,
// load 15-24; bench/results/2026-12-05-cpu-attention-fwd-2/).
//
// kUpTo127: x <= 127, -inf or NaN (the forward's shifted scores, at most kLazyTau, except in a
// row holding a NaN score, whose max may have dropped a larger one: its sums are NaN whatever
// exp2 returns there), and neither clamp is applied: below -125 the result is 0 by the mask
// whatever n and p are (-inf: n = -inf, p NaN, masked), from -125 to 127 the clamps change nothing,
// and NaN goes through as before — the same bits on every such input (checked on all 2^32 floats:
// exp2_check.cpp in bench/results/2026-12-06-cpu-attention-short/), two of its sixteen instructions
// fewer. Measured there (probe.cpp, medians of 6 alternating rounds, 2 threads, AVX-512 Zen 4, load
// 2.4-3.1) at the llama preset's prefill shape (D = 32, causal T = 256): 70.2 -> 71.2 and
// 71.4 -> 72.8 GFLOP per CPU second in two batches (+1.4%, +2.0%).
template <bool kUpTo127 = false>
__attribute__((target("avx512f"))) inline __m512 exp2_ps512(__m512 x) {
  const __mmask16 all = 0xFFFF;
  const __m512 lo = _mm512_set1_ps(-125.f);
  const __m512 xc =
      kUpTo127 ? x
               : _mm512_maskz_min_ps(all, _mm512_set1_ps(127.f), _mm512_maskz_max_ps(all, lo, x));
  const __m512 n =
      _mm512_maskz_roundscale_ps(all, xc, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(xc, n);
  __m512 p = _mm512_set1_ps(kExp2Poly[0]);
  for (int c = 1; c < 8; ++c) p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kExp2Poly[c]));
  return _mm512_maskz_scalef_ps(~_mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ), p, n);
}

// The sum of exp2_shifted: lane l of `even` holds the sum of element 8c + l over the even c, in
// order of c, `odd` over the odd c; then a fixed tree. Both ISAs add the same numbers in this
// order, so l is bitwise the same whichever runs.
inline float sum_even_odd(__m256 even, __m256 odd) {
  alignas(32) float buf[8];
  _mm256_store_ps(buf, _mm256_add_ps(even, odd));
  return ((buf[0] + buf[4]) + (buf[1] + buf[5])) + ((buf[2] + buf[6]) + (buf[3] + buf[7]));
}

// AVX-512 exp2_shifted (f32): 16 elements (two chunks of 8, even and odd) per step; the last
// n % 16 through a masked load padded with -inf (exp2 = 0), as the AVX2 version's tail.
// Measured (2-core Sapphire Rapids class dev machine, B=1 T=4096 H=8 D=64 non-causal forward,
// perf): exp2_shifted took 11.9% of the run's samples with 8 lanes, 3.8% of a T = 512 run's with
// 16; the forward went from 102 and 93 to 106 and 99 GFLOP per CPU second at that point (two
// alternating runs, load 5-7).
template <bool kUpTo127>
__attribute__((target("avx512f"))) inline float exp2_shifted_avx512(float* s, int64_t n, float m) {
  const __m512 m16 = _mm512_set1_ps(m);
  __m512 sum = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    const __m512 p = exp2_ps512<kUpTo127>(_mm512_sub_ps(_mm512_loadu_ps(s + j), m16));
    _mm512_storeu_ps(s + j, p);
    sum = _mm512_add_ps(sum, p);
  }
  if (j < n) {
    const __mmask16 k = __mmask16((1u << (n - j)) - 1);
    const __m512 x = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), k, s + j);
    const __m512 p = exp2_ps512<kUpTo127>(_mm512_sub_ps(x, m16));
    _mm512_mask_storeu_ps(s + j, k, p);
    sum = _mm512_add_ps(sum, p);
  }
  alignas(64) float halves[16];
  _mm512_store_ps(halves, sum);
  return sum_even_odd(_mm256_load_ps(halves), _mm256_load_ps(halves + 8));
}
#endif

// s[j] = 2^(s[j] − m) in place; returns the sum, in an order fixed by n alone (deterministic).
// kUpTo127: every s[j] − m is at most 127, -inf or NaN (see exp2_ps512).
template <bool kUpTo127 = false, class T>
T exp2_shifted(T* s, int64_t n, T m) {
  if constexpr (std::is_same_v<T, float>) {
#if defined(__AVX2__) && defined(__FMA__)
    if (cpu_isa() == CpuIsa::avx512) return exp2_shifted_avx512<kUpTo127>(s, n, m);
    const __m256 m8 = _mm256_set1_ps(m);
    __m256 sum[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};  // even and odd chunks of 8
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
      const __m256 p = exp2_ps(_mm256_sub_ps(_mm256_loadu_ps(s + j), m8));
      _mm256_storeu_ps(s + j, p);
      sum[(j / 8) % 2] = _mm256_add_ps(sum[(j / 8) % 2], p);
    }
    if (j < n) {
      const __m256 p = exp2_ps(_mm256_sub_ps(load_tail(s + j, n - j), m8));
      store_tail(s + j, n - j, p);
      sum[(j / 8) % 2] = _mm256_add_ps(sum[(j / 8) % 2], p);
    }
    return sum_even_odd(sum[0], sum[1]);
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
               int64_t nk, T* S, int64_t ld, T* dcap = nullptr, const T* k_panels = nullptr,
               const int64_t* row_end = nullptr) const {
    if (softcap == T(0)) {
      mm.abt(q, ldq, k, ldk, n, nk, T(scale * kLog2e), S, ld, k_panels, row_end);
      return;
    }
    mm.abt(q, ldq, k, ldk, n, nk, scale, S, ld, k_panels, row_end);
    const T inv_cap = T(1) / softcap, cap2 = T(softcap * kLog2e);
    for (int64_t r = 0; r < n; ++r) {
      T* s = S + r * ld;
      for (int64_t j = 0; j < (row_end ? row_end[r] : nk); ++j) {  // the rest: masked
        const T t = std::tanh(s[j] * inv_cap);
        s[j] = cap2 * t;
        if (dcap) dcap[r * ld + j] = T(1) - t * t;
      }
    }
  }
};

// ---- Forward tile ---------------------------------------------------------------------------

// The lazy rescaling's threshold (log2 domain; see attend_rows): P entries up to 2^8 before the
// running max moves, so l <= 256·Tk and |O| <= 256·Tk·max|v|, far from f32's range. With random
// scores only a row's first key tile moves the max; scores that keep growing along T make
// nearly every tile take the exact step, at the cost of one compare pass (prototype, Pitfall 4).
constexpr double kLazyTau = 8;

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
  // S's rows are kBlockK + 16 apart, not a power of two: 1 KB apart, the 8 rows of an S block
  // and the 6 of a P block fell in the same few L1 sets.
  constexpr int64_t ldS = kBlockK + 16;
  const Scratch<T> work(kBlockQ * ldS + kBlockQ * ldo_acc + 2 * kBlockQ + kBlockQ * D);
  T* S = work.get();             // (kBlockQ, ldS) scores, then probabilities
  T* O = S + kBlockQ * ldS;      // (kBlockQ, ldo_acc) unnormalised output
  T* m = O + kBlockQ * ldo_acc;  // (kBlockQ) running max, log2 domain
  T* l = m + kBlockQ;            // (kBlockQ) running sum
  std::fill(O, O + n * ldo_acc, T(0));
  std::fill(m, m + n, kNegInf);
  std::fill(l, l + n, T(0));
  // The packed kernels read the tile's query rows contiguously: in place they are H·D floats
  // apart (2 KB at H = 8, D = 64), the 128 rows in 8 of L1's 64 sets, and the S kernel's
  // broadcasts came from L2 (perf at T = 4096: the kernel's samples on its loads).
  const T* q_tile = q + i0 * ldq;
  int64_t ld_tile = ldq;
  if (TileMatmul<T>::kPacked) {
    T* qt = l + kBlockQ;
    TileMatmul<T>::pack_rows(q_tile, ldq, n, D, /*D16=*/D, qt);  // rows of D: no padding
    q_tile = qt;
    ld_tile = D;
  }

  const int64_t i1 = i0 + n;
  int64_t k_begin = std::max(kb, band.lo(i0));
  const int64_t k_end = std::min(ke, band.hi(i1 - 1));
  if (packed.k_panels) k_begin = k_begin / 16 * 16;  // panels start at multiples of 16
  const int64_t key_tiles = (k_end - k_begin + kBlockK - 1) / kBlockK;  // >= 1 in the loop
  for (int64_t j0 = k_begin; j0 < k_end; j0 += kBlockK) {
    const int64_t nk = std::min(kBlockK, k_end - j0);
    // The rows this tile stores at the end and the next query tile copies first, a slice per
    // key tile (issued together they stalled the loop). Measured with the copies' prefetches
    // (attn_ab.cpp in bench/results/2026-12-07-cpu-attention-prefetch/: the library before and
    // this one in one process, calls alternating, 6 rounds in each order, CPU time per call,
    // 2 threads, AVX-512 Emerald Rapids VM): new / old 0.964 at the llama prefill shape (D = 32,
    // causal T = 256; faster in 11 of 12 rounds), 0.971 / 0.976 at non-causal T = 512 / 1024,
    // 0.971 / 0.974 causal; 0.993-1.006 at T = 2048 and 4096 (within the rounds' spread). Same
    // bits.
    const int64_t key_tile = (j0 - k_begin) / kBlockK;
    for (int64_t r = n * key_tile / key_tiles; r < n * (key_tile + 1) / key_tiles; ++r) {
      prefetch_row(out + (i0 + r) * ldo, D);
      if (i1 + r < band.Tq) prefetch_row(q + (i1 + r) * ldq, D);
    }
    const bool masked = j0 < kb || !band.full(i0, i1, j0, j0 + nk);
    // Under a mask the kernels skip the blocks past each row's last visible key (the part of a
    // causal tile above the diagonal).
    int64_t row_end[kBlockQ];
    for (int64_t r = 0; masked && r < n; ++r)
      row_end[r] = std::clamp(band.hi(i0 + r) - j0, int64_t(0), nk);
    const int64_t* ends = masked ? row_end : nullptr;
    scores.compute(mm, q_tile, ld_tile, k + j0 * ldkv, ldkv, n, nk, S, ldS,
                   /*dcap=*/nullptr, packed.k_panels ? packed.k_panels + j0 * D : nullptr, ends);
    for (int64_t r = 0; r < n; ++r) {
      T* s = S + r * ldS;
      // Under a mask, row r's keys from row_end[r] on are invisible: the softmax runs on the
      // first ne entries only, and P is 0 from there up to what P·V reads of the row (the
      // masked entries were -inf, exp2 made them 0 and added +0 to the sums: the same bits).
      // At causal T = 256 each query tile has one key tile, the diagonal one, and exp2 went
      // over 1.5x the visible scores. Measured (probe.cpp in
      // bench/results/2026-12-06-cpu-attention-short/, GFLOP per CPU second, medians of 6
      // alternating rounds, 2 threads, AVX-512 Zen 4, load 1.5-3.2) at the llama preset's
      // prefill shape (B = 16, T = 256, H = 4, Hkv = 2, D = 32, causal): 63.0 -> 70.6-71.0 with
      // abt's half blocks and copy_row; without the half blocks 67.6, without copy_row 69.7.
      const int64_t ne = masked ? row_end[r] : nk;
      if (masked) {
        // Row 0 up to what the last row block reads: that block's padding rows read row 0.
        const int64_t reads = TileMatmul<T>::pv_reads(row_end, r == 0 ? n - 1 : r, n, nk);
        std::fill(s + ne, s + reads, T(0));
        band.mask_row(s, i0 + r, j0, ne, kb);
      }
      // Lazy rescaling: the running max moves only when some score of the row in this tile
      // exceeds it by more than kLazyTau; otherwise P = 2^(S − m) with the old m (entries up to
      // 2^kLazyTau), and neither l nor O is rescaled. The rule is per row and key tile, in code
      // both ISAs run, on scores that are bitwise the same on both: results stay the same bits
      // on both. A row with no finite score yet (m = -inf) takes the exact step below; a NaN m
      // fails the compare and stays NaN through exp2, as below. Measured (bench_attention's
      // default sweep, median of 9 runs alternating, 2 threads, AVX-512, load 9-20;
      // bench/results/2026-12-05-cpu-attention-fwd-2/): over the same-bits forward +0.8-3.3% at
      // 7 of 8 points, even at T = 1024 non-causal (the spread between batches of runs is ~5%);
      // 1.06-1.10x main's forward with row_max's chains and vscalefps.
      if (m[r] != kNegInf && !any_greater(s, ne, T(m[r] + kLazyTau))) {
        l[r] += exp2_shifted<true>(s, ne, m[r]);  // the exact step's l·1 + sum
        continue;
      }
      // A NaN running max stays NaN (std::max keeps its first operand then).
      T m_new = std::max(m[r], row_max(s, ne));
      if (m_new == kNegInf) {
        if (!has_nan(s, ne)) {  // no visible key so far (or only -inf scores): nothing to add
          std::fill(s, s + ne, T(0));
          continue;
        }
        m_new = std::numeric_limits<T>::quiet_NaN();  // a NaN score among -inf ones
      }
      const T alpha = m[r] == kNegInf ? T(0) : T(std::exp2(m[r] - m_new));
      l[r] = l[r] * alpha + exp2_shifted<true>(s, ne, m_new);
      m[r] = m_new;
      if (alpha != T(1)) {
        T* o = O + r * ldo_acc;
        for (int64_t d = 0; d < D; ++d) o[d] *= alpha;
      }
    }
    if (masked && !packed.v_finite && !all_finite(v + j0 * ldkv, nk, D, ldkv))
      masked_product(/*by_query=*/true, band, i0, n, j0, nk, kb, T(1), S, ldS, v + j0 * ldkv, ldkv,
                     D, O, ldo_acc);
    else
      mm.pv(S, ldS, 1, v + j0 * ldkv, ldkv, n, nk, O, ldo_acc,
            packed.v_rows ? packed.v_rows + j0 * mm.ldc() : nullptr, ends);
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
  }
  // lse in a loop of its own: the output rows' stores no longer wait around each row's log2
  // call. Measured with PackedKV::v_finite (one build, not apart; probe.cpp in
  // bench/results/2026-12-06-cpu-attention-short/, medians of 8 alternating rounds, load
  // 1.6-1.7) at the llama prefill shape: 69.5 -> 70.3 and 70.0 -> 70.9 GFLOP per CPU second in
  // two batches (a first, noisier batch of 6: 62.9 -> 62.8); same bits.
  for (int64_t r = 0; r < n; ++r)
    if (l[r] != T(0)) lse[r] = T((double(m[r]) + std::log2(double(l[r]))) * kLn2);
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

// A thread's buffers for packed K and V, kept between calls: up to kKeptPackBytes each (3
// slots, PackSlot: the backward's K panels, V panels and K rows; the forward's first two, or the
// per-owner packs of fwd_impl; the fused backward owners' key tile packs); a larger pack gets a
// fresh buffer (null here), since its page faults grow with T and its work with T². At most 3 x 16
// MiB stay allocated per thread that has called attention (the gain below was measured on 8 MB
// packs; larger ones were not measured to gain, and a program's peak memory keeps what stays).
// Measured (nc_probe.cpp, one binary against this library and the one before, alternating, GFLOP
// per CPU second, medians of 3 and 4 rounds, 2 threads, AVX-512, load 14-20;
// bench/results/2026-12-05-cpu-attention-noncausal/): B = 8, T = 512, H = 8, D = 64, forward
// non-causal 1.12x and 1.16x, causal 1.11x and 1.11x, backward 1.03x (non-causal) and 1.08x
// (causal); T = 1024-4096 (B·T the same, so the same faults over more work) 0.95-1.02x, within
// the runs' spread. glibc's mmap and trim thresholds raised on top (every buffer kept) add nothing
// beyond that spread.
constexpr int64_t kKeptPackBytes = int64_t(16) << 20;
enum PackSlot : int { kKPanelSlot = 0, kVSlot = 1, kKRowSlot = 2 };
struct KeptPacks {
  struct Slot {
    void* p = nullptr;
    int64_t bytes = 0;
  };
  Slot slots[3];
  ~KeptPacks() {
    for (Slot& s : slots) std::free(s.p);
  }
  // A 64-byte aligned buffer of at least `bytes` in the calling thread's slot, or null when
  // bytes exceeds kKeptPackBytes.
  static void* get(PackSlot slot, int64_t bytes) {
    if (bytes > kKeptPackBytes) return nullptr;
    thread_local KeptPacks kept;
    Slot& s = kept.slots[slot];
    if (s.bytes < bytes) {
      std::free(s.p);
      const int64_t rounded = (bytes + 63) / 64 * 64;
      s.p = std::aligned_alloc(64, size_t(rounded));
      s.bytes = s.p ? rounded : 0;
      LONGCTX_CHECK(s.p, "attention (CPU): out of memory allocating ", bytes, " bytes");
    }
    return s.p;
  }
};

// One operand (K or V) of every (sequence, kv head) packed once for the f32 kernels, read by all
// the query tiles (and in the backward by every key tile's pass too): as panels (D, 16), key j's
// panel row at of(s, hk) + j * D (j a multiple of 16), or as rows of D16, key j's at
// of(s, hk) + j * D16. Packing per query tile instead cost a quarter of the forward (strided K
// rows missing cache each time). Empty (of() null) where the kernels are BLAS.
// Rows are packed even when D is a multiple of 16 and the kernels could read them in place: in
// place, key j's row is H_kv·D floats after key j-1's (2 KB at H_kv = 8, D = 64), so a tile's
// 256 rows fall in 8 of L1's 64 sets and P·V reloaded V from L2 at every step (perf, T = 4096
// forward: 31% of P·V's samples on one V load, P·V 40% of the run against 27% for the S kernel
// with the same FLOPs).
//
// The packed copies live in buffers the calling thread keeps between calls (KeptPacks) when they
// fit kKeptPackBytes: a fresh buffer per call gets pages that glibc gave back at the last call's
// free (an munmap, or a trimmed heap top), and its first touch is a page fault per 4 KB page
// (4096 per call for K and V at B·T = 4096, H = 8, D = 64), which at short sequences is several
// % of the call. Measured: see KeptPacks.
template <class T>
struct SeqPack {
  const AttentionArgs& a;
  bool panels;
  int64_t D16;
  std::vector<int64_t> at;  // where sequence s's block starts
  bool used;
  std::optional<Scratch<T>> own;  // when the kept buffer would be too large
  T* buf;

  static std::vector<int64_t> offsets(const AttentionArgs& a, bool panels) {
    std::vector<int64_t> at(size_t(a.seqs_k.count) + 1, 0);
    const int64_t D16 = (a.D + 15) / 16 * 16;
    for (int64_t s = 0; s < a.seqs_k.count; ++s) {
      const int64_t Tk = a.seqs_k.length(s);
      at[size_t(s) + 1] = at[size_t(s)] + a.Hkv * (panels ? (Tk + 15) / 16 * 16 * a.D : Tk * D16);
    }
    return at;
  }

  // slot: which of the calling thread's kept buffers (distinct for the packs alive at once).
  SeqPack(const Context& ctx, const AttentionArgs& a_, const T* src, bool panels_, PackSlot slot)
      : a(a_),
        panels(panels_),
        D16((a_.D + 15) / 16 * 16),
        at(offsets(a_, panels_)),
        used(TileMatmul<T>::kPacked) {
    const int64_t n = used ? std::max<int64_t>(at.back(), 1) : 1;
    buf = static_cast<T*>(KeptPacks::get(slot, n * int64_t(sizeof(T))));
    if (!buf) buf = own.emplace(n).get();
    if (!used) return;
    const int64_t Hkv = a.Hkv, D = a.D;
    const auto key_tiles = tiles_of(a, /*by_query=*/false, kBlockK);
    parallel_for(ctx, int64_t(key_tiles.size()) * Hkv, [&](int64_t item) {
      const auto [s, tile] = key_tiles[size_t(item / Hkv)];
      const int64_t hk = item % Hkv, j0 = tile * kBlockK;
      const int64_t nk = std::min(kBlockK, a.seqs_k.length(s) - j0);
      const T* x = src + ((a.seqs_k.begin(s) + j0) * Hkv + hk) * D;
      T* dst = const_cast<T*>(of(s, hk));
      if (panels)
        TileMatmul<T>::pack_panels(x, Hkv * D, nk, D, dst + j0 * D);
      else
        TileMatmul<T>::pack_rows(x, Hkv * D, nk, D, D16, dst + j0 * D16);
    });
  }
  // Sequence s, kv head hk: its block (null where not packed or the sequence has no key).
  const T* of(int64_t s, int64_t hk) const {
    const int64_t Tk = a.seqs_k.length(s);
    if (!used || Tk == 0) return nullptr;
    return buf + at[size_t(s)] + hk * (panels ? (Tk + 15) / 16 * 16 * a.D : Tk * D16);
  }
  // From key j0 (a multiple of 16) on, or null where nothing is packed.
  const T* from_key(int64_t s, int64_t hk, int64_t j0) const {
    const T* p = of(s, hk);
    return p ? p + j0 * (panels ? a.D : D16) : nullptr;
  }
};

// The forward's per-owner packs (fwd_impl): at most this many bytes of K panels and V rows per
// (sequence, kv head), and at least this many owners per thread. 2 MB (T = 4096 at D = 64)
// against 1 MB (T <= 2048), measured as in fwd_impl: T = 4096 non-causal 1.13x, causal 1.06x
// (AVX-512, 4 rounds, load 1.8-2.6); T <= 2048 0.97-1.01x (the same code there). Larger packs
// are not measured and take SeqPack; so does a batch with fewer owners (its threads would idle).
constexpr int64_t kOwnPackBytes = int64_t(2) << 20;
constexpr int64_t kOwnPackOwners = 4;

template <class T>
void fwd_impl(const Context& ctx, const AttentionArgs& a) {
  const int64_t H = a.H, D = a.D, Hkv = a.Hkv, group = H / Hkv;
  const Scores<T> scores(a);
  const T* qp = static_cast<const T*>(a.q);
  const T* kp = static_cast<const T*>(a.k);
  const T* vp = static_cast<const T*>(a.v);
  T* op = static_cast<T*>(a.out);
  T* lp = static_cast<T*>(a.lse);
  // Short sequences and many (sequence, kv head) pairs: each pair's owner packs its K panels and
  // V rows itself, into a buffer it keeps, and runs all its query tiles (the group's heads)
  // against them right after, from cache. SeqPack's separate pass wrote every pack to memory,
  // and the query tiles, which go through the heads in turn, read them back from there. Same
  // kernels and packs, so the same bits. Bounded by kOwnPackBytes and kOwnPackOwners.
  // Measured (nc_probe.cpp, one binary against main's library and this one, alternating, GFLOP
  // per CPU second, medians of 4-5 rounds, 2 threads, load 1.4-2.6;
  // bench/results/2026-12-05-cpu-attention-copies/, ab1/ab2 with a 1 MB bound, ab6/ab7 with 2
  // MB): B·T = 4096, H = 8, D = 64, non-causal T = 512 / 1024 / 2048 / 4096 AVX-512
  // 1.12 / 1.10 / 1.09 / 1.03x, AVX2 1.14 / 1.12 / 1.12 / 1.05x; causal T = 512 1.12x and 1.19x,
  // T = 4096 1.02x and 1.05x.
  const int64_t threads = ctx.cpu_threads();
  const int64_t D16 = (D + 15) / 16 * 16;
  int64_t max_tk = 0;
  for (int64_t s = 0; s < a.seqs_k.count; ++s) max_tk = std::max(max_tk, a.seqs_k.length(s));
  const int64_t own_bytes = ((max_tk + 15) / 16 * 16 * D + max_tk * D16) * int64_t(sizeof(T));
  if (TileMatmul<T>::kPacked && a.seqs_k.count * Hkv >= kOwnPackOwners * threads &&
      own_bytes <= kOwnPackBytes) {
    parallel_tiles(ctx, a.seqs_k.count * Hkv, [&](int64_t item) {
      const int64_t s = item / Hkv, hk = item % Hkv;
      const int64_t Tq = a.seqs_q.length(s), Tk = a.seqs_k.length(s);
      const int64_t q0 = a.seqs_q.begin(s), k0 = a.seqs_k.begin(s);
      if (Tq == 0) return;
      const T* kh = kp + (k0 * Hkv + hk) * D;
      const T* vh = vp + (k0 * Hkv + hk) * D;
      PackedKV<T> packed;
      if (Tk > 0) {
        T* pk = static_cast<T*>(KeptPacks::get(kKPanelSlot, own_bytes));
        T* pv = pk + (Tk + 15) / 16 * 16 * D;
        TileMatmul<T>::pack_panels(kh, Hkv * D, Tk, D, pk);
        TileMatmul<T>::pack_rows(vh, Hkv * D, Tk, D, D16, pv);
        packed = PackedKV<T>{pk, pv, all_finite(vh, Tk, D, Hkv * D)};
      }
      const Band band(Tq, Tk, a);
      for (int64_t h = hk * group; h < (hk + 1) * group; ++h)
        for (int64_t i0 = 0; i0 < Tq; i0 += kBlockQ)
          attend_rows(qp + (q0 * H + h) * D, H * D, kh, vh, Hkv * D, D, band, scores, i0,
                      std::min(kBlockQ, Tq - i0), int64_t(0), Tk, op + (q0 * H + h) * D, H * D,
                      lse_rows(lp, a, s, h) + i0, packed);
    });
    return;
  }
  // f32: K as panels and V as rows, packed once.
  const SeqPack<T> k_panels(ctx, a, kp, /*panels=*/true, kKPanelSlot),
      v_rows(ctx, a, vp, /*panels=*/false, kVSlot);
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
                PackedKV<T>{k_panels.of(s, hk), v_rows.of(s, hk)});
  });
}

// ---- Backward -------------------------------------------------------------------------------

#if defined(__AVX2__) && defined(__FMA__)
// The backward's two score-shaped products (block8_avx512's store), each with its elementwise
// step applied in registers before the one store, so that P and dS take no pass of their own over
// the tile:
//   kDs = false: out = 2^(alpha·a·panelsᵀ − shift[r]), exp2_shifted's values (P);
//   kDs = true:  out = scale·(p[r]∘(a·panelsᵀ − shift[r])), the dS loop's values (its product
//                unscaled: the loop's ×1 is exact).
// One object for all of it, so that the loop's row pointers keep their registers (with the arrays
// as separate arguments GCC reloaded a row pointer from the stack each step).
template <bool kDs>
struct BwdStore {
  float alpha, scale;
  const float* shift;  // 8 values, one per row
  const float* p[8];   // kDs: the block's P rows
  float* out[8];

  template <int NP>
  __attribute__((target("avx512f"), always_inline)) void row(int r, __m512 c0, __m512 c1) const {
    const __m512 sh = _mm512_set1_ps(shift[r]);
    _mm512_storeu_ps(out[r], step(c0, sh, p[r]));
    if constexpr (NP == 2) _mm512_storeu_ps(out[r] + 16, step(c1, sh, p[r] + 16));
  }
  __attribute__((target("avx512f"), always_inline)) __m512 step(__m512 c, __m512 sh,
                                                                const float* pr) const {
    if constexpr (kDs) {
      return _mm512_mul_ps(_mm512_set1_ps(scale),
                           _mm512_mul_ps(_mm512_loadu_ps(pr), _mm512_sub_ps(c, sh)));
    } else {
      // S rounded before the subtraction, as stored and reloaded by the passes: the empty asm
      // keeps GCC from contracting the multiply and subtract into one FMA (other bits).
      __m512 s = _mm512_mul_ps(c, _mm512_set1_ps(alpha));
      __asm__("" : "+v"(s));
      return exp2_ps512(_mm512_sub_ps(s, sh));
    }
  }
};

// P (kDs = false) or dS rows of an 8 x 16·NP block, see BwdStore.
template <int NP, bool kDs>
__attribute__((target("avx512f"))) void bwd_block8_avx512(const float* const* a,
                                                          const float* panels, int64_t D,
                                                          const BwdStore<kDs>& e) {
  block8_avx512<NP>(a, panels, D, e);
}
#endif

// One (query rows, key rows) tile of the backward: P from lse, then dS (scale folded in), and the
// three products that use them.
template <class T>
struct BwdTile {
  // The tiles' rows are kBlockK + 16 apart, not a power of two, as attend_rows' S (the key side
  // reads P and dS down their columns: 1 KB apart, a column's lines fell in 4 of L1's 64 sets).
  static constexpr int64_t ld = kBlockK + 16;
  TileMatmul<T> mm;  // the abt kernels, and the packing of dO and Q tiles for the key side
  Scratch<T> buf;
  T *P, *dS, *dcap;  // (kBlockQ, ld) each
  // f32: the tile's rows of Q and dO packed contiguously, rows of D16 (null on the BLAS path).
  // In place they are H·D floats apart (2 KB at H = 8, D = 64), in a few L1 sets, as the
  // forward's V rows were (see SeqPack); the key side reads them as P·V reads V.
  T *q_rows = nullptr, *do_rows = nullptr;

  bool masked = false;  // the last tile computed has entries some row does not see
  // Masked: each row's end of its visible keys in the tile, for the kernels to skip the rest
  // (TileMatmul::abt, pv); else `ends` is null.
  int64_t row_end[kBlockQ];
  const int64_t* ends = nullptr;
  // Masked, for the key side (rows = keys): each key's first and end visible query row in the
  // tile, so that dV and dK skip the zeros of P and dS (under a causal mask, the part of a
  // diagonal tile above it: those products computed whole tiles there while S, dP and dQ
  // skipped the part). Same bits (the terms skipped are exact zeros, as with row_end).
  // Measured (probe_bwd.cpp in bench/results/2026-12-05-cpu-attention-bwd/, median of 3
  // alternating runs, best of 10 each, 2 threads, AVX-512, load 21-23; this run's output is not
  // stored there, and its D = 64 sweep against main did not resolve the change, 0.96-1.04): causal
  // B = 8, T = 512, H = 8, D = 64 75.7 -> 78.5 GFLOP per CPU second; B = 4, T = 1024, H = 4, Hkv =
  // 2, D = 32 96 -> 98; B = 16, T = 256, D = 32 62 -> 64 (within the noise).
  int64_t key_begin[kBlockK], key_end[kBlockK];

  explicit BwdTile(int64_t D) : mm(D), buf(3 * kBlockQ * ld + 2 * kBlockQ * mm.ldc()) {
    P = buf.get();
    dS = P + kBlockQ * ld;
    dcap = dS + kBlockQ * ld;
    if (TileMatmul<T>::kPacked) {
      q_rows = dcap + kBlockQ * ld;
      do_rows = q_rows + kBlockQ * mm.ldc();
    }
  }

  // Rows [i0, i0 + n) of q/dout/lse/Di (pointers at row 0 of the head), keys [j0, j0 + nk).
  // k_panels, v_panels: the key tile's packed panels (f32), else null (BLAS).
  void compute(const T* q, const T* dout, int64_t ldq, const T* k, const T* v, int64_t ldkv,
               const T* k_panels, const T* v_panels, const T* lse, const T* Di, const Band& band,
               const Scores<T>& scores, int64_t i0, int64_t n, int64_t j0, int64_t nk) {
    const bool capped = scores.softcap != T(0);
    const T *qt = q + i0 * ldq, *dot = dout + i0 * ldq;
    int64_t ldt = ldq;
    if (q_rows) {
      const int64_t D16 = mm.ldc();
      TileMatmul<T>::pack_rows(qt, ldq, n, mm.D, D16, q_rows);
      TileMatmul<T>::pack_rows(dot, ldq, n, mm.D, D16, do_rows);
      qt = q_rows;
      dot = do_rows;
      ldt = D16;
    }
    masked = !band.full(i0, i0 + n, j0, j0 + nk);
    for (int64_t r = 0; masked && r < n; ++r)
      row_end[r] = std::clamp(band.hi(i0 + r) - j0, int64_t(0), nk);
    ends = masked ? row_end : nullptr;
    for (int64_t j = 0; masked && j < nk; ++j) {
      key_begin[j] = std::clamp(band.first_query(j0 + j) - i0, int64_t(0), n);
      key_end[j] = std::clamp(band.end_query(j0 + j + 1) - i0, int64_t(0), n);
    }
    if (fused_products(qt, ldt, dot, k_panels, v_panels, lse + i0, Di + i0, scores, n, nk, capped))
      return;
    scores.compute(mm, qt, ldt, k + j0 * ldkv, ldkv, n, nk, P, ld, capped ? dcap : nullptr,
                   k_panels, ends);
    for (int64_t r = 0; r < n; ++r) {
      T* p = P + r * ld;
      const T l2 = lse[i0 + r] * T(kLog2e);
      if (l2 == -std::numeric_limits<T>::infinity()) {  // a row that sees no key: P = 0
        std::fill(p, p + nk, T(0));
        continue;
      }
      // NaN everywhere for a NaN row, as the forward's; past row_end[r], masked below.
      exp2_shifted(p, ends ? ends[r] : nk, l2);
      // Masked after the exp: exp2(-inf - NaN) would be NaN where P must be 0.
      if (masked) band.mask_row(p, i0 + r, j0, nk, 0, T(0));
    }
    // dS = dO·Vᵀ, then scale·P∘(dS − Di)(∘ dcap).
    mm.abt(dot, ldt, v + j0 * ldkv, ldkv, n, nk, T(1), dS, ld, v_panels, ends);
    const T scale = scores.scale;
    for (int64_t r = 0; r < n; ++r) {
      const T* p = P + r * ld;
      T* ds = dS + r * ld;
      const T di = Di[i0 + r];
      const int64_t nk_r = ends ? ends[r] : nk;  // past it, masked below
      if (capped) {
        const T* g = dcap + r * ld;
#pragma omp simd
        for (int64_t j = 0; j < nk_r; ++j) ds[j] = scale * (p[j] * (ds[j] - di) * g[j]);
      } else {
#pragma omp simd
        for (int64_t j = 0; j < nk_r; ++j) ds[j] = scale * (p[j] * (ds[j] - di));
      }
      // dS = 0 where the row does not see the key, even when dP there is NaN (a NaN value row
      // or dout row) or Di is.
      if (masked) band.mask_row(ds, i0 + r, j0, nk, 0, T(0));
    }
  }

  // AVX-512, a tile every row of which sees every key, without softcap: P and dS by
  // bwd_block8_avx512, each 8 x 32 block's S and P then dP and dS one after the other, so the
  // block's P is in L1 when dS reads it. The same values as the passes in compute (the same
  // chains, exp2 and dS arithmetic): the same bits. Returns false where it does not apply: a
  // row that sees no key (lse = −inf; compute sets P = 0) or keys not a multiple of 16.
  // Measured (nc_probe.cpp, one binary against main's library and this one, alternating, GFLOP
  // per CPU second, medians of 4 rounds, 2 threads, AVX-512, load 8.7-9.3;
  // bench/results/2026-12-05-cpu-attention-bwd-3/ab6): B·T = 4096, H = 8, D = 64, non-causal
  // T = 1024 / 2048 / 4096 1.027 / 1.022 / 1.051x, causal T = 4096 1.036x; at T = 512 (1.015x,
  // causal 1.010x) within the rounds' spread; the same checksums. The exp is compute (≈ 13 vector
  // operations per 16 scores against the 5 products' 320 FMAs): what goes is the passes over the
  // tile, not the exp's own time. (qt, dot: the tile's packed Q and dO rows, ld ldq; lse, Di: the
  // tile's rows'.)
  bool fused_products([[maybe_unused]] const T* qt, [[maybe_unused]] int64_t ldq,
                      [[maybe_unused]] const T* dot, [[maybe_unused]] const T* k_panels,
                      [[maybe_unused]] const T* v_panels, [[maybe_unused]] const T* lse,
                      [[maybe_unused]] const T* Di, [[maybe_unused]] const Scores<T>& scores,
                      [[maybe_unused]] int64_t n, [[maybe_unused]] int64_t nk,
                      [[maybe_unused]] bool capped) {
#if defined(__AVX2__) && defined(__FMA__)
    if constexpr (std::is_same_v<T, float>) {
      if (masked || capped || !k_panels || !v_panels || !q_rows || nk % 16 != 0 ||
          cpu_isa() != CpuIsa::avx512)
        return false;
      alignas(64) float l2[kBlockQ + 8], di[kBlockQ + 8];
      for (int64_t r = 0; r < n; ++r) {
        l2[r] = lse[r] * float(kLog2e);
        if (l2[r] == -std::numeric_limits<float>::infinity()) return false;
        di[r] = Di[r];
      }
      std::fill(l2 + n, l2 + n + 8, 0.f);
      std::fill(di + n, di + n + 8, 0.f);
      const float alpha = float(scores.scale * kLog2e), scale = scores.scale;
      alignas(64) float sink_p[32], sink_ds[32];  // the padding rows' P and dS
      const float *qrows[8], *drows[8];
      BwdStore<false> ep{alpha, /*scale: unused*/ 0.f, nullptr, {}, {}};
      BwdStore<true> ed{/*alpha: unused*/ 0.f, scale, nullptr, {}, {}};
      for (int64_t jb = 0; jb < nk; jb += 32)  // the block's first key within the tile
        for (int64_t r = 0; r < n; r += 8) {
          block_rows<8>(qrows, qt, ldq, r, n, qt);
          block_rows<8>(drows, dot, ldq, r, n, dot);
          block_rows<8>(ep.out, P + jb, ld, r, n, static_cast<float*>(sink_p));
          block_rows<8>(ed.out, dS + jb, ld, r, n, static_cast<float*>(sink_ds));
          for (int x = 0; x < 8; ++x) ed.p[x] = ep.out[x];
          ep.shift = l2 + r;
          ed.shift = di + r;
          if (jb + 16 < nk) {
            bwd_block8_avx512<2, false>(qrows, k_panels + jb * mm.D, mm.D, ep);
            bwd_block8_avx512<2, true>(drows, v_panels + jb * mm.D, mm.D, ed);
          } else {
            bwd_block8_avx512<1, false>(qrows, k_panels + jb * mm.D, mm.D, ep);
            bwd_block8_avx512<1, true>(drows, v_panels + jb * mm.D, mm.D, ed);
          }
        }
      return true;
    }
#endif
    return false;
  }

  // c (nk x D, ld ldc) += wᵀ·x for the tile w (P or dS; n x nk) and x the tile's n rows of dO or
  // Q (ld ldx; `rows` their packed copy on the f32 path): per key, a chain over the query rows
  // in order.
  void add_key_side(const T* w, int64_t n, int64_t nk, const T* x, int64_t ldx, const T* rows, T* c,
                    int64_t ldc) {
    if constexpr (TileMatmul<T>::kPacked)  // w read down its columns
      mm.pv(w, 1, ld, x, ldx, nk, n, c, ldc, rows, masked ? key_end : nullptr,
            masked ? key_begin : nullptr);
    else
      gemm(true, false, nk, mm.D, n, T(1), w, ld, x, ldx, T(1), c, ldc);
  }
  // c (n x D, ld ldc) += dS·K for the tile's nk keys (ld ldk; `k_rows` packed as rows on the f32
  // path): per query row, a chain over the keys in order.
  void add_query_side(int64_t n, int64_t nk, const T* k, int64_t ldk, const T* k_rows, T* c,
                      int64_t ldc) {
    mm.pv(dS, ld, 1, k, ldk, n, nk, c, ldc, k_rows, ends);
  }
};

// The backward, in three shapes that give the same bits on the f32 path:
//  - fused (FA2's sharing): one owner per (sequence, kv head) walks its key tiles; each (query
//    tile, key tile)'s P and dS feed dV, dK and dQ at once. dQ accumulates in place in `dq`
//    (zeroed first), which the owner alone writes (its group's heads).
//  - fused per query head, when there are fewer than 2 (sequence, kv head) owners per thread but
//    2 (sequence, query head) ones: as fused, each owner one head; the heads of a group other
//    than the first leave their dK, dV shares in a buffer, added after.
//  - two passes, when there are fewer still: dK/dV with one owner per (seq, kv head, key tile),
//    then dQ with one owner per (seq, head, query tile), recomputing P and dS.
// Every product is a chain of FMAs over keys (dQ) or over one head's query rows (dK, dV) in
// ascending order, which no tiling changes, and the group's heads' dK, dV are added in head
// order; the masked entries add exact zeros. So the three shapes, and any thread count, give the
// same bits (a zero's sign aside). The BLAS path (f64, or builds without AVX2) always takes the
// two passes: dgemm's order depends on the shapes the passes give it.
// Measured (2-core Sapphire Rapids class dev machine, bench_attention's sweep, B·T = 4096, H = 8,
// D = 64, f32, against main's two passes with OpenBLAS for dV, dK, dQ, which compute S and dP
// twice: 7 tile products for the 5 counted): 53-64 -> 91-109 GFLOP per CPU second, 1.48-1.78x
// over the sweep, 40-46% of the FMA peak at T >= 1024 non-causal (load 12-14;
// bench/results/2026-12-05-cpu-attention). This shape alone (before the 128-key tiles and the
// AVX-512 exp2): 1.28-1.86x.
template <class T>
void bwd_impl(const Context& ctx, const AttentionArgs& a) {
  const int64_t H = a.H, D = a.D, Hkv = a.Hkv, group = H / Hkv;
  const int64_t D16 = (D + 15) / 16 * 16;
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
#pragma omp simd reduction(+ : sum)
      for (int64_t d = 0; d < D; ++d) sum += o[d] * d_o[d];
      di[i] = sum;
    }
  });

  // Fused needs dq's rows to take the kernels' 16-column blocks in place (D a multiple of 16).
  // Its owners are (sequence, kv head) pairs when there are 2 per thread, else (sequence, query
  // head) pairs when there are (see `per_head` below), else the two passes.
  const int64_t threads = ctx.cpu_threads();
  const bool packed_d = TileMatmul<T>::kPacked && D % 16 == 0;
  const bool fused = packed_d && a.seqs_k.count * Hkv >= 2 * threads;
  // The per-head shape's dK, dV shares buffer (below), bounded: past it, the two passes.
  const int64_t share_bytes = 2 * a.B * a.Tk * Hkv * (group - 1) * D * int64_t(sizeof(T));
  const bool per_head =
      packed_d && !fused && a.seqs_k.count * H >= 2 * threads && share_bytes <= kMaxShareBytes;

  // dK, dV of key tile `tile` of (s, hk) over the query heads [h_begin, h_end) into rows of
  // dk_out and dv_out (key j of the sequence at j * ld_out); with_dq: dQ too, into dq. kpan,
  // vpan, krow: the tile's K and V panels and K rows (f32), else null. Each head's share is a
  // chain over its query rows from 0, and the shares are then added in head order: the same sums
  // whether one owner takes the group's heads or each head has its own owner (per_head). acc:
  // 4 x kBlockK x D16.
  auto key_tile = [&](BwdTile<T>& t, T* acc, int64_t s, int64_t hk, int64_t tile, int64_t h_begin,
                      int64_t h_end, bool with_dq, T* dk_out, T* dv_out, int64_t ld_out,
                      const T* kpan, const T* vpan, const T* krow) {
    const int64_t Tq = a.seqs_q.length(s), Tk = a.seqs_k.length(s);
    const int64_t q0 = a.seqs_q.begin(s), k0 = a.seqs_k.begin(s);
    const Band band(Tq, Tk, a);
    const int64_t j0 = tile * kBlockKBwd, nk = std::min(kBlockKBwd, Tk - j0);
    const T* kh = kp + (k0 * Hkv + hk) * D;
    const T* vh = vp + (k0 * Hkv + hk) * D;
    T* dk_acc = acc;  // (nk, D16): one head's share
    T* dv_acc = acc + kBlockK * D16;
    T* dk_sum = acc + 2 * kBlockK * D16;  // the heads' shares added, when more than one
    T* dv_sum = acc + 3 * kBlockK * D16;
    const bool summed = h_end - h_begin > 1;
    if (summed) {
      std::fill(dk_sum, dk_sum + nk * D16, T(0));
      std::fill(dv_sum, dv_sum + nk * D16, T(0));
    }
    const int64_t q_begin = band.first_query(j0), q_end = band.end_query(j0 + nk);
    const bool k_finite = all_finite(kh + j0 * Hkv * D, nk, D, Hkv * D);
    for (int64_t h = h_begin; h < h_end; ++h) {
      std::fill(dk_acc, dk_acc + nk * D16, T(0));
      std::fill(dv_acc, dv_acc + nk * D16, T(0));
      const T* qh = qp + (q0 * H + h) * D;
      const T* doh = dop + (q0 * H + h) * D;
      const T* lh = lse_rows(lp, a, s, h);
      const T* dih = lse_rows(Di.data(), a, s, h);
      for (int64_t i0 = q_begin; i0 < q_end; i0 += kBlockQ) {
        const int64_t n = std::min(kBlockQ, q_end - i0);
        t.compute(qh, doh, H * D, kh, vh, Hkv * D, kpan, vpan, lh, dih, band, scores, i0, n, j0,
                  nk);
        if (t.masked && !all_finite(doh + i0 * H * D, n, D, H * D))
          masked_product(/*by_query=*/false, band, i0, n, j0, nk, 0, T(1), t.P, t.ld,
                         doh + i0 * H * D, H * D, D, dv_acc, D16);
        else
          t.add_key_side(t.P, n, nk, doh + i0 * H * D, H * D, t.do_rows, dv_acc, D16);
        if (t.masked && !all_finite(qh + i0 * H * D, n, D, H * D))
          masked_product(/*by_query=*/false, band, i0, n, j0, nk, 0, T(1), t.dS, t.ld,
                         qh + i0 * H * D, H * D, D, dk_acc, D16);
        else
          t.add_key_side(t.dS, n, nk, qh + i0 * H * D, H * D, t.q_rows, dk_acc, D16);
        if (!with_dq) continue;
        T* dq = dqp + ((q0 + i0) * H + h) * D;
        if (t.masked && !k_finite)
          masked_product(/*by_query=*/true, band, i0, n, j0, nk, 0, T(1), t.dS, t.ld,
                         kh + j0 * Hkv * D, Hkv * D, D, dq, H * D);
        else
          t.add_query_side(n, nk, kh + j0 * Hkv * D, Hkv * D, krow, dq, H * D);
      }
      if (summed) {
        for (int64_t x = 0; x < nk * D16; ++x) dk_sum[x] += dk_acc[x];
        for (int64_t x = 0; x < nk * D16; ++x) dv_sum[x] += dv_acc[x];
      }
    }
    const T* dk_res = summed ? dk_sum : dk_acc;
    const T* dv_res = summed ? dv_sum : dv_acc;
    for (int64_t j = 0; j < nk; ++j) {
      std::copy(dk_res + j * D16, dk_res + j * D16 + D, dk_out + (j0 + j) * ld_out);
      std::copy(dv_res + j * D16, dv_res + j * D16 + D, dv_out + (j0 + j) * ld_out);
    }
  };

  // Fused: each owner packs its key tiles itself, one at a time, into a buffer its thread keeps,
  // right before the tile's passes over the group's heads read them (from cache). SeqPack's
  // separate pass wrote every pack to memory first and the passes read them back. Same packs,
  // same kernels: the same bits. Measured (nc_probe.cpp, one binary against main's library and
  // this one, alternating, GFLOP per CPU second, medians of 5 (AVX-512) and 4 (AVX2) rounds, 2
  // threads, load 2.9-3.9; bench/results/2026-12-05-cpu-attention-bwd-2/ ab1, ab2): B·T = 4096,
  // H = 8, D = 64, non-causal T = 512 / 1024 / 2048 / 4096 AVX-512 1.06 / 1.05 / 1.02 / 1.01x,
  // AVX2 1.08 / 1.04 / 1.01 / 1.01x; causal T = 512 1.10x and 1.08x, T = 4096 1.04x and 1.01x.
  const int64_t tile_pack_bytes = (2 * kBlockKBwd * D + kBlockKBwd * D16) * int64_t(sizeof(T));
  if (fused) {
    parallel_tiles(ctx, a.seqs_k.count * Hkv, [&](int64_t item) {
      const int64_t s = item / Hkv, hk = item % Hkv, q0 = a.seqs_q.begin(s);
      const int64_t k0 = a.seqs_k.begin(s);
      for (int64_t i = 0; i < a.seqs_q.length(s); ++i) {  // the group's heads are adjacent
        T* dq = dqp + ((q0 + i) * H + hk * group) * D;
        std::fill(dq, dq + group * D, T(0));
      }
      BwdTile<T> t(D);
      const Scratch<T> acc(4 * kBlockK * D16);
      std::optional<Scratch<T>> own;  // packs past what a thread keeps (a head dim of > 5k)
      T* kpan = static_cast<T*>(KeptPacks::get(kKPanelSlot, tile_pack_bytes));
      if (!kpan) kpan = own.emplace(tile_pack_bytes / int64_t(sizeof(T))).get();
      T* vpan = kpan + kBlockKBwd * D;
      T* krow = vpan + kBlockKBwd * D;
      const T* kh = kp + (k0 * Hkv + hk) * D;
      const T* vh = vp + (k0 * Hkv + hk) * D;
      const int64_t Tk = a.seqs_k.length(s);
      for (int64_t tile = 0; tile * kBlockKBwd < Tk; ++tile) {
        const int64_t j0 = tile * kBlockKBwd, nk = std::min(kBlockKBwd, Tk - j0);
        TileMatmul<T>::pack_panels(kh + j0 * Hkv * D, Hkv * D, nk, D, kpan);
        TileMatmul<T>::pack_panels(vh + j0 * Hkv * D, Hkv * D, nk, D, vpan);
        TileMatmul<T>::pack_rows(kh + j0 * Hkv * D, Hkv * D, nk, D, D16, krow);
        key_tile(t, acc.get(), s, hk, tile, hk * group, (hk + 1) * group, /*with_dq=*/true,
                 dkp + (k0 * Hkv + hk) * D, dvp + (k0 * Hkv + hk) * D, Hkv * D, kpan, vpan, krow);
      }
    });
    return;
  }

  // f32: K and V as panels (S = Q·Kᵀ, dP = dO·Vᵀ) and K as rows (dQ += dS·K), packed once.
  const SeqPack<T> k_panels(ctx, a, kp, /*panels=*/true, kKPanelSlot),
      v_panels(ctx, a, vp, /*panels=*/true, kVSlot),
      k_rows(ctx, a, kp, /*panels=*/false, kKRowSlot);

  // Fused with one owner per (sequence, query head), for a batch with fewer (sequence, kv head)
  // pairs than 2 per thread but enough heads (the llama preset's B = 1, H = 4, Hkv = 2 on 2
  // threads): the first head of each group writes its share of dK, dV to dk, dv, the others to
  // `shares`, (keys, Hkv, group − 1, D) for each of dK and dV (together 2(group − 1)/group of
  // dq's size, for a self-attention batch), added in head order after. It saves the two passes'
  // second S, exp and dP (7 tile products per score there, 5 here). Measured (probe_bwd.cpp,
  // bench/results/2026-12-05-cpu-attention-bwd/ab.txt, B = 1, T = 4096, H = 4, Hkv = 2, D = 32,
  // causal, 2 threads, AVX-512, 3 rounds alternating with main's library, load 15-29): 69.0-71.9
  // -> 102.4-109.0 GFLOP per CPU second (1.53x); one pair at load 5.8: 79.0 -> 111.9. The shares
  // are capped at kMaxShareBytes (T = 128k, H = 32, Hkv = 8, D = 128 in f32 would take 3.2 GB
  // beside dq's 2.1 GB): a larger batch takes the two passes, which need no buffer.
  if (per_head) {
    const int64_t n_keys = a.B * a.Tk;  // B = 1 for a packed batch
    const Scratch<T> shares(group > 1 ? 2 * n_keys * Hkv * (group - 1) * D : 1);
    T* dk_shares = shares.get();
    T* dv_shares = dk_shares + n_keys * Hkv * (group - 1) * D;
    parallel_tiles(ctx, a.seqs_k.count * H, [&](int64_t item) {
      const int64_t s = item / H, h = item % H, hk = h / group, g = h % group;
      const int64_t q0 = a.seqs_q.begin(s), k0 = a.seqs_k.begin(s);
      for (int64_t i = 0; i < a.seqs_q.length(s); ++i) {
        T* dq = dqp + ((q0 + i) * H + h) * D;
        std::fill(dq, dq + D, T(0));
      }
      T *dk_out = dkp + (k0 * Hkv + hk) * D, *dv_out = dvp + (k0 * Hkv + hk) * D;
      int64_t ld_out = Hkv * D;
      if (g > 0) {
        dk_out = dk_shares + ((k0 * Hkv + hk) * (group - 1) + g - 1) * D;
        dv_out = dv_shares + ((k0 * Hkv + hk) * (group - 1) + g - 1) * D;
        ld_out = Hkv * (group - 1) * D;
      }
      BwdTile<T> t(D);
      const Scratch<T> acc(4 * kBlockK * D16);
      for (int64_t tile = 0; tile * kBlockKBwd < a.seqs_k.length(s); ++tile)
        key_tile(t, acc.get(), s, hk, tile, h, h + 1, /*with_dq=*/true, dk_out, dv_out, ld_out,
                 k_panels.from_key(s, hk, tile * kBlockKBwd),
                 v_panels.from_key(s, hk, tile * kBlockKBwd),
                 k_rows.from_key(s, hk, tile * kBlockKBwd));
    });
    if (group > 1)
      parallel_for(ctx, n_keys * Hkv, [&](int64_t row) {
        T* dk = dkp + row * D;
        T* dv = dvp + row * D;
        for (int64_t g = 0; g < group - 1; ++g) {
          const T* dk_g = dk_shares + (row * (group - 1) + g) * D;
          const T* dv_g = dv_shares + (row * (group - 1) + g) * D;
          for (int64_t d = 0; d < D; ++d) dk[d] += dk_g[d];
          for (int64_t d = 0; d < D; ++d) dv[d] += dv_g[d];
        }
      });
    return;
  }

  const auto key_tiles = tiles_of(a, /*by_query=*/false, kBlockKBwd);
  parallel_tiles(ctx, int64_t(key_tiles.size()) * Hkv, [&](int64_t item) {
    const auto [s, tile] = key_tiles[size_t(item / Hkv)];
    const int64_t hk = item % Hkv, k0 = a.seqs_k.begin(s);
    BwdTile<T> t(D);
    const Scratch<T> acc(4 * kBlockK * D16);
    key_tile(t, acc.get(), s, hk, tile, hk * group, (hk + 1) * group, /*with_dq=*/false,
             dkp + (k0 * Hkv + hk) * D, dvp + (k0 * Hkv + hk) * D, Hkv * D,
             k_panels.from_key(s, hk, tile * kBlockKBwd),
             v_panels.from_key(s, hk, tile * kBlockKBwd),
             k_rows.from_key(s, hk, tile * kBlockKBwd));
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
    const T* kpan = k_panels.of(s, hk);
    const T* vpan = v_panels.of(s, hk);
    const T* krow = k_rows.of(s, hk);
    const Scratch<T> dq_scratch(n * D16);
    T* dq_acc = dq_scratch.get();  // (n, D16)
    std::fill(dq_acc, dq_acc + n * D16, T(0));
    BwdTile<T> t(D);
    int64_t k_begin = band.lo(i0);
    const int64_t k_end = band.hi(i0 + n - 1);
    if (kpan) k_begin = k_begin / 16 * 16;  // panels start at multiples of 16
    for (int64_t j0 = k_begin; j0 < k_end; j0 += kBlockK) {
      const int64_t nk = std::min(kBlockK, k_end - j0);
      t.compute(qh, doh, H * D, kh, vh, Hkv * D, kpan ? kpan + j0 * D : nullptr,
                vpan ? vpan + j0 * D : nullptr, lse_rows(lp, a, s, h), lse_rows(Di.data(), a, s, h),
                band, scores, i0, n, j0, nk);
      if (t.masked && !all_finite(kh + j0 * Hkv * D, nk, D, Hkv * D))
        masked_product(/*by_query=*/true, band, i0, n, j0, nk, 0, T(1), t.dS, t.ld,
                       kh + j0 * Hkv * D, Hkv * D, D, dq_acc, D16);
      else
        t.add_query_side(n, nk, kh + j0 * Hkv * D, Hkv * D, krow ? krow + j0 * D16 : nullptr,
                         dq_acc, D16);
    }
    for (int64_t r = 0; r < n; ++r)
      std::copy(dq_acc + r * D16, dq_acc + r * D16 + D, dqp + ((q0 + i0 + r) * H + h) * D);
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

#if defined(__AVX2__) && defined(__FMA__)
// f32 kernels of attend_one. A key's score keeps 8 lanes, lane l summing q[d]·k[d] over d ≡ l
// (mod 8) in d order (a masked load pads a last partial chunk with zeros), reduced by one fixed
// tree, ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)), whether the key is one of 8 reduced
// together (hadd transpose) or alone: a score does not depend on its key's position.
// Against the portable loops (dot8 per key, then o += p·v_j over d per key) in attend_one, the
// d_model 128 llama preset at T = 256 went from 0.211-0.224 to 0.193-0.213 ms/token at its
// fastest steps in f32 and 0.137-0.161 to 0.127-0.150 with bf16 weights (three alternating runs
// of 300 steps each, with the one-split output written in place, see decode_impl; one thread,
// 2-core AVX-512 dev VM, load 14-16). The unroll pragmas in accumulate_v_chunks keep its
// accumulators in registers: without them GCC 12 stored all 8 to the stack every pair of keys
// (objdump).

// The mask of the first n (1..8) lanes, for the last chunk of a head dim that is not a multiple
// of 8.
inline __m256i lanes_mask(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// The 8 lanes of 8 keys' sums to their 8 scores, key j in lane j.
inline __m256 reduce8x8(const __m256* a) {
  const __m256 g0 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
  const __m256 g1 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
  // g0 lane j < 4: key j's (l0 + l1) + (l2 + l3); lane 4 + j: its (l4 + l5) + (l6 + l7).
  return _mm256_add_ps(_mm256_permute2f128_ps(g0, g1, 0x20), _mm256_permute2f128_ps(g0, g1, 0x31));
}

// The same tree for one key.
inline float reduce8(__m256 a) {
  const __m256 g = _mm256_hadd_ps(_mm256_hadd_ps(a, a), _mm256_hadd_ps(a, a));
  return _mm_cvtss_f32(_mm_add_ss(_mm256_castps256_ps128(g), _mm256_extractf128_ps(g, 1)));
}

// s[j] = scale · q·k_j for the nk keys from k (leading dim ldk): 8 keys at a time, each with its
// own accumulator, so that one load of q feeds 8 independent FMAs.
void scores_one_f32(const float* q, const float* k, int64_t ldk, int64_t D, int64_t nk, float scale,
                    float* s) {
  const int64_t D8 = D / 8 * 8;
  const __m256i tail = lanes_mask(D - D8);
  const __m256 sc = _mm256_set1_ps(scale);
  int64_t j = 0;
  for (; j + 8 <= nk; j += 8) {
    const float* kj = k + j * ldk;
    __m256 acc[8];
    for (int r = 0; r < 8; ++r) acc[r] = _mm256_setzero_ps();
    for (int64_t d = 0; d < D8; d += 8) {
      const __m256 qd = _mm256_loadu_ps(q + d);
      for (int r = 0; r < 8; ++r)
        acc[r] = _mm256_fmadd_ps(qd, _mm256_loadu_ps(kj + r * ldk + d), acc[r]);
    }
    if (D8 < D) {
      const __m256 qd = _mm256_maskload_ps(q + D8, tail);
      for (int r = 0; r < 8; ++r)
        acc[r] = _mm256_fmadd_ps(qd, _mm256_maskload_ps(kj + r * ldk + D8, tail), acc[r]);
    }
    _mm256_storeu_ps(s + j, _mm256_mul_ps(sc, reduce8x8(acc)));
  }
  for (; j < nk; ++j) {
    const float* kj = k + j * ldk;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t d = 0; d < D8; d += 8)
      acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), _mm256_loadu_ps(kj + d), acc);
    if (D8 < D)
      acc =
          _mm256_fmadd_ps(_mm256_maskload_ps(q + D8, tail), _mm256_maskload_ps(kj + D8, tail), acc);
    s[j] = scale * reduce8(acc);
  }
}

// o[d] = alpha · o[d] + Σ_j p[j] · v_j[d] over the nk rows from v (leading dim ldv), for the
// chunks [c0, c0 + NC) of 8 dims (`tail` masks the last chunk of a partial head dim). The even
// and odd keys go to two sets of accumulators (added at the end), so that each chain waits one
// FMA latency every two keys instead of every key.
// Chunk c of NC from x: a plain load but for a partial last chunk (a masked load is one more
// uop).
template <int NC, bool kPartial>
inline __m256 load_chunk(const float* x, int c, __m256i tail) {
  return kPartial && c == NC - 1 ? _mm256_maskload_ps(x, tail) : _mm256_loadu_ps(x);
}

template <int NC, bool kPartial>
void accumulate_v_chunks(const float* p, const float* v, int64_t ldv, int64_t nk, float alpha,
                         int64_t c0, __m256i tail, float* o) {
  const float* vd = v + c0 * 8;
  __m256 even[NC], odd[NC];
#pragma GCC unroll 4
  for (int c = 0; c < NC; ++c) {
    even[c] = _mm256_mul_ps(_mm256_set1_ps(alpha), _mm256_loadu_ps(o + (c0 + c) * 8));
    odd[c] = _mm256_setzero_ps();
  }
  int64_t j = 0;
  for (; j + 2 <= nk; j += 2) {
    const __m256 p0 = _mm256_broadcast_ss(p + j), p1 = _mm256_broadcast_ss(p + j + 1);
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) {
      even[c] =
          _mm256_fmadd_ps(p0, load_chunk<NC, kPartial>(vd + j * ldv + c * 8, c, tail), even[c]);
      odd[c] = _mm256_fmadd_ps(p1, load_chunk<NC, kPartial>(vd + (j + 1) * ldv + c * 8, c, tail),
                               odd[c]);
    }
  }
  if (j < nk) {
    const __m256 p0 = _mm256_broadcast_ss(p + j);
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c)
      even[c] =
          _mm256_fmadd_ps(p0, load_chunk<NC, kPartial>(vd + j * ldv + c * 8, c, tail), even[c]);
  }
#pragma GCC unroll 4
  for (int c = 0; c < NC; ++c) _mm256_storeu_ps(o + (c0 + c) * 8, _mm256_add_ps(even[c], odd[c]));
}

// Calls chunks(c0, NC, kPartial) (the last two as std::integral_constant) over a row of D floats
// in 8-float chunks: passes of 4 whole chunks from c0, then the last 1-4, the last of them
// partial or not.
template <class Chunks>
void over_v_chunks(int64_t D, Chunks&& chunks) {
  const int64_t n = (D + 7) / 8;
  const bool partial = D % 8 != 0;
  int64_t c0 = 0;
  for (; c0 + 4 < n; c0 += 4) chunks(c0, std::integral_constant<int, 4>(), std::false_type());
  auto last = [&](auto nc) {
    if (partial)
      chunks(c0, nc, std::true_type());
    else
      chunks(c0, nc, std::false_type());
  };
  switch (n - c0) {
    case 4:
      return last(std::integral_constant<int, 4>());
    case 3:
      return last(std::integral_constant<int, 3>());
    case 2:
      return last(std::integral_constant<int, 2>());
    default:
      return last(std::integral_constant<int, 1>());
  }
}

// accumulate_v_chunks over the whole head dim, 4 chunks (32 dims) a pass: 8 accumulators, and
// each V row's 128 bytes read in one pass. o holds D rounded up to 8 floats.
void accumulate_v_f32(const float* p, const float* v, int64_t ldv, int64_t D, int64_t nk,
                      float alpha, float* o) {
  const __m256i tail = lanes_mask(D - ((D + 7) / 8 - 1) * 8);
  over_v_chunks(D, [&](int64_t c0, auto nc, auto partial) {
    accumulate_v_chunks<decltype(nc)::value, decltype(partial)::value>(p, v, ldv, nk, alpha, c0,
                                                                       tail, o);
  });
}
#endif

// attend_rows for one query row (a decode step, Tq = 1) of one (batch, head): the same online
// softmax over blocks of kBlockK keys, with the scores as Tk dot products and the output as a
// weighted sum of V rows, so nothing is packed and no 6-row block is computed for one row.
// The d_model 128 llama preset decoded at T = 256 in 0.30 ms/token with attend_rows' tiles for
// the one row (42% of its profile), in 0.21 with this (one thread, the 2-core AVX-512 dev VM at
// load 10). The one row sees a contiguous range of keys, so no mask is needed.
// Head dims up to kOneQueryMaxD (its accumulator is on the stack); larger ones take attend_rows.
constexpr int64_t kOneQueryMaxD = 512;

// The end of attend_one: out = o / l and its lse, or the empty row's 0 (NaN where the keys it
// sees all scored -inf).
template <class T>
void finish_one(const T* o, T m, T l, int64_t D, const Band& band, int64_t kb, int64_t ke, T* out,
                T* lse) {
  if (l == T(0)) {
    const bool nan = kb == 0 && ke == band.Tk && band.sees_any(0, kb, ke);
    std::fill(out, out + D, nan ? std::numeric_limits<T>::quiet_NaN() : T(0));
    *lse = nan ? std::numeric_limits<T>::quiet_NaN() : -std::numeric_limits<T>::infinity();
    return;
  }
  const T inv = T(1) / l;
  for (int64_t d = 0; d < D; ++d) out[d] = o[d] * inv;
  *lse = T((double(m) + std::log2(double(l))) * kLn2);
}

// One block's online-softmax step of attend_one for one row: the new max, s = 2^(s - m), l and
// alpha (the factor of the output so far); false when the block adds nothing (all -inf).
template <class T>
bool softmax_step(T* s, int64_t nk, T& m, T& l, T& alpha) {
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
  // As attend_rows: a NaN running max stays NaN; an all -inf block adds nothing.
  T m_new = std::max(m, row_max(s, nk));
  if (m_new == kNegInf) {
    if (!has_nan(s, nk)) return false;
    m_new = std::numeric_limits<T>::quiet_NaN();
  }
  alpha = m == kNegInf ? T(0) : T(std::exp2(m - m_new));
  // The sum first: `l * alpha + exp2_shifted(..)` had GCC multiply before the call and add
  // after it, where attend_one's inline code took one FMA (an ulp apart where alpha != 1).
  const T sum = exp2_shifted(s, nk, m_new);
  l = l * alpha + sum;
  m = m_new;
  return true;
}

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
#if defined(__AVX2__) && defined(__FMA__)
    if constexpr (std::is_same_v<T, float>)
      scores_one_f32(q, k + j0 * ldkv, ldkv, D, nk, scale, s);
    else
#endif
      for (int64_t j = 0; j < nk; ++j) s[j] = scale * dot8(q, k + (j0 + j) * ldkv, D);
    if (scores.softcap != T(0))
      for (int64_t j = 0; j < nk; ++j) s[j] = cap2 * std::tanh(s[j] * inv_cap);
    T alpha;
    if (!softmax_step(s, nk, m, l, alpha)) continue;
#if defined(__AVX2__) && defined(__FMA__)
    if constexpr (std::is_same_v<T, float>) {
      accumulate_v_f32(s, v + j0 * ldkv, ldkv, D, nk, alpha, o);
      continue;
    }
#endif
    if (alpha != T(1))
      for (int64_t d = 0; d < D; ++d) o[d] *= alpha;
    for (int64_t j = 0; j < nk; ++j) {
      const T p = s[j], *vj = v + (j0 + j) * ldkv;
      for (int64_t d = 0; d < D; ++d) o[d] += p * vj[d];
    }
  }
  finish_one(o, m, l, D, band, kb, ke, out, lse);
}

#if defined(__AVX2__) && defined(__FMA__)
// attend_one for two query heads of one kv group (GQA), in one pass over their keys and values:
// each K and V row is loaded once for both heads' FMAs. Each head's numbers go through the same
// operations in the same order as attend_one's (the score lanes and their reduction tree, the
// even/odd accumulators of o), so the outputs are bitwise attend_one's. The AVX-512 machines
// only: the same 8-lane arithmetic, but with 32 vector registers (16 accumulators in each loop).
// The d_model 128 llama preset (4 heads, 2 kv heads, D = 32) at T = 256-296, one thread, median
// of 2000 steps (bench/results/2026-12-06-cpu-decode-small/decode_loop.cpp, 6 alternating runs,
// OMP_WAIT_POLICY passive and unset alike, load 1.5-1.6, 2-core Zen 4 VM): f32 weights
// 85.0-86.0 -> 82.9-83.9 us a step, bf16 74.6-76.0 -> 73.4-74.9 (the K/V loads were where
// scores_one_f32's samples sat, perf).
#define LONGCTX_TWO_HEADS __attribute__((target("avx2,fma,avx512f,avx512vl")))

// scores_one_f32 for the queries q0 and q1 against the same keys.
LONGCTX_TWO_HEADS void scores_two_f32(const float* q0, const float* q1, const float* k, int64_t ldk,
                                      int64_t D, int64_t nk, float scale, float* s0, float* s1) {
  const int64_t D8 = D / 8 * 8;
  const __m256i tail = lanes_mask(D - D8);
  const __m256 sc = _mm256_set1_ps(scale);
  int64_t j = 0;
  for (; j + 8 <= nk; j += 8) {
    const float* kj = k + j * ldk;
    __m256 a0[8], a1[8];
#pragma GCC unroll 8
    for (int r = 0; r < 8; ++r) a0[r] = a1[r] = _mm256_setzero_ps();
    for (int64_t d = 0; d < D8; d += 8) {
      const __m256 x0 = _mm256_loadu_ps(q0 + d), x1 = _mm256_loadu_ps(q1 + d);
#pragma GCC unroll 8
      for (int r = 0; r < 8; ++r) {
        const __m256 kr = _mm256_loadu_ps(kj + r * ldk + d);
        a0[r] = _mm256_fmadd_ps(x0, kr, a0[r]);
        a1[r] = _mm256_fmadd_ps(x1, kr, a1[r]);
      }
    }
    if (D8 < D) {
      const __m256 x0 = _mm256_maskload_ps(q0 + D8, tail), x1 = _mm256_maskload_ps(q1 + D8, tail);
#pragma GCC unroll 8
      for (int r = 0; r < 8; ++r) {
        const __m256 kr = _mm256_maskload_ps(kj + r * ldk + D8, tail);
        a0[r] = _mm256_fmadd_ps(x0, kr, a0[r]);
        a1[r] = _mm256_fmadd_ps(x1, kr, a1[r]);
      }
    }
    _mm256_storeu_ps(s0 + j, _mm256_mul_ps(sc, reduce8x8(a0)));
    _mm256_storeu_ps(s1 + j, _mm256_mul_ps(sc, reduce8x8(a1)));
  }
  for (; j < nk; ++j) {
    const float* kj = k + j * ldk;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    for (int64_t d = 0; d < D8; d += 8) {
      const __m256 kr = _mm256_loadu_ps(kj + d);
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q0 + d), kr, a0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q1 + d), kr, a1);
    }
    if (D8 < D) {
      const __m256 kr = _mm256_maskload_ps(kj + D8, tail);
      a0 = _mm256_fmadd_ps(_mm256_maskload_ps(q0 + D8, tail), kr, a0);
      a1 = _mm256_fmadd_ps(_mm256_maskload_ps(q1 + D8, tail), kr, a1);
    }
    s0[j] = scale * reduce8(a0);
    s1[j] = scale * reduce8(a1);
  }
}

// accumulate_v_chunks for two heads' weights p0, p1 (and factors alpha0, alpha1) over the same
// V rows, into o0 and o1.
template <int NC, bool kPartial>
LONGCTX_TWO_HEADS void accumulate_v_chunks_two(const float* p0, const float* p1, const float* v,
                                               int64_t ldv, int64_t nk, float alpha0, float alpha1,
                                               int64_t c0, __m256i tail, float* o0, float* o1) {
  const float* vd = v + c0 * 8;
  __m256 even0[NC], odd0[NC], even1[NC], odd1[NC];
#pragma GCC unroll 4
  for (int c = 0; c < NC; ++c) {
    even0[c] = _mm256_mul_ps(_mm256_set1_ps(alpha0), _mm256_loadu_ps(o0 + (c0 + c) * 8));
    even1[c] = _mm256_mul_ps(_mm256_set1_ps(alpha1), _mm256_loadu_ps(o1 + (c0 + c) * 8));
    odd0[c] = odd1[c] = _mm256_setzero_ps();
  }
  int64_t j = 0;
  for (; j + 2 <= nk; j += 2) {
    const __m256 e0 = _mm256_broadcast_ss(p0 + j), d0 = _mm256_broadcast_ss(p0 + j + 1);
    const __m256 e1 = _mm256_broadcast_ss(p1 + j), d1 = _mm256_broadcast_ss(p1 + j + 1);
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) {
      const __m256 ve = load_chunk<NC, kPartial>(vd + j * ldv + c * 8, c, tail);
      const __m256 vo = load_chunk<NC, kPartial>(vd + (j + 1) * ldv + c * 8, c, tail);
      even0[c] = _mm256_fmadd_ps(e0, ve, even0[c]);
      even1[c] = _mm256_fmadd_ps(e1, ve, even1[c]);
      odd0[c] = _mm256_fmadd_ps(d0, vo, odd0[c]);
      odd1[c] = _mm256_fmadd_ps(d1, vo, odd1[c]);
    }
  }
  if (j < nk) {
    const __m256 e0 = _mm256_broadcast_ss(p0 + j), e1 = _mm256_broadcast_ss(p1 + j);
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) {
      const __m256 ve = load_chunk<NC, kPartial>(vd + j * ldv + c * 8, c, tail);
      even0[c] = _mm256_fmadd_ps(e0, ve, even0[c]);
      even1[c] = _mm256_fmadd_ps(e1, ve, even1[c]);
    }
  }
#pragma GCC unroll 4
  for (int c = 0; c < NC; ++c) {
    _mm256_storeu_ps(o0 + (c0 + c) * 8, _mm256_add_ps(even0[c], odd0[c]));
    _mm256_storeu_ps(o1 + (c0 + c) * 8, _mm256_add_ps(even1[c], odd1[c]));
  }
}

// accumulate_v_f32 for two heads: the same passes of 4 chunks.
LONGCTX_TWO_HEADS void accumulate_v_two_f32(const float* p0, const float* p1, const float* v,
                                            int64_t ldv, int64_t D, int64_t nk, float alpha0,
                                            float alpha1, float* o0, float* o1) {
  const __m256i tail = lanes_mask(D - ((D + 7) / 8 - 1) * 8);
  over_v_chunks(D, [&](int64_t c0, auto nc, auto partial) {
    accumulate_v_chunks_two<decltype(nc)::value, decltype(partial)::value>(
        p0, p1, v, ldv, nk, alpha0, alpha1, c0, tail, o0, o1);
  });
}

// attend_one (f32) for the queries q0 and q1, which see the same keys: out0, lse0 and out1, lse1.
void attend_two_f32(const float* q0, const float* q1, const float* k, const float* v, int64_t ldkv,
                    int64_t D, const Band& band, const Scores<float>& scores, int64_t kb,
                    int64_t ke, float* out0, float* lse0, float* out1, float* lse1) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  float s0[kBlockK], s1[kBlockK], o0[kOneQueryMaxD] = {}, o1[kOneQueryMaxD] = {};
  float m0 = kNegInf, l0 = 0, m1 = kNegInf, l1 = 0;
  const int64_t k_begin = std::max(kb, band.lo(0)), k_end = std::min(ke, band.hi(0));
  const float scale = scores.softcap == 0.f ? float(scores.scale * kLog2e) : scores.scale;
  const float inv_cap = scores.softcap == 0.f ? 0.f : 1.f / scores.softcap;
  const float cap2 = float(scores.softcap * kLog2e);
  for (int64_t j0 = k_begin; j0 < k_end; j0 += kBlockK) {
    const int64_t nk = std::min(kBlockK, k_end - j0);
    scores_two_f32(q0, q1, k + j0 * ldkv, ldkv, D, nk, scale, s0, s1);
    if (scores.softcap != 0.f)
      for (int64_t j = 0; j < nk; ++j) {
        s0[j] = cap2 * std::tanh(s0[j] * inv_cap);
        s1[j] = cap2 * std::tanh(s1[j] * inv_cap);
      }
    float alpha0, alpha1;
    const bool add0 = softmax_step(s0, nk, m0, l0, alpha0);
    const bool add1 = softmax_step(s1, nk, m1, l1, alpha1);
    if (add0 && add1) {
      accumulate_v_two_f32(s0, s1, v + j0 * ldkv, ldkv, D, nk, alpha0, alpha1, o0, o1);
    } else {
      if (add0) accumulate_v_f32(s0, v + j0 * ldkv, ldkv, D, nk, alpha0, o0);
      if (add1) accumulate_v_f32(s1, v + j0 * ldkv, ldkv, D, nk, alpha1, o1);
    }
  }
  finish_one(o0, m0, l0, D, band, kb, ke, out0, lse0);
  finish_one(o1, m1, l1, D, band, kb, ke, out1, lse1);
}
#undef LONGCTX_TWO_HEADS
#endif

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

  // With a GQA group of an even size, on AVX-512 machines, one item takes two query heads of a
  // group (attend_two_f32: the same bits as attend_one on each).
  bool two = false;
#if defined(__AVX2__) && defined(__FMA__)
  two = std::is_same_v<T, float> && Tq == 1 && D <= kOneQueryMaxD && group % 2 == 0 &&
        cpu_isa() == CpuIsa::avx512;
#endif
  const int64_t per = two ? 2 : 1, units = H / per;

  // Splits: enough work items (units of heads) for every thread twice over, each split at least
  // 256 keys.
  int64_t splits = num_splits;
  if (splits == 0) {
    const int64_t want = (2 * ctx.cpu_threads() + B * units - 1) / std::max<int64_t>(B * units, 1);
    splits = std::clamp(want, int64_t(1), std::max<int64_t>(1, max_keys / 256));
  }
  // Partial results per (b, h, split): normalised O_s (Tq, D) and lse_s (Tq). One split is the
  // result itself (the combine of one split is the identity: weight e^0 = 1, lse + log 1): it is
  // written in place, with no buffers to allocate and no combine pass.
  const bool direct = splits == 1;
  std::vector<T> part_o(direct ? 0 : size_t(B * H * splits * Tq * D));
  std::vector<T> part_lse(direct ? 0 : size_t(B * H * splits * Tq));
  auto attend = [&](int64_t unit_item) {
    const int64_t s = unit_item % splits, bu = unit_item / splits, b = bu / units;
    const int64_t h = bu % units * per, bh = b * H + h, item = bh * splits + s, hk = h / group;
    const int64_t Tk = keys(b), len = (Tk + splits - 1) / splits;
    const int64_t kb = std::min(Tk, s * len), ke = std::min(Tk, kb + len);
    const Band band(Tq, Tk, a);
    T* po = direct ? op + (b * Tq * H + h) * D : part_o.data() + item * Tq * D;
    const int64_t ldo = direct ? H * D : D;
    T* pl = direct ? lp + bh * Tq : part_lse.data() + item * Tq;
    const T* kh = kc + (b * Tmax * Hkv + hk) * D;
    const T* vh = vc + (b * Tmax * Hkv + hk) * D;
#if defined(__AVX2__) && defined(__FMA__)
    if constexpr (std::is_same_v<T, float>) {
      if (two) {  // head h + 1: its output D further (direct) or `splits` items further
        T* po1 = direct ? po + D : po + splits * Tq * D;
        T* pl1 = direct ? pl + Tq : pl + splits * Tq;
        return attend_two_f32(qp + (b * H + h) * D, qp + (b * H + h + 1) * D, kh, vh, Hkv * D, D,
                              band, scores, kb, ke, po, pl, po1, pl1);
      }
    }
#endif
    if (Tq == 1 && D <= kOneQueryMaxD)
      return attend_one(qp + (b * H + h) * D, kh, vh, Hkv * D, D, band, scores, kb, ke, po, pl);
    for (int64_t i0 = 0; i0 < Tq; i0 += kBlockQ)
      attend_rows(qp + (b * Tq * H + h) * D, H * D, kh, vh, Hkv * D, D, band, scores, i0,
                  std::min(kBlockQ, Tq - i0), kb, ke, po, ldo, pl + i0);
  };
  const bool serial = Tq * B * H * max_keys * D * 2 < kDecodeParallelMacs;
  if (serial) {
    for (int64_t item = 0; item < B * units * splits; ++item) attend(item);
  } else {
    parallel_tiles(ctx, B * units * splits, attend);
  }
  if (direct) return;

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
