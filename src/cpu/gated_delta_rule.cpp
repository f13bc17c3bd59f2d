// gated_delta_rule on the CPU, see include/longctx/ops/gated_delta_rule.h.
//
// A work item is a (sequence, value head) pair in the backward and G value heads of one sequence
// in the forward (head_group), run chunk after chunk with each head's K x V state in f32 (f64 for
// f64). A chunk of C tokens, from the state S entering it, with
//   γ_i = exp(g_0 + ... + g_i)          the decay from the chunk's start through token i
//   ρ_j = exp(g_{j+1} + ... + g_{C-1})  from after token j to the chunk's end
//   E_ij = exp(g_{j+1} + ... + g_i)     for j <= i (per key channel for KDA)
// (for a per-head gate each the exponential of its own segment's sum, in step order; for KDA
// running products of exp(g) over at most a block of rows, see kda_gamma_rho: never a difference
// of cumulative sums, whose rounding would become a relative error of a decay near 1 after
// decays near 0), and the gated products P_ij = Σ_c k̂_ic k̂_jc E_ijc (j < i), M_ij = scale Σ_c q̂_ic
// k̂_jc E_ijc (j <= i), A = diag(β) P:
//   U = (I + A)⁻¹ diag(β) (V − (γ ⊙ K̂) S)      the delta values (a unit lower-triangular solve)
//   O = (scale γ ⊙ Q̂) S + M U                    the chunk's outputs
//   S ← diag(γ_{C-1}) S + (ρ ⊙ K̂)ᵀ U             the state leaving it
// Every chunk is computed at its full length C (the rows past a sequence's end are identity
// steps, see load_chunk), so its products are the same calls whatever the layout of the batch:
// the results are bitwise batch invariant. The Gated DeltaNet forward forms the same U, O and S
// in another order (run_chunk_scalar_fwd: γ applied to the products' results).
// The chunk's rows of q and k are copied to scratch; v's and g's are read where they lie. In f32
// on x86 the products of load_chunk, run_chunk and run_chunk_scalar_fwd (P and M, the products
// with S, U and M, and the solve) run on the row kernels below (mul_add, solve_unit_lower); the
// backward's second pass (chunk_bwd) calls OpenBLAS (gemm, trsm_unit_lower). All of them run
// single-threaded inside the parallel loop over work items, an item at a time per thread, so that
// its scratch stays in the L2 cache. For Gated DeltaNet
// E is one C x C matrix and P, M are a product on their triangles masked by it; for KDA E has K
// values per pair, P and M are products left of each block of kEBlock rows (E factored there) and
// loops over the channels within it, and so are their gradients (kda_gated_products_bwd).
//
// Backward per item: a first pass recomputes the state entering each chunk and the chunk's U and
// V − (γ ⊙ K̂) S; a second pass, chunks last to first, carries dS (from dfinal_state) back
// through each chunk by the transposed products (the solve becomes a transposed solve); each g_t
// collects the sensitivities of the decay factors whose segment contains t (chunk_bwd). q/k
// gradients are written per value head and summed over each q/k head's HV / H value heads
// afterwards, in order (with the l2norm's backward), so every sum has a fixed order.
#include <algorithm>
#include <cmath>
#include <memory>
#include <new>
#include <type_traits>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

#include "src/core/dispatch.h"
#include "src/cpu/aligned_vector.h"
#include "src/cpu/blas.h"
#include "src/cpu/exp_array.h"
#include "src/cpu/isa.h"
#include "src/cpu/parallel.h"
#include "src/ops/gated_delta_rule.h"

namespace longctx::cpu {

namespace {

// The scratch buffers' allocator: 64-byte aligned, so that a row of a 64-byte multiple stride
// (K = V = 128 in f32: 512 bytes) starts a cache line and the row kernels' zmm loads and stores
// never split a line. std::vector's memory is malloc's, only 16-byte aligned (glibc): a state,
// chunk or scratch buffer 16, 32 or 48 bytes past a line takes two lines per zmm access. The state
// products ran at ~145 GFLOP/s in the forward against ~175 in a probe on aligned buffers; least
// of 7168 calls, X = [K̂; Q̂] S took 75k TSC cycles against 61k, and 72-74k when repeated at once
// on hot operands (so not the cache's state; rows padded to 576 bytes or the buffers skewed
// changed nothing: bench/results/2026-12-05-cpu-gdn-speed-8).
// Measured (B = 1, T = 8192, H = 8, K = V = 128, one thread, fwd_probe best of 6, CPU time,
// alternating with the library before, load 4.4-4.6): Gated DeltaNet forward 89.6 -> 79.7 ms
// (-11.0%, 10 of 10 rounds), KDA forward 150.6 -> 129.6 ms (-14.0%, 6 of 6); the same bits.
// The allocator: LineAligned (aligned_vector.h), shared with the other ops' scratch.
template <class T>
using Vec = LineVector<T>;

// The accumulator of the backward's short sums (dbeta, the decay gradient; O(C² + C·V) terms
// per chunk, next to the O(C·K·V) products): f64. dbeta_i = <dR_i, Vm_i> + Σ_j dA_ij P_ij is
// two sums that cancel (together they are <dR_i, the token's residual v − S'ᵀ k̂>); summed in f32
// they were 1.26x over the 2x rule on the chunk_longer_than_T case.
template <class T>
using Acc = double;

template <class T>
void grow(Vec<T>& v, int64_t n) {
  if (int64_t(v.size()) < n) v.resize(size_t(n));
}

// Σ_i a_i b_i in the type R, as 8 interleaved partial sums added in a fixed order at the end:
// the same bits every run, and a loop the compiler vectorizes. (One running sum is a chain of
// dependent adds: the l2norm's sums alone took 25% of the forward's time that way.)
template <class R, class A, class B>
R dot(const A* a, const B* b, int64_t n) {
  R part[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) part[l] += R(a[i + l]) * R(b[i + l]);
  for (; i < n; ++i) part[0] += R(a[i]) * R(b[i]);
  return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
}

// 1 / sqrt(Σ x² + eps): the l2norm's factor for a row of K values.
template <class T>
T l2norm_rstd(const T* x, int64_t K) {
  return T(1) / std::sqrt(dot<T>(x, x, K) + T(kL2NormEps));
}

// The l2norm's backward, d ← rstd (d − x̂ (x̂ · d)) with x̂ = x rstd, for a row of K values. With
// s = Σ x², e = kL2NormEps that is rstd (r + e / (s + e) · a x), r = d − a x the part of d
// orthogonal to x, a = (x · d) / s. Formed directly, d − x̂ (x̂ · d) cancels when d is near x's
// direction (at K = 1 it is d e / (x² + e), a difference of values 1e5 times larger: dq was 1.45x
// the 2x rule in f32 at chunk size 1, dk 3.3x in f64); r is projected twice (the second pass
// removes the first's rounding along x), so the small parallel part keeps its relative accuracy.
// In Acc (f64 for f32): O(K) per row.
template <class T>
void l2norm_bwd(const T* x, T* d, int64_t K) {
  using A = Acc<T>;
  const A s = dot<A>(x, x, K), e = A(kL2NormEps), rstd = A(1) / std::sqrt(s + e);
  if (s == A(0)) {  // x̂ = 0
    for (int64_t c = 0; c < K; ++c) d[c] = T(rstd * A(d[c]));
    return;
  }
  thread_local Vec<A> r;
  grow(r, K);
  const A a = dot<A>(x, d, K) / s;
  for (int64_t c = 0; c < K; ++c) r[size_t(c)] = A(d[c]) - a * A(x[c]);
  const A b = dot<A>(x, r.data(), K) / s;
  const A par = e / (s + e) * (a + b);
  for (int64_t c = 0; c < K; ++c) d[c] = T(rstd * (r[size_t(c)] - b * A(x[c]) + par * A(x[c])));
}

// ---- The forward's products: row blocks on unpacked operands -------------------------------
//
// c (m x n) (+)= ± a · b, every operand row-major, a's element (i, j) at a[i * ars + j * acs] (a
// transposed operand is a stride, not a copy). In f32 on x86 these are register-blocked kernels
// that read b's rows where they lie: 6 rows of c by 64 columns (AVX-512, 24 zmm accumulators; a
// row of b, 4 loads, then serves 24 FMAs instead of 16 with 4 rows: forward 112-113 -> 106-110 ms
// CPU, bitwise equal, the setting of the measurement below) or 4 rows by 16 columns (AVX2), the
// last columns masked. With OpenBLAS at these sizes (C = 64,
// K = V = 128) perf put 9% of the forward's samples in its packing copies and 10% in strsm (its
// kernel ran at ~35 GFLOP/s where sgemm's ran at ~120). Every element is one chain of FMAs over j
// in increasing order from c (or 0), in both kernels: the AVX2 and AVX-512 results are bitwise
// equal (test GatedDeltaRuleIsa). f64 (and builds without AVX2) go to the BLAS.
// The sign of a negated product is the FMA's (fnmadd: −(x b) + s, the same bits as (−x) b + s),
// so a's element is broadcast straight from memory (a load) instead of multiplied by ±1 and
// broadcast from a register (a shuffle on the port the AVX-512 FMAs also use): forward 130-138
// -> 115-122 ms CPU, outputs bitwise equal (B = 1, T = 8192, H = 8, K = V = 128, one thread,
// load 22-24, bench/results/2026-12-05-cpu-gdn-speed-3).
//
// Measured, the row kernels against OpenBLAS (f32, B = 1, H = 8, K = V = 128, CPU time, the
// 2-core machine at load 5-10): at T = 256, where the inputs stay in the cache, 3.0-3.2 -> 2.8-3.1
// ms (one thread, best of 40, alternating runs); at T = 8192 2-4% (135 -> 130 ms, 2 threads,
// bench_gdn, bench/results/2026-12-05-cpu-gdn-speed), within the noise: there the reads of q, k,
// v (a new 4 KB page every row) take a larger share, and software prefetching of the next chunk's
// rows only moved the wait from load_chunk into the products. Two blockings measured no gain at
// T = 8192 nor T = 512 (the same bits, bench/results/2026-12-05-cpu-gdn-speed-4): b in 64 x 64
// blocks each swept by all the row blocks (L1-resident instead of the 64 KB state from L2 per row
// block), and P, M in 32-row slabs of 6-row blocks instead of 4-row blocks (then every block's
// last zmm still loaded through a mask; see gated_products for the bands since); perf puts the 6 x
// 64 kernel's samples across its FMAs and loads, not on one waiting load. Nor did the column panels
// outside the row blocks (a 32 KB panel of the state kept in L1): forward 87.7 -> 88.7 ms mean,
// faster in 2 of 8 rounds (bench/results/2026-12-05-cpu-gdn-speed-6, with other register blocks).
//
// `tri` = Tri::inner: a's row i is zero past column i (a lower-triangular a), so a row block sums
// only j <= its last row. `c_scale` (kernels: `cs`), when given: when accumulating, c's row r is
// first multiplied by c_scale[r * c_scale_step] (one rounding, as a separate pass over c would: the
// same bits; step 0 for one scale, Gated DeltaNet's decay, 1 for KDA's per channel), so that the
// state decay costs no pass of its own over the 64 KB state (kernel_probe in
// bench/results/2026-12-05-cpu-gdn-speed-5: 14.46 us with the decay, 14.52 without).
// A block whose columns fill its last zmm (every 64-column panel of the state products) loads and
// stores without a mask (kMasked = false): the masked load of b's last 16 columns in every step
// held the kernel back (X = [K̂; Q̂] S 156-161 -> 169-177 GFLOP/s alone; the Gated DeltaNet
// forward, fwd_probe T = 8192, best of 6, 4 alternating rounds, 94.7-96.0 -> 91.4-94.6 ms CPU, 4
// of 4 faster, the same output bits; load 5-7; bench/results/2026-12-05-cpu-gdn-speed-6).
enum class Tri { none, inner };

#if defined(__AVX2__) && defined(__FMA__)
constexpr bool kRowKernels = true;

template <int R, int NZ, bool kNegate, bool kMasked>
__attribute__((target("avx512f"))) void block_avx512_signed(
    const float* a, int64_t ars, int64_t acs, const float* b, int64_t ldb, int64_t nk,
    bool accumulate, const float* cs, int64_t cs_step, float* c, int64_t ldc, __mmask16 last) {
  __mmask16 m[NZ];
  for (int z = 0; z < NZ; ++z) m[z] = kMasked && z == NZ - 1 ? last : __mmask16(0xFFFF);
  __m512 s[R][NZ];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int z = 0; z < NZ; ++z)
      s[r][z] =
          accumulate ? _mm512_maskz_loadu_ps(m[z], c + r * ldc + 16 * z) : _mm512_setzero_ps();
  if (accumulate && cs)
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int z = 0; z < NZ; ++z)
        s[r][z] = _mm512_mul_ps(s[r][z], _mm512_set1_ps(cs[r * cs_step]));
  for (int64_t j = 0; j < nk; ++j) {
    __m512 bz[NZ];
#pragma GCC unroll 4
    for (int z = 0; z < NZ; ++z) bz[z] = _mm512_maskz_loadu_ps(m[z], b + j * ldb + 16 * z);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 x = _mm512_set1_ps(a[r * ars + j * acs]);
#pragma GCC unroll 4
      for (int z = 0; z < NZ; ++z)
        s[r][z] =
            kNegate ? _mm512_fnmadd_ps(x, bz[z], s[r][z]) : _mm512_fmadd_ps(x, bz[z], s[r][z]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int z = 0; z < NZ; ++z) _mm512_mask_storeu_ps(c + r * ldc + 16 * z, m[z], s[r][z]);
}

template <int R, int NY>
void block_avx2(const float* a, int64_t ars, int64_t acs, bool negate, const float* b, int64_t ldb,
                int64_t nk, bool accumulate, const float* cs, int64_t cs_step, float* c,
                int64_t ldc, __m256i last) {
  __m256i m[NY];
  for (int y = 0; y < NY; ++y) m[y] = y == NY - 1 ? last : _mm256_set1_epi32(-1);
  __m256 s[R][NY];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
    for (int y = 0; y < NY; ++y)
      s[r][y] = accumulate ? _mm256_maskload_ps(c + r * ldc + 8 * y, m[y]) : _mm256_setzero_ps();
  if (accumulate && cs)
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
      for (int y = 0; y < NY; ++y)
        s[r][y] = _mm256_mul_ps(s[r][y], _mm256_set1_ps(cs[r * cs_step]));
  auto sweep = [&](auto neg) {
    for (int64_t j = 0; j < nk; ++j) {
      __m256 by[NY];
#pragma GCC unroll 2
      for (int y = 0; y < NY; ++y) by[y] = _mm256_maskload_ps(b + j * ldb + 8 * y, m[y]);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const __m256 x = _mm256_set1_ps(a[r * ars + j * acs]);
#pragma GCC unroll 2
        for (int y = 0; y < NY; ++y)
          s[r][y] = decltype(neg)::value ? _mm256_fnmadd_ps(x, by[y], s[r][y])
                                         : _mm256_fmadd_ps(x, by[y], s[r][y]);
      }
    }
  };
  negate ? sweep(std::true_type{}) : sweep(std::false_type{});
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
    for (int y = 0; y < NY; ++y) _mm256_maskstore_ps(c + r * ldc + 8 * y, m[y], s[r][y]);
}

// Calls f(std::integral_constant<int, NZ>{}, std::bool_constant<kMasked>{}, n0, last) for each
// panel of up to 64 of the columns [0, n), from n0: NZ zmm of 16 columns, the last one's lanes in
// `last`; kMasked false when they are all 16 (a full panel loads and stores without a mask).
template <class F>
void for_each_zmm_panel(int64_t n, F&& f) {
  for (int64_t n0 = 0; n0 < n; n0 += 64) {
    const int64_t w = std::min<int64_t>(64, n - n0), nz = (w + 15) / 16;
    const __mmask16 last = __mmask16((1u << (w - 16 * (nz - 1))) - 1);
    auto with_mask = [&](auto z) {
      if (last == __mmask16(0xFFFF))
        f(z, std::false_type{}, n0, last);
      else
        f(z, std::true_type{}, n0, last);
    };
    switch (nz) {
      case 4:
        with_mask(std::integral_constant<int, 4>{});
        break;
      case 3:
        with_mask(std::integral_constant<int, 3>{});
        break;
      case 2:
        with_mask(std::integral_constant<int, 2>{});
        break;
      default:
        with_mask(std::integral_constant<int, 1>{});
    }
  }
}

// One block of R rows of c, columns [0, n).
template <int R>
void block_rows(const float* a, int64_t ars, int64_t acs, bool negate, const float* b, int64_t ldb,
                int64_t n, int64_t nk, bool accumulate, const float* cs, int64_t cs_step, float* c,
                int64_t ldc, bool avx512) {
  if (avx512) {
    for_each_zmm_panel(n, [&](auto nz, auto masked, int64_t n0, __mmask16 last) {
      constexpr int NZ = decltype(nz)::value;
      constexpr bool kMasked = decltype(masked)::value;
      if (negate)
        block_avx512_signed<R, NZ, true, kMasked>(a, ars, acs, b + n0, ldb, nk, accumulate, cs,
                                                  cs_step, c + n0, ldc, last);
      else
        block_avx512_signed<R, NZ, false, kMasked>(a, ars, acs, b + n0, ldb, nk, accumulate, cs,
                                                   cs_step, c + n0, ldc, last);
    });
    return;
  }
  for (int64_t n0 = 0; n0 < n; n0 += 16) {
    const int64_t w = std::min<int64_t>(16, n - n0), ny = (w + 7) / 8;
    const __m256i last = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(w - 8 * (ny - 1))),
                                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    if (ny == 2)
      block_avx2<R, 2>(a, ars, acs, negate, b + n0, ldb, nk, accumulate, cs, cs_step, c + n0, ldc,
                       last);
    else
      block_avx2<R, 1>(a, ars, acs, negate, b + n0, ldb, nk, accumulate, cs, cs_step, c + n0, ldc,
                       last);
  }
}
#else
constexpr bool kRowKernels = false;
#endif

template <class T>
void mul_add(int64_t m, int64_t n, int64_t nk, bool negate, const T* a, int64_t ars, int64_t acs,
             const T* b, int64_t ldb, bool accumulate, T* c, int64_t ldc, Tri tri = Tri::none,
             const T* c_scale = nullptr, int64_t c_scale_step = 0) {
#if defined(__AVX2__) && defined(__FMA__)
  if constexpr (std::is_same_v<T, float>) {
    const bool avx512 = cpu_isa() == CpuIsa::avx512;
    const int64_t step = avx512 ? 6 : 4;
    for (int64_t r = 0; r < m; r += step) {
      const int64_t rows = std::min<int64_t>(step, m - r);
      const int64_t kk = tri == Tri::inner ? std::min(nk, r + rows) : nk;
      const float* ar = a + r * ars;
      const float* cs = c_scale ? c_scale + r * c_scale_step : nullptr;
      float* cr = c + r * ldc;
      switch (rows) {
        case 6:
          block_rows<6>(ar, ars, acs, negate, b, ldb, n, kk, accumulate, cs, c_scale_step, cr, ldc,
                        avx512);
          break;
        case 5:
          block_rows<5>(ar, ars, acs, negate, b, ldb, n, kk, accumulate, cs, c_scale_step, cr, ldc,
                        avx512);
          break;
        case 4:
          block_rows<4>(ar, ars, acs, negate, b, ldb, n, kk, accumulate, cs, c_scale_step, cr, ldc,
                        avx512);
          break;
        case 3:
          block_rows<3>(ar, ars, acs, negate, b, ldb, n, kk, accumulate, cs, c_scale_step, cr, ldc,
                        avx512);
          break;
        case 2:
          block_rows<2>(ar, ars, acs, negate, b, ldb, n, kk, accumulate, cs, c_scale_step, cr, ldc,
                        avx512);
          break;
        default:
          block_rows<1>(ar, ars, acs, negate, b, ldb, n, kk, accumulate, cs, c_scale_step, cr, ldc,
                        avx512);
      }
    }
    return;
  }
#endif
  // The BLAS takes a with unit stride on one side: (ars, 1) as is, (1, acs) transposed. A stride
  // that is never stepped (one row, one column) is given the least leading dimension the BLAS
  // accepts (K = 1 makes (ρ ⊙ K̂)ᵀ's strides both 1).
  (void)tri;
  const bool trans_a = acs != 1;
  const int64_t lda = trans_a ? (nk == 1 ? std::max<int64_t>(acs, m) : acs)
                              : (m == 1 ? std::max<int64_t>(ars, nk) : ars);
  // c_scale as a pass of its own (a BLAS may fold beta into an FMA: another rounding than the row
  // kernels').
  if (accumulate && c_scale)
    for (int64_t r = 0; r < m; ++r)
      for (int64_t j = 0; j < n; ++j) c[r * ldc + j] *= c_scale[r * c_scale_step];
  gemm(trans_a, false, m, n, nk, negate ? T(-1) : T(1), a, lda, b, ldb, accumulate ? T(1) : T(0), c,
       ldc);
}

#if defined(__AVX2__) && defined(__FMA__)
// One block of 4 rows of the solve on AVX-512, one panel of u's columns (NZ zmm, the last masked
// by `last` when kMasked; ld V; rows r..r+3 at ur):
// the rows before the block from memory, then the block's own rows from the registers, each
// element's chain of FMAs in the same order as the two products it replaces (the same bits): one
// call per panel instead of a 4-row product and three 1-row ones that stored and reloaded the
// rows. Gated DeltaNet forward (fwd_probe T = 8192, best of 6, 8 alternating rounds, load 5):
// 83.5-87.7 -> 81.5-86.3 ms CPU (mean 85.7 -> 84.5), 7 of 8 faster, the same output bits
// (bench/results/2026-12-05-cpu-gdn-speed-6/ab/07-solve-block.txt).
template <int NZ, bool kMasked>
__attribute__((target("avx512f"))) void solve_block4_avx512(const float* A, int64_t C, int64_t r,
                                                            const float* u, float* ur, int64_t V,
                                                            __mmask16 last) {
  __mmask16 m[NZ];
  for (int z = 0; z < NZ; ++z) m[z] = kMasked && z == NZ - 1 ? last : __mmask16(0xFFFF);
  __m512 s[4][NZ];
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i)
#pragma GCC unroll 4
    for (int z = 0; z < NZ; ++z) s[i][z] = _mm512_maskz_loadu_ps(m[z], ur + i * V + 16 * z);
  const float* Ar = A + r * C;
  for (int64_t j = 0; j < r; ++j) {
    __m512 bz[NZ];
#pragma GCC unroll 4
    for (int z = 0; z < NZ; ++z) bz[z] = _mm512_maskz_loadu_ps(m[z], u + j * V + 16 * z);
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
      const __m512 x = _mm512_set1_ps(Ar[i * C + j]);
#pragma GCC unroll 4
      for (int z = 0; z < NZ; ++z) s[i][z] = _mm512_fnmadd_ps(x, bz[z], s[i][z]);
    }
  }
#pragma GCC unroll 4
  for (int i = 1; i < 4; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < i; ++j) {
      const __m512 x = _mm512_set1_ps(Ar[i * C + r + j]);
#pragma GCC unroll 4
      for (int z = 0; z < NZ; ++z) s[i][z] = _mm512_fnmadd_ps(x, s[j][z], s[i][z]);
    }
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i)
#pragma GCC unroll 4
    for (int z = 0; z < NZ; ++z) _mm512_mask_storeu_ps(ur + i * V + 16 * z, m[z], s[i][z]);
}
#endif

// u (C x V) := (I + A)⁻¹ u for A's strictly lower part (ld C): the forward substitution
// u_i −= Σ_{j<i} A_ij u_j, by blocks of 4 rows (the rows before the block in one product, then
// the block's own rows one by one; on AVX-512 both in solve_block4_avx512), in the row kernels'
// fixed order.
template <class T>
void solve_unit_lower(int64_t C, int64_t V, const T* A, T* u) {
  if constexpr (!kRowKernels || !std::is_same_v<T, float>) {
    trsm_unit_lower(/*trans=*/false, C, V, A, C, u, V);
  } else {
    const bool avx512 = cpu_isa() == CpuIsa::avx512;
    for (int64_t r = 0; r < C; r += 4) {
      const int64_t rows = std::min<int64_t>(4, C - r);
      if (avx512 && rows == 4) {
        for_each_zmm_panel(V, [&](auto nz, auto masked, int64_t n0, __mmask16 last) {
          solve_block4_avx512<decltype(nz)::value, decltype(masked)::value>(
              A, C, r, u + n0, u + r * V + n0, V, last);
        });
        continue;
      }
      mul_add(rows, V, r, /*negate=*/true, A + r * C, C, 1, u, V, true, u + r * V, V);
      for (int64_t i = r + 1; i < r + rows; ++i)
        mul_add(int64_t(1), V, i - r, true, A + i * C + r, C, 1, u + r * V, V, true, u + i * V, V);
    }
  }
}

// The typed view of the params for one dtype.
template <class T>
struct Ptrs {
  const GatedDeltaRuleArgs& a;
  int64_t H, HV, K, V, Kg, R;  // R = HV / H value heads per q/k head
  const T *q, *k, *v, *g, *beta;

  explicit Ptrs(const GatedDeltaRuleArgs& args)
      : a(args),
        H(args.H),
        HV(args.HV),
        K(args.K),
        V(args.V),
        Kg(args.gate_dim()),
        R(args.HV / args.H),
        q(static_cast<const T*>(args.q)),
        k(static_cast<const T*>(args.k)),
        v(static_cast<const T*>(args.v)),
        g(static_cast<const T*>(args.g)),
        beta(static_cast<const T*>(args.beta)) {}

  // Rows of position p (of the flattened (B·T) positions) for value head hv.
  const T* q_row(int64_t p, int64_t hv) const { return q + (p * H + hv / R) * K; }
  const T* k_row(int64_t p, int64_t hv) const { return k + (p * H + hv / R) * K; }
  int64_t v_at(int64_t p, int64_t hv) const { return (p * HV + hv) * V; }  // out, dv, dout too
  int64_t g_at(int64_t p, int64_t hv) const { return (p * HV + hv) * Kg; }
};

// E by blocks of kEBlock rows (KDA and Gated DeltaNet, see load_chunk).
constexpr int64_t kEBlock = 16;

// One chunk of one (sequence, value head), in the forms the products need (see the file
// comment). Kg = 1 (Gated DeltaNet) or K (KDA) gate channels. Rows that are read together by one
// product are stacked in one buffer, so that each product is one call (mul_add, or the BLAS).
template <class T>
struct Chunk {
  int64_t C = 0, K = 0, Kg = 0, n = 0;
  T scale = 1;
  Vec<T> kq;        // (2C, K): k̂, then q̂
  Vec<T> kt;        // (K, C): k̂ transposed, the right factor of P and M on the row kernels
  Vec<T> fac;       // KDA: the factors of P and M's products (see load_chunk)
  Vec<T> kqg;       // (2C, K): −γ ⊙ k̂, then scale γ ⊙ q̂ (the rows that read the state)
  Vec<T> kd;        // (C, K) ρ ⊙ k̂
  Vec<T> g0;        // (Kg) zeros: g of the identity rows
  Vec<T> beta;      // (C)
  Vec<T> gam, rho;  // (C, Kg) γ and ρ
  Vec<T> E;         // Gated DeltaNet: (C, C) row-major; KDA: (C (C + 1) / 2, K), rows (i, j <= i),
                    // formed only where load_chunk says
  Vec<T> seg;       // (C, Kg) scratch: one row of E before the exponential; KDA: exp(g)
  Vec<T> erow;      // KDA: (kEBlock + 2, K) one row's in-block decays, then a scratch row
  Vec<T> PM;        // (2C, C): P, then M; zero outside their triangles
  Vec<T> A;         // (C, C) diag(β) P

  void reserve(int64_t C_, int64_t K_, int64_t Kg_) {
    C = C_, K = K_, Kg = Kg_;
    grow(kq, 2 * C * K);
    grow(kt, K * C);
    if (Kg_ > 1) grow(fac, (2 * kEBlock + 2 * C) * K);
    grow(kqg, 2 * C * K);
    grow(kd, C * K);
    grow(g0, Kg);
    std::fill(g0.begin(), g0.begin() + Kg, T(0));
    grow(beta, C);
    grow(gam, C * Kg);
    grow(rho, C * Kg);
    grow(E, Kg == 1 ? C * C : C * (C + 1) / 2 * K);
    grow(seg, C * Kg);
    if (Kg_ > 1) grow(erow, (kEBlock + 2) * K);
    grow(PM, 2 * C * C);
    grow(A, C * C);
  }
  const T* k() const { return kq.data(); }
  const T* q() const { return kq.data() + C * K; }
  const T* P() const { return PM.data(); }
  const T* M() const { return PM.data() + C * C; }
  // The Kg decays E_ij (j <= i).
  size_t e_index(int64_t i, int64_t j) const {
    return size_t(Kg == 1 ? i * C + j : (i * (i + 1) / 2 + j) * K);
  }
  T* e_at(int64_t i, int64_t j) { return &E[e_index(i, j)]; }
  const T* e_at(int64_t i, int64_t j) const { return &E[e_index(i, j)]; }
  // The chunk's decay γ_{C-1} of channel c (any c when Kg = 1), as mul_add's row scales of the
  // state: channel c's at gam_last_row()[c * gam_last_step()].
  const T* gam_last_row() const { return &gam[size_t((C - 1) * Kg)]; }
  int64_t gam_last_step() const { return Kg == 1 ? 0 : 1; }
  T gam_last(int64_t c) const { return gam_last_row()[c * gam_last_step()]; }
};

#if defined(__AVX2__) && defined(__FMA__)
// kt (K x C) := k (C x K) transposed (the row kernels' right factor), by 8 x 8 blocks in ymm
// registers instead of a load and a store per element (8k of them per chunk at C = 64,
// K = 128); moves only, the bits are unchanged. The edges past a multiple of 8 element by element.
void transpose(int64_t C, int64_t K, const float* k, float* kt) {
  const int64_t C8 = C / 8 * 8, K8 = K / 8 * 8;
  for (int64_t i0 = 0; i0 < C8; i0 += 8)
    for (int64_t c0 = 0; c0 < K8; c0 += 8) {
      __m256 r[8], t[8];
      for (int x = 0; x < 8; ++x) r[x] = _mm256_loadu_ps(k + (i0 + x) * K + c0);
      for (int x = 0; x < 8; x += 2) {
        t[x] = _mm256_unpacklo_ps(r[x], r[x + 1]);
        t[x + 1] = _mm256_unpackhi_ps(r[x], r[x + 1]);
      }
      for (int x = 0; x < 8; x += 4) {
        r[x] = _mm256_shuffle_ps(t[x], t[x + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[x + 1] = _mm256_shuffle_ps(t[x], t[x + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[x + 2] = _mm256_shuffle_ps(t[x + 1], t[x + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[x + 3] = _mm256_shuffle_ps(t[x + 1], t[x + 3], _MM_SHUFFLE(3, 2, 3, 2));
      }
      for (int x = 0; x < 4; ++x) {
        _mm256_storeu_ps(kt + (c0 + x) * C + i0, _mm256_permute2f128_ps(r[x], r[x + 4], 0x20));
        _mm256_storeu_ps(kt + (c0 + x + 4) * C + i0, _mm256_permute2f128_ps(r[x], r[x + 4], 0x31));
      }
    }
  for (int64_t i = 0; i < C; ++i)
    for (int64_t c = i < C8 ? K8 : 0; c < K; ++c) kt[c * C + i] = k[i * K + c];
}

#endif

// P (C x C) = K̂ K̂ᵀ on its strict lower triangle and, when with_M, M = Q̂ K̂ᵀ (C x C, stored right
// after P) on its lower triangle with the diagonal; the entries past the triangles are left for
// the caller's mask. In f32 on the row kernels: each band of rows runs through its last row's
// column (the diagonal), so at C = 64 the products take 5/8 of the full 2C x C x K: 73.7k -> 67.6k
// multiply-adds per token and head at K = V = 128, with no OpenBLAS packing. On AVX-512 bands of
// 16 rows (6-row blocks; at C a multiple of 16 whole zmm of columns, no mask), on AVX2 of 4 (its
// columns go by 8: 16-row bands would add 11% multiply-adds at C = 64). AVX-512's 4-row bands did
// the same multiply-adds (columns by 16) with a masked last zmm in every block; the 16-row ones:
// Gated DeltaNet forward (fwd_probe T = 8192, best of 6, 6 alternating rounds, load 7-8)
// 86.1-93.4 -> 85.1-89.7 ms CPU (mean 89.9 -> 87.6), 6 of 6 faster, the same output bits
// (bench/results/2026-12-05-cpu-gdn-speed-6/ab/03-pm-bands-3way.txt). The gain is the mask gone:
// 32-row slabs, measured before full panels loaded without one (see mul_add), gained nothing.
// Elsewhere one gemm of [K̂; Q̂] K̂ᵀ. Measured (B = 1, T = 8192, H = 8, K = V = 128, one thread, CPU
// time, alternating with the one-gemm form, load 9-17): forward 153-161 -> 152-156 ms, within the
// noise: the forward's time is not in these products (perf: 27% waiting on the rows of q and k in
// load_chunk, see head_group; 30% in run_chunk's products).
template <class T>
void gated_products(int64_t C, int64_t K, const T* k, const T* q, T* kt, T* P, bool with_M) {
#if defined(__AVX2__) && defined(__FMA__)
  if constexpr (std::is_same_v<T, float>) {
    transpose(C, K, k, kt);
    const int64_t band = cpu_isa() == CpuIsa::avx512 ? 16 : 4;
    for (int64_t r = 0; r < C; r += band) {
      const int64_t rows = std::min<int64_t>(band, C - r), n = std::min<int64_t>(C, r + band);
      mul_add(rows, n, K, false, k + r * K, K, 1, kt, C, false, P + r * C, C);
      if (with_M) mul_add(rows, n, K, false, q + r * K, K, 1, kt, C, false, P + (C + r) * C, C);
    }
    return;
  }
#endif
  (void)q, (void)kt;
  gemm(false, true, with_M ? 2 * C : C, C, K, T(1), k, K, k, K, T(0), P, C);
}

// c (m x n, ld ldc) = a (m x K) bᵀ with b (n x K), both row-major, where a's rows from m_split on
// go to the rows of c2 instead of c. In f32 on the row kernels (b transposed into bt, K x n,
// first); elsewhere the BLAS.
template <class T>
void product_nt(int64_t m, int64_t n, int64_t K, const T* a, const T* b, T* bt, T* c, int64_t ldc,
                T* c2, int64_t m_split) {
#if defined(__AVX2__) && defined(__FMA__)
  if constexpr (std::is_same_v<T, float>) {
    transpose(n, K, b, bt);
    mul_add(std::min(m, m_split), n, K, false, a, K, 1, bt, n, false, c, ldc);
    if (m > m_split)
      mul_add(m - m_split, n, K, false, a + m_split * K, K, 1, bt, n, false, c2, ldc);
    return;
  }
#endif
  (void)bt;
  gemm(false, true, std::min(m, m_split), n, K, T(1), a, K, b, K, T(0), c, ldc);
  if (m > m_split)
    gemm(false, true, m - m_split, n, K, T(1), a + m_split * K, K, b, K, T(0), c2, ldc);
}

// KDA's γ and ρ, given their segment sums (load_chunk) and the chunk's decays E: the
// exponential only at the rows that end a block of kEBlock, there in place; the other rows
// through the decays load_chunk has formed: γ_i = γ_r E_ir with r the row before i's block (in
// the first block r = 0, γ_0 = exp(g_0)) and ρ_i = E_ei ρ_e with e the row that ends i's block.
// Each factor is a decay (<= 1 for g <= 0), each E a running product of at most kEBlock − 1 steps'
// exp(g): the error of at most kEBlock roundings, against the exponential of a segment sum's (the
// sum's rounding times its size, up to C terms); GatedDeltaRuleSmallK's f64 sweep passes (running
// products over the whole chunk, up to C − 1 roundings, took its dbeta of K = 16 seed 4 to 1.05x
// the 2x rule). 2 K ⌈C / kEBlock⌉ + K exponentials per chunk (9 K at C = 64) instead of 2 C K.
// Measured (B = 1, T = 8192, H = 8, K = V = 128, KDA, one thread, CPU time, bench_gdn alternating
// with main, load 13-16, bench/results/2026-12-05-cpu-kda-speed-3/ab): forward 153-171 -> 145-163
// ms (0.90-0.99 of main's, mean 0.94), backward 657-704 -> 620-652 ms (0.92-0.97, mean 0.94),
// faster in 4 of 4 rounds.
template <class T>
void kda_gamma_rho(Chunk<T>& ch) {
  const int64_t C = ch.C, K = ch.K;
  T* gam = ch.gam.data();
  T* rho = ch.rho.data();
  for (int64_t e = kEBlock - 1; e < C; e += kEBlock) {
    exp_array(gam + e * K, gam + e * K, K);
    exp_array(rho + e * K, rho + e * K, K);
  }
  if (C % kEBlock != 0) {
    exp_array(gam + (C - 1) * K, gam + (C - 1) * K, K);
    exp_array(rho + (C - 1) * K, rho + (C - 1) * K, K);
  }
  if (C > 1) exp_array(gam, gam, K);  // γ_0 = exp(g_0) (row 0 ends no block)
  for (int64_t b0 = 0; b0 < C; b0 += kEBlock) {
    const int64_t e = std::min(b0 + kEBlock, C) - 1;
    const int64_t r = b0 == 0 ? 0 : b0 - 1;  // γ_r known: a block end or γ_0
    const T* gr = gam + r * K;
    for (int64_t i = b0 == 0 ? 1 : b0; i < e; ++i) {
      const T* eir = ch.e_at(i, r);
      T* gi = gam + i * K;
      for (int64_t c = 0; c < K; ++c) gi[c] = gr[c] * eir[c];
    }
    const T* re = rho + e * K;
    for (int64_t i = b0; i < e; ++i) {
      const T* eei = ch.e_at(e, i);
      T* ri = rho + i * K;
      for (int64_t c = 0; c < K; ++c) ri[c] = eei[c] * re[c];
    }
  }
}

// The factors of KDA's products left of the block of rows [b0, b0 + rows) (r = b0 − 1, the
// factoring E_ij = E_ir E_rj of load_chunk), shared by the forward's P, M and their backward:
// the left rows s X_i ⊙ E_ir (X = K̂ or Q̂, i in the block) into `left` (rows x K) and the right
// rows R_j = k̂_j ⊙ E_rj (j <= r) into `right` (b0 x K). (Before, the same loops in both; the
// same bits, bitwise_probe of bench/results/2026-12-05-cpu-kda-speed-3.)
template <class T>
void kda_left_factor(const Chunk<T>& ch, const T* X, T s, int64_t b0, int64_t rows, T* left) {
  const int64_t K = ch.K;
  for (int64_t i = 0; i < rows; ++i) {
    const T* e = ch.e_at(b0 + i, b0 - 1);
    const T* x = X + (b0 + i) * K;
    for (int64_t c = 0; c < K; ++c) left[i * K + c] = s * x[c] * e[c];
  }
}

template <class T>
void kda_right_factor(const Chunk<T>& ch, int64_t b0, T* right) {
  const int64_t K = ch.K;
  const T* k = ch.k();
  for (int64_t j = 0; j < b0; ++j) {
    const T* e = ch.e_at(b0 - 1, j);
    for (int64_t c = 0; c < K; ++c) right[j * K + c] = k[j * K + c] * e[c];
  }
}

// KDA's pairs (i, j) ... (i, j + NJ − 1) within row i's block of kEBlock rows (kda_block_pairs):
// P_ij = k̂_i · (k̂_j ⊙ E_ij) (0 at j = i) and, when with_M, M_ij = scale q̂_i · (k̂_j ⊙ E_ij), for K a
// multiple of 8 (dot<T> adds the channels past the last multiple of 8 into its part 0); pair j +
// n's decays at e + n K. Each sum is lane l of 8 a chain of FMAs over the channels l, l + 8, ...,
// then dot<T>'s tree, four pairs side by side in registers (8 chains), where the loop before ran
// dot<T> on one pair at a time (one chain of K / 8 dependent FMAs) after a pass storing k̂_j ⊙ E_ij.
// The same bits as that loop where the compiler contracts dot's `part += a · b` into FMAs, as GCC
// 12 does for the default x86-64-v3 build (its tuning for some CPUs, -mtune=znver3 for one, keeps
// such chains unfused): out, final state and gradients identical on five KDA cases (K = 8, 24, 64,
// 128). Measured on the 2-core Emerald Rapids VM (bench/results/2026-12-06-cpu-kda-pairs): the
// pairs alone (C = 64, K = 128, hot) 43-69 -> 14-21 us a chunk, 3.0-3.8x, alternating in one
// process; the KDA forward (B = 1, T = 8192, H = 8, K = V = 128, one thread) faster in 9 of 10
// alternating runs, median 0.90 of the time.
#if defined(__AVX2__) && defined(__FMA__)
inline float tree8(__m256 v) {  // dot<T>'s ((p0 + p1) + (p2 + p3)) + ((p4 + p5) + (p6 + p7))
  alignas(32) float p[8];
  _mm256_store_ps(p, v);
  return ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
}

// With kUpdate, the decays are first formed from row i − 1's, E_ij = E_(i-1)j exp(g_i) from prev
// (which may be e itself) with ai = exp(g_i), and stored to e: load_chunk's running products, the
// same operation, in the pass that reads them.
template <int NJ, bool kUpdate>
void kda_pairs_f32(const Chunk<float>& ch, int64_t i, int64_t j, const float* prev, float* e,
                   const float* ai, bool with_M, float* Pi, float* Mi) {
  const int64_t K = ch.K;
  const float* ki = ch.k() + i * K;
  const float* qi = ch.q() + i * K;
  __m256 accP[NJ], accM[NJ];
  for (int n = 0; n < NJ; ++n) accP[n] = accM[n] = _mm256_setzero_ps();
  for (int64_t c = 0; c < K; c += 8) {
    const __m256 kv = _mm256_loadu_ps(ki + c);
    const __m256 qv = with_M ? _mm256_loadu_ps(qi + c) : kv;
    for (int n = 0; n < NJ; ++n) {
      __m256 en = _mm256_loadu_ps((kUpdate ? prev : e) + n * K + c);
      if (kUpdate) {
        en = _mm256_mul_ps(en, _mm256_loadu_ps(ai + c));
        _mm256_storeu_ps(e + n * K + c, en);
      }
      const __m256 w = _mm256_mul_ps(_mm256_loadu_ps(ch.k() + (j + n) * K + c), en);
      accP[n] = _mm256_fmadd_ps(kv, w, accP[n]);
      if (with_M) accM[n] = _mm256_fmadd_ps(qv, w, accM[n]);
    }
  }
  for (int n = 0; n < NJ; ++n) {
    Pi[j + n] = j + n < i ? tree8(accP[n]) : 0.f;
    if (with_M) Mi[j + n] = ch.scale * tree8(accM[n]);
  }
}

#endif

// Row i's pairs within its block of kEBlock rows, columns b0 through i: P_ij (0 at j = i) and,
// when with_M, M_ij. Their decays, K apart from column b0 on, are formed into e from row i − 1's
// in prev (the same memory, or E's row i − 1): E_ij = E_(i-1)j ai with ai = exp(g_i), and
// E_ii = 1. Past i, P and M are zero; left of the block they are load_chunk's factored products.
template <class T>
void kda_block_pairs(Chunk<T>& ch, int64_t i, int64_t b0, const T* prev, T* e, const T* ai,
                     bool with_M) {
  const int64_t K = ch.K, C = ch.C;
  T* Pi = ch.PM.data() + i * C;
  T* Mi = Pi + C * C;
  std::fill(Pi + i + 1, Pi + C, T(0));
  if (with_M) std::fill(Mi + i + 1, Mi + C, T(0));
  std::fill(e + (i - b0) * K, e + (i - b0 + 1) * K, T(1));  // E_ii
#if defined(__AVX2__) && defined(__FMA__)
  if constexpr (std::is_same_v<T, float>) {
    if (K % 8 == 0) {
      auto pairs = [&](auto nj, auto update, int64_t j) {
        kda_pairs_f32<decltype(nj)::value, decltype(update)::value>(
            ch, i, j, prev + (j - b0) * K, e + (j - b0) * K, ai, with_M, Pi, Mi);
      };
      int64_t j = b0;
      for (; j + 4 <= i; j += 4) pairs(std::integral_constant<int, 4>{}, std::true_type{}, j);
      switch (i - j) {
        case 3:
          pairs(std::integral_constant<int, 3>{}, std::true_type{}, j);
          break;
        case 2:
          pairs(std::integral_constant<int, 2>{}, std::true_type{}, j);
          break;
        case 1:
          pairs(std::integral_constant<int, 1>{}, std::true_type{}, j);
      }
      pairs(std::integral_constant<int, 1>{}, std::false_type{}, i);  // E_ii = 1
      return;
    }
  }
#endif
  for (int64_t j = b0; j < i; ++j)
    for (int64_t c = 0; c < K; ++c) e[(j - b0) * K + c] = prev[(j - b0) * K + c] * ai[c];
  const T* qi = ch.q() + i * K;
  const T* ki = ch.k() + i * K;
  T* w = ch.erow.data() + (kEBlock + 1) * K;  // k̂_j ⊙ E_ij
  for (int64_t j = b0; j <= i; ++j) {
    const T* kj = ch.k() + j * K;
    const T* ej = e + (j - b0) * K;
    for (int64_t c = 0; c < K; ++c) w[c] = kj[c] * ej[c];
    Pi[j] = j < i ? dot<T>(ki, w, K) : T(0);
    if (with_M) Mi[j] = ch.scale * dot<T>(qi, w, K);
  }
}

// Fills `ch` for the n tokens of sequence positions [p0, p0 + n), value head hv, and the rows
// from n to C with the identity step (q = k = v = 0, g = 0, β = 0). Every chunk is computed at
// its full length C, so that a sequence's chunks are the same products whatever comes after it
// (another packed sequence, right padding by identity steps, nothing): that is what makes the
// results bitwise batch invariant. The identity rows change no real row and not the state: each
// contributes exact zeros. `with_M` (every use but `states`): also the output matrix M and the
// rows of q̂ and scale γ ⊙ q̂ (the backward's first pass reads none of them, and without them its
// load_chunk reads no row of q). Measured (B = 1, T = 8192, H = 8,
// K = V = 128, one thread, CPU time, bench_gdn alternating with main, load 6.6-7.6,
// bench/results/2026-12-05-cpu-kda-speed-2): KDA backward 628-672 -> 594-640 ms, faster in 8 of 8
// rounds (0.91-0.97 of main's, mean 0.944); KDA forward, the same work (q's rows now copied after
// k's instead of in one loop), 165-185 -> 150-162 ms (0.84-0.96); Gated DeltaNet within the noise
// (backward 370-388 -> 370-390 ms, forward 90-98 -> 90-94, 4 rounds). The same bits.
//
// v's rows are not copied: run_chunk and run_chunk_scalar_fwd read them where they lie.
// `scalar_fwd` (the Gated DeltaNet forward, see run_chunk_scalar_fwd): the caller applies γ to the
// products' rows itself, so the γ-scaled rows (kqg) are not formed. KDA's in-block decays are kept
// in E only for `gradients` (kda_gated_products_bwd reads them; the forward's pairs are formed as
// the decays are, see below).
enum class ChunkUse {
  forward,         // KDA's forward (run_chunk)
  forward_scalar,  // Gated DeltaNet's forward (run_chunk_scalar_fwd)
  states,          // the backward's first pass: no M, no row of q
  gradients,       // the backward's second pass
};
template <class T>
void load_chunk(Chunk<T>& ch, const Ptrs<T>& x, int64_t hv, int64_t p0, int64_t n, ChunkUse use) {
  const bool with_M = use != ChunkUse::states, scalar_fwd = use == ChunkUse::forward_scalar;
  const int64_t C = ch.C, K = x.K, Kg = x.Kg;
  ch.n = n;
  ch.scale = T(x.a.scale);
  T* k = ch.kq.data();
  T* q = k + C * K;
  for (int64_t i = 0; i < n; ++i) {
    const T* qr = x.q_row(p0 + i, hv);
    const T* kr = x.k_row(p0 + i, hv);
    const T rk = x.a.l2norm ? l2norm_rstd(kr, K) : T(1);
    for (int64_t c = 0; c < K; ++c) k[i * K + c] = kr[c] * rk;
    if (with_M) {
      const T rq = x.a.l2norm ? l2norm_rstd(qr, K) : T(1);
      for (int64_t c = 0; c < K; ++c) q[i * K + c] = qr[c] * rq;
    }
    ch.beta[size_t(i)] = x.beta[(p0 + i) * x.HV + hv];
  }
  if (with_M) std::fill(q + n * K, q + C * K, T(0));
  std::fill(k + n * K, k + C * K, T(0));
  std::fill(ch.beta.begin() + n, ch.beta.begin() + C, T(0));

  // g's rows where they lie (no C x Kg copy per chunk and head), past n the identity rows' zeros.
  auto g_row = [&](int64_t i) { return i < n ? x.g + x.g_at(p0 + i, hv) : ch.g0.data(); };
  // Segment sums of g in step order (γ_i: [0, i], ρ_i: (i, C)), exponentiated together
  // (exp_array vectorizes); KDA takes only the block ends' (see kda_gamma_rho).
  T* gam = ch.gam.data();
  T* rho = ch.rho.data();
  std::copy(g_row(0), g_row(0) + Kg, gam);
  for (int64_t i = 1; i < C; ++i) {
    const T* gi = g_row(i);
    for (int64_t c = 0; c < Kg; ++c) gam[i * Kg + c] = gam[(i - 1) * Kg + c] + gi[c];
  }
  for (int64_t c = 0; c < Kg; ++c) rho[(C - 1) * Kg + c] = T(0);
  for (int64_t i = C - 2; i >= 0; --i) {
    const T* gi = g_row(i + 1);
    for (int64_t c = 0; c < Kg; ++c) rho[i * Kg + c] = rho[(i + 1) * Kg + c] + gi[c];
  }
  if (Kg == 1) {
    exp_array(gam, gam, C * Kg);
    exp_array(rho, rho, C * Kg);
  }
  T* seg = ch.seg.data();
  if (Kg == 1) {
    // E row by row from the segment sums of row i, kept in seg (seg_j += g_i for j < i). The
    // exponential only where the pair's segment lies within row i's block of kEBlock rows or starts
    // at r, the row before the block, and for every pair of the rows that end a block (the r of
    // the next block): the other pairs as E_ij = E_ir E_rj (j < r), KDA's factoring, both factors
    // exponentials, so at most one rounding more than the exponential of the segment sum and
    // never a chain of products. 638 exponentials per chunk at C = 64 instead of 2080; the pairs
    // that are exponentials have the same bits as before. The GDN tests' largest error against
    // the 2x rule's allowance, per case and output, moved both ways (mean 0.368 -> 0.368 of the
    // allowance over 284, the worst 0.958 unchanged). Measured (B = 1, T = 8192, H = 8,
    // K = V = 128, one thread, CPU time, alternating with the library before,
    // bench/results/2026-12-05-cpu-gdn-speed-7): exp_array 2.5-2.7% -> 1.4-1.6% of perf's samples;
    // forward (fwd_probe, best of 6) -1.2%, -0.8%, -1.2% in three runs at load 4-5 (faster in 18
    // of 24 rounds) and 83.7 -> 82.1 ms (-2.0%, 8 of 8) at load 1.7-2.0; bench_gdn forward
    // 4.8-5.0x -> 4.9-5.4x the token loop (6 rounds, 82.5-93.4 -> 80.8-92.7 ms).
    for (int64_t i = 0; i < C; ++i) {
      const T gi = g_row(i)[0];
      for (int64_t j = 0; j < i; ++j) seg[j] += gi;
      seg[i] = T(0);
      T* ei = ch.e_at(i, 0);
      const int64_t r = i / kEBlock * kEBlock - 1;  // the row before i's block (-1: none)
      const bool ends_block = i % kEBlock == kEBlock - 1 && i + 1 < C;  // some later row's r
      if (r < 0 || ends_block) {
        exp_array(ei, seg, i + 1);
        continue;
      }
      exp_array(ei + r, seg + r, i + 1 - r);
      const T eir = ei[r];
      const T* er = ch.e_at(r, 0);
      for (int64_t j = 0; j < r; ++j) ei[j] = eir * er[j];
    }
  } else {
    // KDA: K decays per pair. Only the pairs the products read are formed: in each row those
    // from the column r before the row's block of kEBlock rows on (the in-block loops, and E_ir),
    // and in the rows that end a block every pair (E_rj of the factoring E_ij = E_ir E_rj that
    // the products use left of a block, here and in kda_gated_products_bwd): 685 of the 2080
    // pairs at C = 64. Each as a running product E_ij = E_(i-1)j exp(g_i) of the steps' decays,
    // exp(g) once per token and channel, and a block end's pairs left of r as E_ir E_rj. Every
    // factor is a decay (<= 1 for g <= 0: nothing overflows, an underflow is below the true
    // value's f32 range) and each pair a product of at most C − 1 of them, rounded once each: a
    // relative error of at most (C − 1) ulp while the products stay normal (among subnormals an
    // absolute error of at most the smallest subnormal, harmless) (an exponential of a segment sum
    // errs by the sum's rounding times its size). Before, every pair's segment sum (C² / 2 · K
    // adds) and the formed pairs' exponentials (2.9x fewer than pairs by the same factoring),
    // the other pairs as products. Measured (B = 1, T = 8192, H = 8, K = V = 128, KDA, one
    // thread, CPU time, bench_gdn alternating with main, load 19-26,
    // bench/results/2026-12-05-cpu-kda-speed): not forming the unread pairs, forward 335-339 ->
    // 285-289 ms and backward 1070-1073 -> 972-1006 ms (main 304-305 / 1308-1329 in the same
    // rounds); then the running products instead of the segment sums and exponentials, forward
    // 0.94 -> 0.62 of main's and backward 0.75 -> 0.60 (202-211 / 856-862 ms against main's
    // 325-340 / 1398-1457). γ and ρ then come from these decays (kda_gamma_rho).
    //
    // Row i's decays from j0 (r, or 0 in the first block) through i are formed here (E_ij0) and
    // as the row's in-block pairs of P and M are summed (kda_block_pairs), in erow, a row of at
    // most kEBlock + 1 pairs that stays in the L1 cache, and E keeps what is read later: the column
    // j0 (E_ir: the left factors; γ) and the rows that end a block (the right factors; ρ). For the
    // backward's products, which read every formed pair, they are formed in E itself. Before,
    // every formed pair was stored to E (~250 KB a chunk at C = 64, K = 128: the L2 cache) in a
    // pass of its own and loaded back by the pairs. The same operations in the same order: the
    // same bits. Measured (B = 1, T = 8192, H = 8, K = V = 128, one thread, the 2-core Emerald
    // Rapids VM, bench/results/2026-12-06-cpu-kda-fwd-copies) with v's and g's rows read where
    // they lie and KDA's state decay folded into mul_add: a small gain at best alone (bench_gdn
    // forward -4% in the mean of 4 alternating rounds, in one process within 1%), while GCC's
    // clones of this function made every access of the chunk a __tls_get_addr call (see
    // scratch); with that mended, bench_gdn's KDA forward 112-113 -> 92-103 ms and backward
    // 469-489 -> 434-437 ms (3 alternating rounds), in one process (both orders) -12% and -3 to
    // -7%; Gated DeltaNet's within the noise.
    T* a = seg;  // (C, K): exp(g_i)
    for (int64_t i = 0; i < C; ++i) exp_array(a + i * K, g_row(i), K);
    T* erow = ch.erow.data();
    const bool keep_pairs = use == ChunkUse::gradients;
    for (int64_t i = 0; i < C; ++i) {
      const int64_t b0 = i / kEBlock * kEBlock;
      const int64_t r = b0 - 1;  // the column before i's block (-1: none)
      const int64_t j0 = std::max<int64_t>(r, 0);
      const T* ai = a + i * K;
      // Row i's decays from j0 go to cur, from row i − 1's in prev (E_rr = 1 at a block's first
      // row: in E, row r's last pair).
      T* cur = keep_pairs ? ch.e_at(i, j0) : erow;
      const T* prev = keep_pairs && i > 0 ? ch.e_at(i - 1, j0) : erow;
      if (!keep_pairs && i == b0 && r >= 0) std::fill(erow, erow + K, T(1));
      if (r >= 0)  // E_ir; the rest in kda_block_pairs
        for (int64_t c = 0; c < K; ++c) cur[c] = prev[c] * ai[c];
      kda_block_pairs(ch, i, b0, prev + (b0 - j0) * K, cur + (b0 - j0) * K, ai, with_M);
      const bool ends_block = i % kEBlock == kEBlock - 1 || i == C - 1;
      if (!keep_pairs) std::copy(erow, erow + (ends_block ? i - j0 + 1 : 1) * K, ch.e_at(i, j0));
      if (r < 0 || i % kEBlock != kEBlock - 1) continue;
      const T* eir = ch.e_at(i, r);
      for (int64_t j = 0; j < r; ++j) {
        const T* erj = ch.e_at(r, j);
        T* e = ch.e_at(i, j);
        for (int64_t c = 0; c < K; ++c) e[c] = eir[c] * erj[c];
      }
    }
    kda_gamma_rho(ch);
  }
  T* nkg = ch.kqg.data();
  T* qg = nkg + C * K;
  for (int64_t i = 0; i < C; ++i) {
    const T* ki = k + i * K;
    const T* qi = q + i * K;
    if (Kg == 1 && scalar_fwd) {
      const T r = rho[i];
      for (int64_t c = 0; c < K; ++c) ch.kd[size_t(i * K + c)] = r * ki[c];
    } else if (Kg == 1) {
      const T a = gam[i], sa = ch.scale * gam[i], r = rho[i];
      for (int64_t c = 0; c < K; ++c) {
        nkg[i * K + c] = -a * ki[c];
        ch.kd[size_t(i * K + c)] = r * ki[c];
      }
      if (with_M)
        for (int64_t c = 0; c < K; ++c) qg[i * K + c] = sa * qi[c];
    } else {
      const T* a = gam + i * K;
      const T* r = rho + i * K;
      for (int64_t c = 0; c < K; ++c) {
        nkg[i * K + c] = -a[c] * ki[c];
        ch.kd[size_t(i * K + c)] = r[c] * ki[c];
      }
      if (with_M)
        for (int64_t c = 0; c < K; ++c) qg[i * K + c] = ch.scale * a[c] * qi[c];
    }
  }
  // The gated products P (strictly lower) and M (lower with the diagonal).
  T* P = ch.PM.data();
  T* M = P + C * C;
  if (Kg == 1) {
    // [P; M] = [K̂; Q̂] K̂ᵀ, then masked by E (and A = diag(β) P).
    gated_products(C, K, k, q, ch.kt.data(), P, with_M);
    for (int64_t i = 0; i < C; ++i) {
      const T* e = ch.e_at(i, 0);
      const T b = ch.beta[size_t(i)];
      T* Pi = P + i * C;
      T* Ai = ch.A.data() + i * C;
      for (int64_t j = 0; j < i; ++j) {
        Pi[j] *= e[j];
        Ai[j] = b * Pi[j];
      }
      std::fill(Pi + i, Pi + C, T(0));
      std::fill(Ai + i, Ai + C, T(0));
      if (!with_M) continue;
      T* Mi = M + i * C;
      for (int64_t j = 0; j <= i; ++j) Mi[j] *= ch.scale * e[j];
      std::fill(Mi + i + 1, Mi + C, T(0));
    }
    return;
  }
  // KDA: a K-vector of decays per pair. For the pairs left of a row's block of kEBlock, E_ij =
  // E_ir E_rj with r the column before the block (the factoring of E above), so those pairs are
  // one product per block, (X ⊙ E_r·) (K̂ ⊙ E_·r)ᵀ with X = K̂ for P and scale Q̂ for M: the left
  // factor's rows k̂_i ⊙ E_ir, the right's k̂_j ⊙ E_rj, both decays from load_chunk. The
  // pairs within the block are loops over the channels, summed above as their decays are formed
  // (kda_block_pairs). Measured (B = 1, T = 8192, H = 8,
  // K = V = 128, KDA, one thread, CPU time, alternating, load 9-17): forward 392/428 ->
  // 387/386 ms; P and M are not where KDA's forward spends its time.
  T* left = ch.fac.data();            // (2 kEBlock, K): K̂ ⊙ E_ir, then scale Q̂ ⊙ E_ir
  T* right = left + 2 * kEBlock * K;  // (C, K): K̂ ⊙ E_rj
  T* rt = right + C * K;              // (K, C) its transpose (the row kernels')
  for (int64_t b0 = kEBlock; b0 < C; b0 += kEBlock) {
    const int64_t r = b0 - 1, rows = std::min(kEBlock, C - b0);
    kda_right_factor(ch, b0, right);
    kda_left_factor(ch, k, T(1), b0, rows, left);
    if (with_M) kda_left_factor(ch, q, ch.scale, b0, rows, left + rows * K);
    product_nt(with_M ? 2 * rows : rows, r + 1, K, left, right, rt, P + b0 * C, C, M + b0 * C,
               rows);
  }
  for (int64_t i = 0; i < C; ++i)
    for (int64_t j = 0; j < C; ++j) ch.A[size_t(i * C + j)] = ch.beta[size_t(i)] * P[i * C + j];
}

// Runs the loaded chunk from the state S (K x V; all zeros when `zero_state`, and then only
// written), v the chunk's ch.n rows of v where they lie (ld ldv). UO receives the delta values U
// in its first C rows (C x V) and, when `with_O`, the chunk's outputs in the next C; Vm, when
// given, receives V − (γ ⊙ K̂) S. Leaves the state after the chunk in S.
template <class T>
void run_chunk(const Chunk<T>& ch, const T* v, int64_t ldv, int64_t V, T* S, bool zero_state, T* UO,
               T* Vm, bool with_O) {
  const int64_t K = ch.K, C = ch.C, n = ch.n;
  T* U = UO;
  T* O = UO + C * V;
  // U = V − (γ ⊙ K̂) S and O = (scale γ ⊙ Q̂) S; v's rows are copied into U straight from the
  // input (before, into the chunk by load_chunk and from there into U: a C x V copy more per
  // chunk and head).
  for (int64_t i = 0; i < n; ++i) std::copy(v + i * ldv, v + i * ldv + V, U + i * V);
  std::fill(U + n * V, U + C * V, T(0));
  const T* nkg = ch.kqg.data();
  if (!zero_state) {
    mul_add(C, V, K, false, nkg, K, 1, S, V, true, U, V);
    if (with_O) mul_add(C, V, K, false, nkg + C * K, K, 1, S, V, false, O, V);
  }
  if (Vm) std::copy(U, U + C * V, Vm);
  for (int64_t i = 0; i < C; ++i) {
    const T b = ch.beta[size_t(i)];
    for (int64_t j = 0; j < V; ++j) U[i * V + j] *= b;
  }
  solve_unit_lower(C, V, ch.A.data(), U);
  if (with_O) mul_add(C, V, C, false, ch.M(), C, 1, U, V, !zero_state, O, V, Tri::inner);
  // S := diag(γ_{C-1}) S + (ρ ⊙ K̂)ᵀ U, the decay applied as the product loads S's rows (see
  // mul_add): a's element (c, i) is kd[i K + c].
  mul_add(K, V, C, false, ch.kd.data(), 1, K, U, V, !zero_state, S, V, Tri::none, ch.gam_last_row(),
          ch.gam_last_step());
}

// Per-thread scratch of the backward's second pass.
template <class T>
struct BwdScratch {
  Vec<T> Y;                  // (3C, V): β dR (= dv), dO, dU then dR
  Vec<T> dMA;                // (2C, C): dO Uᵀ (dM), then dR Uᵀ (−dA)
  Vec<T> L;                  // (C, 2C) dk's left factor (Gated DeltaNet)
  Vec<T> Z;                  // (2C, K): dv S0ᵀ (−dKg), then dO S0ᵀ (dQg)
  Vec<T> dKd, dq, dk;        // (C, K)
  Vec<T> fac;                // KDA: the factors and results of the off-block products
  Vec<Acc<T>> t1, t2, rect;  // (C, Kg) the decay gradient's terms (see chunk_bwd)
  Vec<Acc<T>> row, dgam;     // (2K), (K)

  void reserve(int64_t C, int64_t K, int64_t V, int64_t Kg) {
    grow(Y, 3 * C * V);
    grow(dMA, 2 * C * C);
    grow(L, 2 * C * C);
    grow(Z, 2 * C * K);
    for (Vec<T>* x : {&dKd, &dq, &dk}) grow(*x, C * K);
    if (Kg > 1) grow(fac, (4 * kEBlock + 2 * C) * K);
    for (Vec<Acc<T>>* x : {&t1, &t2, &rect}) grow(*x, C * Kg);
    grow(row, 2 * K);
    grow(dgam, K);
  }
};

// One pair j < i of KDA's in-block loop (kda_gated_products_bwd): dq̂_i += wm (k̂_j ⊙ E_ij),
// dk̂_i += wp (k̂_j ⊙ E_ij), dk̂_j += (wm q̂_i + wp k̂_i) ⊙ E_ij. The rows are distinct (j < i),
// which restrict tells the compiler: with dk̂_i and dk̂_j possibly the same row the loop was
// scalar. Measured with dg's sums by rows (chunk_bwd), the backward 0.60 -> 0.52-0.54 of main's
// in the same rounds (714-770 ms against 1387-1431 ms; B = 1, T = 8192, H = 8, K = V = 128, one
// thread, CPU time, load 25-31, bench/results/2026-12-05-cpu-kda-speed/ab3).
template <class T>
void kda_pair_bwd(int64_t K, T wm, T wp, const T* __restrict qi, const T* __restrict ki,
                  const T* __restrict kj, const T* __restrict e, T* __restrict dqi,
                  T* __restrict dki, T* __restrict dkj) {
  for (int64_t c = 0; c < K; ++c) {
    const T kje = kj[c] * e[c];
    dqi[c] += wm * kje;
    dki[c] += wp * kje;
    dkj[c] += (wm * qi[c] + wp * ki[c]) * e[c];
  }
}

// KDA's gated products backward: from dM (lower) and dP (strictly lower) of the chunk, the
// gradients through P_ij = Σ_c k̂_ic k̂_jc E_ijc and M_ij = scale Σ_c q̂_ic k̂_jc E_ijc: dq̂, dk̂
// (written, C x K) and the decay terms rect_t = Σ_{j<t<=i} D_ij (added, C x K) with
// D_ijc = (scale dM_ij q̂_ic + dP_ij k̂_ic) k̂_jc E_ijc.
// The pairs within a block of kEBlock rows are loops over the channels. The pairs left of a
// block (i in [b0, b0 + kEBlock), j <= r = b0 − 1) use load_chunk's factoring E_ij = E_ir E_rj,
// both factors decays (<= 1 for g <= 0: no exp(−G) that overflows when decays are near 0), so with
// Lq_i = scale q̂_i ⊙ E_ir, Lk_i = k̂_i ⊙ E_ir, R_j = k̂_j ⊙ E_rj:
//   X = dM R, Y = dP R                 dq̂_i += scale E_ir ⊙ X_i,  dk̂_i += E_ir ⊙ Y_i
//   Z = dMᵀ Lq + dPᵀ Lk                 dk̂_j += E_rj ⊙ Z_j
// and the decay terms are their row and column sums: Σ_j D_ij = Lq_i ⊙ X_i + Lk_i ⊙ Y_i
// (to rect_t for t in the block, t <= i: a suffix sum) and Σ_i D_ij = R_j ⊙ Z_j (to rect_t for
// t <= r, j < t: a prefix sum); sums of the same terms, no differences. At C = 64 that is 3.8x
// fewer pairs in the channel loops (544 of 2080) and the rest four products per block.
// Measured (B = 1, T = 8192, H = 8, K = V = 128, one thread, CPU time, bench_gdn alternating
// with main, load 19-24, bench/results/2026-12-05-cpu-kda-speed/ab): backward 1308-1329 ->
// 1070-1073 ms with every pair in the channel loops as before; the rest of the gain is in
// load_chunk's decays (the pairs this no longer reads are not formed).
template <class T>
void kda_gated_products_bwd(const Chunk<T>& ch, const T* dM, const T* dP, BwdScratch<T>& w, T* dq,
                            T* dk, Acc<T>* rect) {
  using Acc = cpu::Acc<T>;
  const int64_t K = ch.K, C = ch.C;
  const T scale = ch.scale;
  const T* q = ch.q();
  const T* k = ch.k();
  std::fill(dq, dq + C * K, T(0));
  std::fill(dk, dk + C * K, T(0));
  Acc* row = w.row.data();
  for (int64_t i = 0; i < C; ++i) {
    std::fill(row, row + K, Acc(0));
    const T* qi = q + i * K;
    const T* ki = k + i * K;
    T* dqi = dq + i * K;
    T* dki = dk + i * K;
    for (int64_t j = i / kEBlock * kEBlock; j <= i; ++j) {
      const T wm = scale * dM[i * C + j], wp = dP[i * C + j];
      const T* e = ch.e_at(i, j);
      const T* kj = k + j * K;
      if (j == i) {  // E_ii = 1, dP_ii = 0
        for (int64_t c = 0; c < K; ++c) {
          dqi[c] += wm * ki[c];
          dki[c] += wm * qi[c];
        }
        continue;
      }
      kda_pair_bwd(K, wm, wp, qi, ki, kj, e, dqi, dki, dk + j * K);
      Acc* r = rect + (j + 1) * K;
      for (int64_t c = 0; c < K; ++c) {
        row[c] += (Acc(wm) * qi[c] + Acc(wp) * ki[c]) * (Acc(kj[c]) * e[c]);
        r[c] += row[c];
      }
    }
  }
  T* left = w.fac.data();           // (2 kEBlock, K): Lq, then Lk
  T* XY = left + 2 * kEBlock * K;   // (2 kEBlock, K): X, then Y
  T* right = XY + 2 * kEBlock * K;  // (C, K): R
  T* Zt = right + C * K;            // (C, K): Z
  for (int64_t b0 = kEBlock; b0 < C; b0 += kEBlock) {
    const int64_t r = b0 - 1, rows = std::min(kEBlock, C - b0);
    kda_left_factor(ch, q, scale, b0, rows, left);
    kda_left_factor(ch, k, T(1), b0, rows, left + rows * K);
    kda_right_factor(ch, b0, right);
    const T* dMb = dM + b0 * C;
    const T* dPb = dP + b0 * C;
    mul_add(rows, K, b0, false, dMb, C, 1, right, K, false, XY, K);
    mul_add(rows, K, b0, false, dPb, C, 1, right, K, false, XY + rows * K, K);
    mul_add(b0, K, rows, false, dMb, 1, C, left, K, false, Zt, K);
    mul_add(b0, K, rows, false, dPb, 1, C, left + rows * K, K, true, Zt, K);
    std::fill(row, row + K, Acc(0));  // Σ_{i' >= i} Σ_j D_i'j
    for (int64_t i = rows - 1; i >= 0; --i) {
      const T* e = ch.e_at(b0 + i, r);
      const T* X = XY + i * K;
      const T* Y = XY + (rows + i) * K;
      const T* Lq = left + i * K;
      const T* Lk = left + (rows + i) * K;
      T* dqi = dq + (b0 + i) * K;
      T* dki = dk + (b0 + i) * K;
      Acc* rt = rect + (b0 + i) * K;
      for (int64_t c = 0; c < K; ++c) {
        dqi[c] += scale * e[c] * X[c];
        dki[c] += e[c] * Y[c];
        row[c] += Acc(Lq[c]) * X[c] + Acc(Lk[c]) * Y[c];
        rt[c] += row[c];
      }
    }
    std::fill(row, row + K, Acc(0));  // Σ_{j' <= j} Σ_i D_ij'
    for (int64_t j = 0; j <= r; ++j) {
      const T* e = ch.e_at(r, j);
      const T* Z = Zt + j * K;
      const T* R = right + j * K;
      T* dkj = dk + j * K;
      Acc* rt = rect + (j + 1) * K;
      for (int64_t c = 0; c < K; ++c) dkj[c] += e[c] * Z[c];
      if (j == r) continue;
      for (int64_t c = 0; c < K; ++c) {
        row[c] += Acc(R[c]) * Z[c];
        rt[c] += row[c];
      }
    }
  }
}

// KDA's backward through −γ ⊙ K̂, scale γ ⊙ Q̂ and ρ ⊙ K̂ (chunk_bwd), element by element over
// the chunk's n = C K entries: dk̂ += ρ ⊙ dKd − γ ⊙ Z, dq̂ += scale γ ⊙ dQg, and the decay terms
// t1 = (−γ ⊙ k̂) ⊙ Z + (scale γ ⊙ q̂) ⊙ dQg, t2 = (ρ ⊙ k̂) ⊙ dKd. Written in chunk_bwd the loop
// was scalar, with a __tls_get_addr call per element (the chunk's vectors read through the
// thread-local scratch, which the stores might alias): ~18% of the backward's own loops'
// samples (perf, KDA forward + backward, B = 1, T = 8192, H = 8, K = V = 128). Restrict
// pointers here: vectorized, the same bits. Measured (B = 1, T = 8192, H = 8, K = V = 128, KDA,
// one thread, CPU time, bench_gdn alternating, load 13-16, bench/results/2026-12-05-cpu-kda-speed-3
// ab3, ab4): backward 626-677 -> 594-677 ms, faster in 7 of 9 rounds and equal in 2 (mean 0.966).
template <class T>
void kda_gate_bwd(int64_t n, T scale, const T* __restrict gam, const T* __restrict rho,
                  const T* __restrict nkg, const T* __restrict qg, const T* __restrict kd,
                  const T* __restrict Z, const T* __restrict dQg, const T* __restrict dKd,
                  T* __restrict dk, T* __restrict dq, Acc<T>* __restrict t1,
                  Acc<T>* __restrict t2) {
  for (int64_t at = 0; at < n; ++at) {
    const T a = gam[at];
    dk[at] += rho[at] * dKd[at] - a * Z[at];
    dq[at] += scale * a * dQg[at];
    t1[at] = Acc<T>(nkg[at]) * Z[at] + Acc<T>(qg[at]) * dQg[at];
    t2[at] = Acc<T>(kd[at]) * dKd[at];
  }
}

// The backward of one loaded chunk at sequence positions [p0, p0 + n): from dS (the gradient of
// the state leaving it) and the rows of dout, with S0 the state entering it, U its delta values
// and Vm = V − (γ ⊙ K̂) S0 from the first pass. Writes dv, dbeta and dg of its tokens, this value
// head's dq̂ and dk̂ rows (to dq_part, dk_part: (B·T, HV, K)), and the gradient of S0 to dS0.
template <class T>
void chunk_bwd(const Chunk<T>& ch, const Ptrs<T>& x, int64_t hv, int64_t p0, const T* S0,
               const T* U, const T* Vm, const T* dS, T* dS0, BwdScratch<T>& w, T* dq_part,
               T* dk_part) {
  using Acc = cpu::Acc<T>;
  const int64_t n = ch.n, K = ch.K, C = ch.C, Kg = ch.Kg, V = x.V;
  const T* beta = ch.beta.data();
  T* dv = w.Y.data();
  T* dO = dv + C * V;
  T* dU = dO + C * V;
  T* dM = w.dMA.data();
  T* dRU = dM + C * C;  // dR Uᵀ = −dA
  T* Z = w.Z.data();
  T* dq = w.dq.data();
  T* dk = w.dk.data();
  T* dKd = w.dKd.data();
  const T* P = ch.P();
  const T* M = ch.M();
  const T* dout = static_cast<const T*>(x.a.dout);
  for (int64_t i = 0; i < n; ++i)
    std::copy(dout + x.v_at(p0 + i, hv), dout + x.v_at(p0 + i, hv) + V, dO + i * V);
  std::fill(dO + n * V, dO + C * V, T(0));

  // Through O = (scale γ ⊙ Q̂) S0 + M U and S' = diag(γ_{C-1}) S0 + (ρ ⊙ K̂)ᵀ U.
  gemm(true, false, C, V, C, T(1), M, C, dO, V, T(0), dU, V);
  gemm(false, false, C, V, K, T(1), ch.kd.data(), K, dS, V, T(1), dU, V);
  gemm(false, true, C, K, V, T(1), U, V, dS, V, T(0), dKd, K);
  std::fill(w.dgam.begin(), w.dgam.begin() + K, Acc(0));
  for (int64_t c = 0; c < K; ++c) {
    w.dgam[size_t(Kg == 1 ? 0 : c)] += dot<Acc>(S0 + c * V, dS + c * V, V);
    const T decay = ch.gam_last(c);
    for (int64_t j = 0; j < V; ++j) dS0[c * V + j] = decay * dS[c * V + j];
  }
  // Through U = (I + A)⁻¹ diag(β) Vm: dU becomes dR = (I + A)⁻ᵀ dU, the gradient of diag(β) Vm;
  // then [dM; −dA] = [dO; dR] Uᵀ in one product.
  trsm_unit_lower(/*trans=*/true, C, V, ch.A.data(), C, dU, V);
  const T* dR = dU;
  gemm(false, true, 2 * C, C, V, T(1), dO, V, U, V, T(0), dM, C);
  for (int64_t i = 0; i < C; ++i) {
    for (int64_t j = 0; j < V; ++j) dv[i * V + j] = beta[i] * dR[i * V + j];
    const Acc db = dot<Acc>(dR + i * V, Vm + i * V, V) - dot<Acc>(dRU + i * C, P + i * C, i);
    if (i < n) static_cast<T*>(x.a.dbeta)[(p0 + i) * x.HV + hv] = T(db);
  }
  T* dv_out = static_cast<T*>(x.a.dv);
  for (int64_t i = 0; i < n; ++i)
    std::copy(dv + i * V, dv + i * V + V, dv_out + x.v_at(p0 + i, hv));
  // Through V − (γ ⊙ K̂) S0 and (scale γ ⊙ Q̂) S0, with dv = diag(β) dR: [dv; dO] S0ᵀ gives
  // [−dKg; dQg], and the rows [−γ ⊙ K̂; scale γ ⊙ Q̂] take [dv; dO] back into dS0.
  gemm(false, true, 2 * C, K, V, T(1), dv, V, S0, V, T(0), Z, K);
  gemm(true, false, K, V, 2 * C, T(1), ch.kqg.data(), K, dv, V, T(1), dS0, V);
  // dP = diag(β) dA on the strict lower triangle (in dRU's place); dM on the lower one.
  T* dP = dRU;
  for (int64_t i = 0; i < C; ++i) {
    for (int64_t j = 0; j < i; ++j) dP[i * C + j] *= -beta[i];
    std::fill(dP + i * C + i, dP + i * C + C, T(0));
    std::fill(dM + i * C + i + 1, dM + i * C + C, T(0));
  }

  // The decays. Every decay factor is the exponential of a segment sum of g, so g_t receives
  // the sensitivity of each factor whose segment contains t, summed directly:
  //   dg_t = Σ_{i>=t} T1_i + Σ_{j<t} T2_j + T3 + Σ_{j<t<=i} D_ij
  // with T1_i from γ_i (segment [0, i]) in γ ⊙ K̂ and scale γ ⊙ Q̂, T2_j from ρ_j ((j, C)) in
  // ρ ⊙ K̂, T3 from the state's decay γ_{C-1}, and D_ij from E_ij ((j, i]) in the gated products
  // (per key channel for KDA). Gathering them per running sum (dG_i as ∂/∂(g_0 + .. + g_i), then
  // a suffix sum) is shorter but cancels: terms +D_ij at i and -D_ij at j meet in the suffix
  // sum; that was up to 1.14x over the 2x rule on dg of the Gated DeltaNet cases in f32 and in
  // f64, this form is within it.
  Acc* t1 = w.t1.data();
  Acc* t2 = w.t2.data();
  Acc* rect = w.rect.data();  // Σ_{j<t<=i} D_ij, by t
  std::fill(t1, t1 + C * Kg, Acc(0));
  std::fill(t2, t2 + C * Kg, Acc(0));
  std::fill(rect, rect + C * Kg, Acc(0));
  if (Kg == 1) {
    // One decay per pair: D_ij = dM_ij M_ij + dP_ij P_ij; the q/k gradients are products of
    // dM ⊙ E and dP ⊙ E: dq̂ = scale (dM ⊙ E) K̂ and
    // dk̂ = [(dP ⊙ E) + (dP ⊙ E)ᵀ, scale (dM ⊙ E)ᵀ] [K̂; Q̂].
    T* L = w.L.data();
    const T* k = ch.k();
    for (int64_t i = 0; i < C; ++i) {
      Acc row = 0;  // Σ_{j' <= j} D_ij'
      const T* e = ch.e_at(i, 0);
      for (int64_t j = 0; j < i; ++j) {
        row += Acc(dM[i * C + j]) * M[i * C + j] + Acc(dP[i * C + j]) * P[i * C + j];
        rect[j + 1] += row;
      }
      for (int64_t j = 0; j <= i; ++j) {
        dM[i * C + j] *= e[j];
        dP[i * C + j] *= e[j];
      }
    }
    for (int64_t i = 0; i < C; ++i)
      for (int64_t j = 0; j < C; ++j) {
        L[i * 2 * C + j] = dP[i * C + j] + dP[j * C + i];
        L[i * 2 * C + C + j] = ch.scale * dM[j * C + i];
      }
    gemm(false, false, C, K, C, ch.scale, dM, C, k, K, T(0), dq, K);
    gemm(false, false, C, K, 2 * C, T(1), L, 2 * C, ch.kq.data(), K, T(0), dk, K);
  } else {
    kda_gated_products_bwd(ch, dM, dP, w, dq, dk, rect);
  }
  // Through −γ ⊙ K̂, scale γ ⊙ Q̂ (Z holds −dKg, dQg) and ρ ⊙ K̂.
  const T* nkg = ch.kqg.data();
  const T* qg = nkg + C * K;
  const T* dQg = Z + C * K;
  if (Kg == 1) {
    for (int64_t i = 0; i < C; ++i) {
      const T a = ch.gam[size_t(i)], sa = ch.scale * a, r = ch.rho[size_t(i)];
      for (int64_t c = 0; c < K; ++c) {
        const int64_t at = i * K + c;
        dk[at] += r * dKd[at] - a * Z[at];
        dq[at] += sa * dQg[at];
      }
      t1[i] = dot<Acc>(nkg + i * K, Z + i * K, K) + dot<Acc>(qg + i * K, dQg + i * K, K);
      t2[i] = dot<Acc>(ch.kd.data() + i * K, dKd + i * K, K);
    }
  } else {
    kda_gate_bwd(C * K, ch.scale, ch.gam.data(), ch.rho.data(), nkg, qg, ch.kd.data(), Z, dQg, dKd,
                 dk, dq, t1, t2);
  }
  // Row by row, every channel's sums in the order of a loop per channel (the same bits): the
  // channels are contiguous. Per channel, a dependent add on every Kg-th double, these sums were
  // a quarter of the backward's own loops' samples, ~5% of the KDA forward + backward's (perf,
  // B = 1, T = 8192, H = 8, K = V = 128); the gain is in kda_pair_bwd's measurement.
  T* dg = static_cast<T*>(x.a.dg);
  Acc* before = w.row.data();  // Σ_{j<t} T2_j, by channel
  Acc* after = before + Kg;    // Σ_{i>=t} T1_i
  Acc* t3 = w.dgam.data();
  for (int64_t c = 0; c < Kg; ++c) {
    t3[c] = Acc(ch.gam_last(c)) * t3[c];
    before[c] = after[c] = Acc(0);
  }
  for (int64_t t = 0; t < n; ++t)
    for (int64_t c = 0; c < Kg; ++c) {
      rect[t * Kg + c] += before[c] + t3[c];
      before[c] += t2[t * Kg + c];
    }
  for (int64_t t = C - 1; t >= 0; --t) {
    for (int64_t c = 0; c < Kg; ++c) after[c] += t1[t * Kg + c];
    if (t >= n) continue;
    T* dgt = dg + x.g_at(p0 + t, hv);
    for (int64_t c = 0; c < Kg; ++c) dgt[c] = T(rect[t * Kg + c] + after[c]);
  }
  for (int64_t i = 0; i < n; ++i) {
    std::copy(dq + i * K, dq + i * K + K, dq_part + ((p0 + i) * x.HV + hv) * K);
    std::copy(dk + i * K, dk + i * K + K, dk_part + ((p0 + i) * x.HV + hv) * K);
  }
}

// Per-thread scratch, fetched once per work item (each thread_local access in the shared library
// is a __tls_get_addr call: 4% of the backward when made in the loops). `noipa`: otherwise GCC's
// interprocedural constant propagation sees that every call of load_chunk, run_chunk and chunk_bwd
// passes this thread_local's members, clones them with the address as a constant, and the clones
// recompute it, a __tls_get_addr call, at every use in their loops (77 call sites in load_chunk
// alone; 4.2% of the KDA forward's perf samples in __tls_get_addr).
template <class T>
struct Scratch {
  Chunk<T> ch;
  BwdScratch<T> bwd;
  Vec<T> S, UO, states, Us, Vms, dS, dS0;
};
#if defined(__clang__)  // Clang (the fuzzing build) has no noipa: noinline there, not measured
#define LONGCTX_GDR_NOIPA __attribute__((noinline))
#else
#define LONGCTX_GDR_NOIPA __attribute__((noipa))
#endif
template <class T>
LONGCTX_GDR_NOIPA Scratch<T>& scratch() {
  thread_local Scratch<T> s;
  return s;
}

// Heads per parallel task of the forward: a task runs G value heads of one sequence chunk by
// chunk in lockstep, so that the rows it reads and writes for one chunk lie together. The rows of
// one head are H · K floats apart (a new 4 KB page every row at H = 8, K = 128); perf put 27% of
// the forward's time (one thread, T = 8192) on the stores after the loads of those rows in
// load_chunk, and the next heads of a group find their rows on the same pages. G is the largest
// divisor of HV up to kMaxHeadGroup that leaves a task per thread; a task's states, G x K x V,
// stay in the L2 cache (512 KB at G = 8, K = V = 128). Measured (B = 1, T = 8192, H = 8,
// K = V = 128, CPU time, alternating, load 7-11): one thread 153 ms -> 146/143 ms at G = 4 and
// 140/142 ms at G = 8; two threads 152 ms -> 141/147 ms at G = 4 (G = 2: no change). With the
// rest of this file's second pass, against the token loop: bench/results/2026-12-05-cpu-gdn-speed-2
// (one thread 158-162 -> 141-144 ms, two 152-165 -> 144-152 ms, load 8-20). A head-major copy of
// q, k, v made once per call instead was slower (156 -> 198-206 ms: the copy), and software
// prefetch of the next head's rows on top of this gained nothing (139-140 -> 143-149 ms), nor did
// a prefetch of the group's next chunk into L2 (99-106 -> 104-106 ms). The wait is not page
// walks: reading q, k and v in this order costs 11.1 ms (9.0 ms on 2 MB pages), and the op on
// 2 MB pages (madvise) measured the same (bench/results/2026-12-05-cpu-gdn-speed-3). Again with
// the streamed output (bench/results/2026-12-05-cpu-gdn-speed-4): G = 4 and 2 the same as 8 within
// the noise, and the next head's rows prefetched a few lines per row block from inside run_chunk's
// products (spread, not in one burst) 2-5 ms slower.
constexpr int64_t kMaxHeadGroup = 8;
int64_t head_group(const Context& ctx, int64_t N, int64_t HV) {
  int64_t G = std::min(kMaxHeadGroup, HV);
  while (G > 1 && (HV % G != 0 || N * (HV / G) < ctx.cpu_threads())) --G;
  return G;
}

// The forward's output rows: dst's n rows (ld ldd) := src's (n x V, contiguous). With `stream`,
// in f32 on x86 where the rows are whole 64-byte lines, by non-temporal stores: out is written
// once and not read again by the op, so its lines need not be read into the cache before they are
// written (a plain store reads each line first: 32 MB more read at B = 1, T = 8192, HV = 8,
// V = 128). Measured there (one thread, CPU time, fwd_probe alternating with main, 8 rounds, load
// 18-21, bench/results/2026-12-05-cpu-gdn-speed-4): forward best 98.7-103.5 -> 93.9-102.5 ms (mean
// 101.2 -> 97.8, -3.4%; medians 100.8-105.8 -> 95.6-104.1), faster in 6 rounds, 1 tie, 1 slower;
// the same bits. The driver streams only an output of at least kStreamOutBytes: a smaller one may
// still be in a cache when the next op reads it, which non-temporal stores would forfeit (a guard,
// not measured; tests/test_gated_delta_rule.cpp's `streamed_out` sits just above it).
constexpr int64_t kStreamOutBytes = int64_t(8) << 20;
template <class T>
void store_rows(int64_t n, int64_t V, const T* src, T* dst, int64_t ldd, bool stream) {
#if defined(__AVX2__) && defined(__FMA__)
  if constexpr (std::is_same_v<T, float>) {
    if (stream && reinterpret_cast<uintptr_t>(dst) % 64 == 0 && ldd % 16 == 0 && V % 16 == 0) {
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < V; j += 8)
          _mm256_stream_ps(dst + i * ldd + j, _mm256_loadu_ps(src + i * V + j));
      _mm_sfence();
      return;
    }
  }
#endif
  (void)stream;
  for (int64_t i = 0; i < n; ++i) std::copy(src + i * V, src + i * V + V, dst + i * ldd);
}

// The Gated DeltaNet forward's output rows: dst's n rows (ld ldd) := W_i + (scale γ_i) Xq_i (Xq
// null: W_i), each element one FMA, stored as store_rows does (streamed when `stream`).
template <class T>
void store_out(int64_t n, int64_t V, const T* W, const T* Xq, const T* gam, T scale, T* dst,
               int64_t ldd, bool stream) {
#if defined(__AVX2__) && defined(__FMA__)
  if constexpr (std::is_same_v<T, float>) {
    if (V % 8 == 0) {
      const bool nt =
          stream && reinterpret_cast<uintptr_t>(dst) % 64 == 0 && ldd % 16 == 0 && V % 16 == 0;
      for (int64_t i = 0; i < n; ++i) {
        const __m256 sg = _mm256_set1_ps(scale * gam[i]);
        for (int64_t j = 0; j < V; j += 8) {
          __m256 o = _mm256_loadu_ps(W + i * V + j);
          if (Xq) o = _mm256_fmadd_ps(sg, _mm256_loadu_ps(Xq + i * V + j), o);
          if (nt)
            _mm256_stream_ps(dst + i * ldd + j, o);
          else
            _mm256_storeu_ps(dst + i * ldd + j, o);
        }
      }
      if (nt) _mm_sfence();
      return;
    }
  }
#endif
  (void)stream;
  for (int64_t i = 0; i < n; ++i) {
    const T sg = scale * gam[i];
    for (int64_t j = 0; j < V; ++j)
      dst[i * ldd + j] = Xq ? std::fma(sg, Xq[i * V + j], W[i * V + j]) : W[i * V + j];
  }
}

// Reads the q, k and v rows of a head group's chunk (value heads [hv0, hv0 + G), positions
// [p0, p0 + n)) once, one load per 64-byte line in address order, before load_chunk and the
// products read them head by head: a position's rows of the group's heads lie together, so this
// pass streams each in one run where the heads' own reads take a slice of it at a time, a page
// apart. Loads, not software prefetches (those, of the next chunk or head, gained nothing in
// -gdn-speed-2..5). Measured (B = 1, T = 8192, H = 8, K = V = 128, one thread, CPU time, fwd_probe
// alternating with the library without it, load 0.9-1.2; bench/results/2026-12-05-cpu-gdn-speed-7,
// ab2, ab3): q and k rows only -2.0% / -2.2%, with v's rows too -2.2% to -2.9% (10 of 10 rounds);
// bench_gdn's forward 4.8-4.9x -> 5.1-5.4x the token loop. The same bits. Gated DeltaNet only:
// KDA's forward was 2.0% slower with it (faster in 2 of 8 rounds, ab3/10).
template <class T>
void read_group_rows(const Ptrs<T>& x, int64_t hv0, int64_t G, int64_t p0, int64_t n) {
  const int64_t step = 64 / int64_t(sizeof(T));
  const int64_t wqk = std::max<int64_t>(G / x.R, 1) * x.K, wv = G * x.V;
  T acc = 0;
  for (int64_t i = 0; i < n; ++i) {
    const T* kr = x.k_row(p0 + i, hv0);
    const T* qr = x.q_row(p0 + i, hv0);
    const T* vr = x.v + x.v_at(p0 + i, hv0);
    for (int64_t c = 0; c < wqk; c += step) acc += kr[c] + qr[c];
    for (int64_t c = 0; c < wv; c += step) acc += vr[c];
  }
  volatile T sink = acc;  // a volatile access is observable: the loads and the sum stay
  (void)sink;
}

// The Gated DeltaNet forward's chunk (scalar gate), from the state S (K x V; zeros when
// `zero_state`) loaded by load_chunk(…, ChunkUse::forward_scalar): the same quantities as
// run_chunk's, in an order that needs no copy of v and no γ-scaled rows:
//   X = [K̂; Q̂] S (one product of 2C rows: both read the same S),
//   U = diag(β) (V − diag(γ) X_k) (V's rows read where they lie), U := (I + A)⁻¹ U,
//   out = diag(scale γ) X_q + M U (M U into X_k's rows, free by then; summed as out is stored),
//   S := γ_{C-1} S + (ρ ⊙ K̂)ᵀ U (the decay applied as the product loads S: one pass over S).
// buf holds 3C x V. v: the chunk's n rows of v (ld ldv); out: its n output rows (ld ldo).
// Removed against run_chunk as it was then: per chunk and head two C x V copies of v (into the
// chunk, then into U; run_chunk now makes one), the −γ ⊙ K̂ and scale γ ⊙ Q̂ copies (C x K each),
// the β pass over U (now in U's formation) and the pass that decayed S (now in run_chunk's
// product too); added: γ in U's formation and in the output's store (one FMA per
// element). The products are the same (3 C K V + P, M, the solve). Not bitwise equal to
// run_chunk's form (γ is applied to a product's result instead of its left factor). Measured
// (B = 1, T = 8192, H = 8, K = V = 128, one thread, CPU time, fwd_probe alternating with main,
// load 14-15, bench/results/2026-12-05-cpu-gdn-speed-5, ab/06): best 102.1-107.7 -> 98.5-103.8 ms
// (mean 105.2 -> 101.6, -3.4%), medians lower in 8 of 8 rounds; bench_gdn 91.6-103.6 -> 92.4-97.8
// ms in 3 rounds. At T = 512 (4 + 3 rounds) equal or 0.2-0.4 ms lower.
template <class T>
void run_chunk_scalar_fwd(const Chunk<T>& ch, const T* v, int64_t ldv, int64_t V, T* S,
                          bool zero_state, T* buf, T* out, int64_t ldo, bool stream) {
  const int64_t K = ch.K, C = ch.C, n = ch.n;
  T* X = buf;  // (2C, V): K̂ S, then Q̂ S
  T* U = buf + 2 * C * V;
  if (!zero_state) mul_add(2 * C, V, K, false, ch.kq.data(), K, 1, S, V, false, X, V);
  for (int64_t i = 0; i < n; ++i) {
    const T b = ch.beta[size_t(i)], a = ch.gam[size_t(i)];
    const T* vi = v + i * ldv;
    const T* xi = X + i * V;
    T* ui = U + i * V;
    if (zero_state)
      for (int64_t j = 0; j < V; ++j) ui[j] = b * vi[j];
    else
      for (int64_t j = 0; j < V; ++j) ui[j] = b * (vi[j] - a * xi[j]);
  }
  std::fill(U + n * V, U + C * V, T(0));
  solve_unit_lower(C, V, ch.A.data(), U);
  T* W = X;  // M U
  mul_add(C, V, C, false, ch.M(), C, 1, U, V, false, W, V, Tri::inner);
  store_out(n, V, W, zero_state ? nullptr : X + C * V, ch.gam.data(), ch.scale, out, ldo, stream);
  // S := γ_{C-1} S + (ρ ⊙ K̂)ᵀ U: a's element (c, i) is kd[i K + c].
  mul_add(K, V, C, false, ch.kd.data(), 1, K, U, V, !zero_state, S, V, Tri::none, ch.gam_last_row(),
          ch.gam_last_step());
}

}  // namespace

void gated_delta_rule_fwd(const Context& ctx, const GatedDeltaRuleArgs& args) {
  dispatch_cpu_float("gated_delta_rule_fwd", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const Ptrs<T> x(args);
    const Sequences& seqs = args.seqs;
    const int64_t K = x.K, V = x.V, HV = x.HV, KV = K * V, C = args.chunk_size;
    const T* h0 = static_cast<const T*>(args.initial_state);
    T* fin = static_cast<T*>(args.final_state);
    T* out = static_cast<T*>(args.out);
    const int64_t G = head_group(ctx, seqs.count, HV);
    const bool stream = args.B * args.T * HV * V * int64_t(sizeof(T)) >= kStreamOutBytes;
    parallel_for_dynamic(ctx, seqs.count * HV / G, [&](int64_t task) {
      const int64_t s = task * G / HV, hv0 = task * G % HV;
      const int64_t begin = seqs.begin(s), L = seqs.length(s);
      Scratch<T>& sc = scratch<T>();
      Chunk<T>& ch = sc.ch;
      ch.reserve(C, K, x.Kg);
      grow(sc.S, G * KV);
      grow(sc.UO, 3 * C * V);
      const T* O = sc.UO.data() + C * V;
      for (int64_t h = 0; h < G; ++h) {
        const int64_t item = s * HV + hv0 + h;
        T* S = fin ? fin + item * KV : sc.S.data() + h * KV;
        for (int64_t i = 0; i < KV; ++i) S[i] = h0 ? h0[item * KV + i] : T(0);
      }
      for (int64_t t0 = 0; t0 < L; t0 += C) {
        const int64_t n = std::min(C, L - t0), p0 = begin + t0;
        if (x.Kg == 1)
          read_group_rows(x, hv0, G, p0, n);  // not KDA's: slower there, see its comment
        for (int64_t h = 0; h < G; ++h) {
          const int64_t hv = hv0 + h, item = s * HV + hv;
          T* S = fin ? fin + item * KV : sc.S.data() + h * KV;
          if (x.Kg == 1) {
            load_chunk(ch, x, hv, p0, n, ChunkUse::forward_scalar);
            run_chunk_scalar_fwd(ch, x.v + x.v_at(p0, hv), HV * V, V, S,
                                 /*zero_state=*/t0 == 0 && !h0, sc.UO.data(), out + x.v_at(p0, hv),
                                 HV * V, stream);
            continue;
          }
          load_chunk(ch, x, hv, p0, n, ChunkUse::forward);
          run_chunk(ch, x.v + x.v_at(p0, hv), HV * V, V, S, /*zero_state=*/t0 == 0 && !h0,
                    sc.UO.data(), static_cast<T*>(nullptr), /*with_O=*/true);
          store_rows(n, V, O, out + x.v_at(p0, hv), HV * V, stream);
        }
      }
    });
  });
}

void gated_delta_rule_bwd(const Context& ctx, const GatedDeltaRuleArgs& args) {
  dispatch_cpu_float("gated_delta_rule_bwd", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const Ptrs<T> x(args);
    const Sequences& seqs = args.seqs;
    const int64_t K = x.K, V = x.V, H = x.H, HV = x.HV, R = x.R, KV = K * V;
    const int64_t C = args.chunk_size, positions = args.B * args.T;
    const T* h0 = static_cast<const T*>(args.initial_state);
    const T* dfin = static_cast<const T*>(args.dfinal_state);
    T* dh0 = static_cast<T*>(args.dinitial_state);
    T* dq = static_cast<T*>(args.dq);
    T* dk = static_cast<T*>(args.dk);
    // dq̂ and dk̂ per value head, (B·T, HV, K), summed over each group below; with one value
    // head per q/k head (HV = H) that is the layout of dq and dk, written directly. (Not
    // zeroed: every row is written.)
    std::unique_ptr<T[]> parts(R > 1 ? new T[size_t(2 * positions * HV * K)] : nullptr);
    T* dq_part = R > 1 ? parts.get() : dq;
    T* dk_part = R > 1 ? parts.get() + positions * HV * K : dk;
    parallel_for_dynamic(ctx, seqs.count * HV, [&](int64_t item) {
      const int64_t s = item / HV, hv = item % HV;
      const int64_t begin = seqs.begin(s), L = seqs.length(s);
      const int64_t nc = (L + C - 1) / C;
      Scratch<T>& sc = scratch<T>();
      Chunk<T>& ch = sc.ch;
      ch.reserve(C, K, x.Kg);
      sc.bwd.reserve(C, K, V, x.Kg);
      grow(sc.states, (nc + 1) * KV);
      grow(sc.Us, nc * C * V);
      grow(sc.Vms, nc * C * V);
      grow(sc.dS, KV);
      grow(sc.dS0, KV);
      T* states = sc.states.data();
      // Pass 1: the state entering each chunk, and each chunk's U and Vm.
      for (int64_t i = 0; i < KV; ++i) states[i] = h0 ? h0[item * KV + i] : T(0);
      for (int64_t c = 0; c < nc; ++c) {
        load_chunk(ch, x, hv, begin + c * C, std::min(C, L - c * C), ChunkUse::states);
        T* next = states + (c + 1) * KV;
        std::copy(next - KV, next, next);
        run_chunk(ch, x.v + x.v_at(begin + c * C, hv), HV * V, V, next,
                  /*zero_state=*/c == 0 && !h0, sc.Us.data() + c * C * V, sc.Vms.data() + c * C * V,
                  /*with_O=*/false);
      }
      // Pass 2: chunks last to first, carrying dS back. Each chunk is loaded again (for KDA the
      // decays and in-block products formed a second time): keeping pass 1's chunks instead
      // (loaded with M, the same bits) measured no gain. B = 1, T = 8192, H = 8, K = V = 128,
      // KDA, one thread, CPU time, alternating with main, load 5-7: every chunk kept (1.56 MB
      // each, 199 MB per thread) backward 650-693 ms against main's 645-685 ms, slower in 10 of
      // 10 rounds (+1.7% mean); the last 43 chunks (64 MiB) 648-670 ms, within the noise. A kept
      // chunk is ~800 KB written to memory and ~600 KB read back, which costs what forming it
      // again in the cache does (perf, forward + backward: load_chunk 17.3% -> 16.8% of the
      // samples with a third fewer loads, the backward's own loops 12.6% -> 17.1%).
      // bench/results/2026-12-05-cpu-kda-speed-2.
      T* dS = sc.dS.data();
      T* dS0 = sc.dS0.data();
      for (int64_t i = 0; i < KV; ++i) dS[i] = dfin ? dfin[item * KV + i] : T(0);
      for (int64_t c = nc - 1; c >= 0; --c) {
        const int64_t p0 = begin + c * C;
        load_chunk(ch, x, hv, p0, std::min(C, L - c * C), ChunkUse::gradients);
        chunk_bwd(ch, x, hv, p0, states + c * KV, sc.Us.data() + c * C * V,
                  sc.Vms.data() + c * C * V, dS, dS0, sc.bwd, dq_part, dk_part);
        std::swap(dS, dS0);
      }
      if (dh0) std::copy(dS, dS + KV, dh0 + item * KV);
    });
    // dq, dk: each q/k head's value heads summed in order, then the l2norm's backward.
    if (R == 1 && !args.l2norm) return;
    parallel_for(ctx, positions * H, [&](int64_t row) {
      const int64_t p = row / H, h = row % H;
      for (int which = 0; which < 2; ++which) {
        const T* in = (which == 0 ? x.q : x.k) + row * K;
        T* d = (which == 0 ? dq : dk) + row * K;
        if (R > 1) {
          const T* part = (which == 0 ? dq_part : dk_part) + (p * HV + h * R) * K;
          for (int64_t c = 0; c < K; ++c) {
            T sum = part[c];
            for (int64_t r = 1; r < R; ++r) sum += part[r * K + c];
            d[c] = sum;
          }
        }
        if (args.l2norm) l2norm_bwd(in, d, K);
      }
    });
  });
}

void gated_delta_rule_update(const Context& ctx, const GatedDeltaRuleArgs& args) {
  dispatch_cpu_float("gated_delta_rule_update", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const Ptrs<T> x(args);
    const int64_t K = x.K, V = x.V, HV = x.HV, Kg = x.Kg;
    const T scale = T(args.scale);
    T* state = static_cast<T*>(args.state);
    T* out = static_cast<T*>(args.out);
    // Two passes over the state, each a vector loop over a row of V: decay it and gather Sᵀ k̂,
    // then add k̂ uᵀ and gather Sᵀ q̂.
    parallel_for(ctx, args.B * HV, [&](int64_t item) {
      const int64_t hv = item % HV, p = item / HV;
      thread_local Vec<T> acc;
      grow(acc, 2 * V);
      T* ks = acc.data();
      T* u = ks + V;
      const T* qr = x.q_row(p, hv);
      const T* kr = x.k_row(p, hv);
      const T rq = scale * (args.l2norm ? l2norm_rstd(qr, K) : T(1));
      const T rk = args.l2norm ? l2norm_rstd(kr, K) : T(1);
      const T* g = x.g + x.g_at(p, hv);
      const T* v = x.v + x.v_at(p, hv);
      const T b = x.beta[p * HV + hv];
      T* S = state + item * K * V;
      T* o = out + x.v_at(p, hv);
      std::fill(ks, ks + V, T(0));
      for (int64_t c = 0; c < K; ++c) {
        const T decay = std::exp(g[Kg == 1 ? 0 : c]), kc = kr[c] * rk;
        T* row = S + c * V;
        for (int64_t j = 0; j < V; ++j) {
          row[j] *= decay;
          ks[j] += kc * row[j];
        }
      }
      for (int64_t j = 0; j < V; ++j) {
        u[j] = b * (v[j] - ks[j]);
        o[j] = T(0);
      }
      for (int64_t c = 0; c < K; ++c) {
        const T kc = kr[c] * rk, qc = qr[c] * rq;
        T* row = S + c * V;
        for (int64_t j = 0; j < V; ++j) {
          row[j] += kc * u[j];
          o[j] += qc * row[j];
        }
      }
    });
  });
}

}  // namespace longctx::cpu
