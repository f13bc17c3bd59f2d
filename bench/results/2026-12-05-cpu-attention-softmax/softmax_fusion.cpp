// Prototype (issue 18): the CPU flash-attention forward's online softmax fused into the S = Q·Kᵀ
// kernel, against a standalone copy of the current structure (src/cpu/attention.cpp at e106442:
// 8 x 32 S blocks, 6 x 64 P·V blocks, row max / exp2 / rescale as separate passes per row).
// One thread, f32, D = 64, kBlockQ = 128, kBlockK = 256, non-causal, T a multiple of 256.
//
//   g++ -O3 -std=c++17 -march=x86-64-v3 -ffp-contract=off softmax_fusion.cpp -o softmax_fusion
//   ./softmax_fusion [T] [heads] [rounds]
//
// Variants (the AVX-512 ones need avx512f at run time; -march stays x86-64-v3 as the library):
//   base      the current forward (AVX-512 kernels)            -- the baseline
//   base2     the same with the AVX2 kernels                   -- checks the copy: bits == base
//   fmax      exact fusion: S kernel row-block outer (8 rows x all 256 keys), the row max taken
//             in its epilogue, the softmax of those 8 rows right after (L1-hot); bits == base
//   lazy      current structure, lazy rescale: the running max m moves only when a score
//             exceeds m + kTau (then exactly as base); else P = 2^(S − m) with the old m and
//             no rescale of O or l
//   lazy2     lazy with the AVX2 kernels                        -- the contract: bits == lazy
//   flazy     lazy rule, fused as fmax: the epilogue keeps the max and the "exceeds m + kTau"
//             flags; 2^(S - m) over the 8 rows right after, from L1; bits == lazy2
//   basefm    base with a 4-chain row max (row_max4); bits == base
//   *sf       the same variant with exp2_ps512_sf (vscalefps) in its AVX-512 exp2
//   kernr     timing only: fmax's row-block-outer S kernel and P·V, no softmax
//   kern      timing only: the two kernels and nothing else (no softmax; output meaningless)
//   fexp      lazy rule, fused: 2^(S − m) computed in the S kernel's epilogue from registers
//             (and the row sums), with a per-row fallback to the exact path; bits == lazy2
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace {

constexpr int64_t D = 64, kBlockQ = 128, kBlockK = 256, ldS = kBlockK + 16;
constexpr double kLog2e = 1.4426950408889634074, kLn2 = 0.6931471805599453094;
constexpr float kNegInf = -INFINITY;
// Lazy rescale threshold (log2 domain): P entries up to 2^kTau before the max is moved.
constexpr float kTau = 8.f;

// ---- copies of the library's kernels (src/cpu/attention.cpp) ----------------------------------
#define ROWS6(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define ROWS8(X) ROWS6(X) X(6) X(7)

void abt_block6(const float* const* a, const float* panel, float alpha, float* const* s) {
#define DECL(r) __m256 c##r##0 = _mm256_setzero_ps(), c##r##1 = _mm256_setzero_ps();
  ROWS6(DECL)
#undef DECL
  for (int64_t d = 0; d < D; ++d) {
    const __m256 b0 = _mm256_load_ps(panel + d * 16), b1 = _mm256_load_ps(panel + d * 16 + 8);
#define STEP(r)                                     \
  {                                                 \
    const __m256 x = _mm256_broadcast_ss(a[r] + d); \
    c##r##0 = _mm256_fmadd_ps(x, b0, c##r##0);      \
    c##r##1 = _mm256_fmadd_ps(x, b1, c##r##1);      \
  }
    ROWS6(STEP)
#undef STEP
  }
  const __m256 al = _mm256_set1_ps(alpha);
#define STORE(r)                                      \
  _mm256_storeu_ps(s[r], _mm256_mul_ps(c##r##0, al)); \
  _mm256_storeu_ps(s[r] + 8, _mm256_mul_ps(c##r##1, al));
  ROWS6(STORE)
#undef STORE
}

void pv_block6(const float* const* p, const float* vp, int64_t nk, float* const* c) {
#define DECL(r) __m256 c##r##0 = _mm256_loadu_ps(c[r]), c##r##1 = _mm256_loadu_ps(c[r] + 8);
  ROWS6(DECL)
#undef DECL
  for (int64_t j = 0; j < nk; ++j) {
    const __m256 v0 = _mm256_loadu_ps(vp + j * D), v1 = _mm256_loadu_ps(vp + j * D + 8);
#define STEP(r)                                     \
  {                                                 \
    const __m256 x = _mm256_broadcast_ss(p[r] + j); \
    c##r##0 = _mm256_fmadd_ps(x, v0, c##r##0);      \
    c##r##1 = _mm256_fmadd_ps(x, v1, c##r##1);      \
  }
    ROWS6(STEP)
#undef STEP
  }
#define STORE(r)                   \
  _mm256_storeu_ps(c[r], c##r##0); \
  _mm256_storeu_ps(c[r] + 8, c##r##1);
  ROWS6(STORE)
#undef STORE
}

__attribute__((target("avx512f"))) void abt_block8_avx512(const float* const* a,
                                                          const float* panels, float alpha,
                                                          float* const* s) {
#define DECL(r) __m512 c##r##0 = _mm512_setzero_ps(), c##r##1 = _mm512_setzero_ps();
  ROWS8(DECL)
#undef DECL
  const float* second = panels + 16 * D;
  for (int64_t d = 0; d < D; ++d) {
    const __m512 b0 = _mm512_loadu_ps(panels + d * 16);
    const __m512 b1 = _mm512_loadu_ps(second + d * 16);
#define STEP(r)                                \
  {                                            \
    const __m512 x = _mm512_set1_ps(a[r][d]);  \
    c##r##0 = _mm512_fmadd_ps(x, b0, c##r##0); \
    c##r##1 = _mm512_fmadd_ps(x, b1, c##r##1); \
  }
    ROWS8(STEP)
#undef STEP
  }
  const __m512 al = _mm512_set1_ps(alpha);
#define STORE(r)                                      \
  _mm512_storeu_ps(s[r], _mm512_mul_ps(c##r##0, al)); \
  _mm512_storeu_ps(s[r] + 16, _mm512_mul_ps(c##r##1, al));
  ROWS8(STORE)
#undef STORE
}

__attribute__((target("avx512f"))) void pv_block6_avx512(const float* const* p, const float* vp,
                                                         int64_t nk, float* const* c) {
#define DECL(r)                                                                 \
  __m512 c##r##0 = _mm512_loadu_ps(c[r]), c##r##1 = _mm512_loadu_ps(c[r] + 16); \
  __m512 c##r##2 = _mm512_loadu_ps(c[r] + 32), c##r##3 = _mm512_loadu_ps(c[r] + 48);
  ROWS6(DECL)
#undef DECL
  for (int64_t j = 0; j < nk; ++j) {
    const float* vj = vp + j * D;
    const __m512 v0 = _mm512_loadu_ps(vj), v1 = _mm512_loadu_ps(vj + 16);
    const __m512 v2 = _mm512_loadu_ps(vj + 32), v3 = _mm512_loadu_ps(vj + 48);
#define STEP(r)                                \
  {                                            \
    const __m512 x = _mm512_set1_ps(p[r][j]);  \
    c##r##0 = _mm512_fmadd_ps(x, v0, c##r##0); \
    c##r##1 = _mm512_fmadd_ps(x, v1, c##r##1); \
    c##r##2 = _mm512_fmadd_ps(x, v2, c##r##2); \
    c##r##3 = _mm512_fmadd_ps(x, v3, c##r##3); \
  }
    ROWS6(STEP)
#undef STEP
  }
#define STORE(r)                        \
  _mm512_storeu_ps(c[r], c##r##0);      \
  _mm512_storeu_ps(c[r] + 16, c##r##1); \
  _mm512_storeu_ps(c[r] + 32, c##r##2); \
  _mm512_storeu_ps(c[r] + 48, c##r##3);
  ROWS6(STORE)
#undef STORE
}

constexpr float kExp2Poly[] = {1.5252733804059841e-05f, 1.5403530393381609e-04f,
                               1.3333558146428443e-03f, 9.6181291076284772e-03f,
                               5.5504108664821580e-02f, 2.4022650695910071e-01f,
                               6.9314718055994531e-01f, 1.0f};

inline __m256 exp2_ps(__m256 x) {
  const __m256 lo = _mm256_set1_ps(-125.f);
  const __m256 xc = _mm256_min_ps(_mm256_set1_ps(127.f), _mm256_max_ps(lo, x));
  const __m256 n = _mm256_round_ps(xc, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 f = _mm256_sub_ps(xc, n);
  __m256 p = _mm256_set1_ps(kExp2Poly[0]);
  for (int c = 1; c < 8; ++c) p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kExp2Poly[c]));
  const __m256i e = _mm256_slli_epi32(_mm256_cvtps_epi32(n), 23);
  const __m256 r = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), e));
  return _mm256_andnot_ps(_mm256_cmp_ps(x, lo, _CMP_LT_OQ), r);
}

__attribute__((target("avx512f"))) inline __m512 exp2_ps512(__m512 x) {
  const __mmask16 all = 0xFFFF;
  const __m512 lo = _mm512_set1_ps(-125.f);
  const __m512 xc =
      _mm512_maskz_min_ps(all, _mm512_set1_ps(127.f), _mm512_maskz_max_ps(all, lo, x));
  const __m512 n =
      _mm512_maskz_roundscale_ps(all, xc, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(xc, n);
  __m512 p = _mm512_set1_ps(kExp2Poly[0]);
  for (int c = 1; c < 8; ++c) p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kExp2Poly[c]));
  const __m512i e = _mm512_maskz_slli_epi32(all, _mm512_maskz_cvtps_epi32(all, n), 23);
  const __m512 r = _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(p), e));
  return _mm512_maskz_mov_ps(~_mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ), r);
}

// exp2_ps512 with 2^n applied by vscalefps under the "x >= -125" mask (one instruction for the
// cvt, shift, integer add and masked move): p in [2^-1/2, 2^1/2] and n in [-125, 127], so
// p·2^n is a normal float and exact either way: the same values as exp2_ps512 and the AVX2
// exp2_ps (checked on all 2^32 inputs in main), so the ISA contract is untouched.
__attribute__((target("avx512f"))) inline __m512 exp2_ps512_sf(__m512 x) {
  const __mmask16 all = 0xFFFF;
  const __m512 lo = _mm512_set1_ps(-125.f);
  const __m512 xc =
      _mm512_maskz_min_ps(all, _mm512_set1_ps(127.f), _mm512_maskz_max_ps(all, lo, x));
  const __m512 n =
      _mm512_maskz_roundscale_ps(all, xc, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(xc, n);
  __m512 p = _mm512_set1_ps(kExp2Poly[0]);
  for (int c = 1; c < 8; ++c) p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kExp2Poly[c]));
  return _mm512_maskz_scalef_ps(~_mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ), p, n);
}
bool g_sf = false;  // exp2_shifted_avx512 and the fused epilogue use exp2_ps512_sf

inline float sum_even_odd(__m256 even, __m256 odd) {
  alignas(32) float buf[8];
  _mm256_store_ps(buf, _mm256_add_ps(even, odd));
  return ((buf[0] + buf[4]) + (buf[1] + buf[5])) + ((buf[2] + buf[6]) + (buf[3] + buf[7]));
}

__attribute__((target("avx512f"))) inline float sum16(__m512 sum) {
  alignas(64) float halves[16];
  _mm512_store_ps(halves, sum);
  return sum_even_odd(_mm256_load_ps(halves), _mm256_load_ps(halves + 8));
}

__attribute__((target("avx512f"))) float sum16_at(const float* v) {
  return sum16(_mm512_load_ps(v));
}

// n a multiple of 16 here (full tiles): the library's tails are not needed.
template <bool SF>
__attribute__((target("avx512f"))) float exp2_shifted_avx512_t(float* s, int64_t n, float m) {
  const __m512 m16 = _mm512_set1_ps(m);
  __m512 sum = _mm512_setzero_ps();
  for (int64_t j = 0; j + 16 <= n; j += 16) {
    const __m512 x = _mm512_sub_ps(_mm512_loadu_ps(s + j), m16);
    const __m512 p = SF ? exp2_ps512_sf(x) : exp2_ps512(x);
    _mm512_storeu_ps(s + j, p);
    sum = _mm512_add_ps(sum, p);
  }
  return sum16(sum);
}
float exp2_shifted_avx512(float* s, int64_t n, float m) {
  return g_sf ? exp2_shifted_avx512_t<true>(s, n, m) : exp2_shifted_avx512_t<false>(s, n, m);
}
float exp2_shifted_avx2(float* s, int64_t n, float m) {
  const __m256 m8 = _mm256_set1_ps(m);
  __m256 sum[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  for (int64_t j = 0; j + 8 <= n; j += 8) {
    const __m256 p = exp2_ps(_mm256_sub_ps(_mm256_loadu_ps(s + j), m8));
    _mm256_storeu_ps(s + j, p);
    sum[(j / 8) % 2] = _mm256_add_ps(sum[(j / 8) % 2], p);
  }
  return sum_even_odd(sum[0], sum[1]);
}

float row_max(const float* s, int64_t n) {  // the library's (8 lanes on both ISAs)
  __m256 m8 = _mm256_set1_ps(-INFINITY);
  for (int64_t j = 0; j + 8 <= n; j += 8) m8 = _mm256_max_ps(m8, _mm256_loadu_ps(s + j));
  alignas(32) float buf[8];
  _mm256_store_ps(buf, m8);
  float mx = -INFINITY;
  for (float x : buf) mx = std::max(mx, x);
  return mx;
}
// The same max with four independent chains: row_max is one chain of 32 dependent vmaxps
// (latency 4) per 256-key row, ~128 cycles against ~1024 for the row's two kernel steps. Max is
// exact, so the value is row_max's whatever the order (NaN aside: both may skip a NaN entry).
float row_max4(const float* s, int64_t n) {
  __m256 a = _mm256_set1_ps(-INFINITY), b = a, c = a, d = a;
  for (int64_t j = 0; j + 32 <= n; j += 32) {
    a = _mm256_max_ps(a, _mm256_loadu_ps(s + j));
    b = _mm256_max_ps(b, _mm256_loadu_ps(s + j + 8));
    c = _mm256_max_ps(c, _mm256_loadu_ps(s + j + 16));
    d = _mm256_max_ps(d, _mm256_loadu_ps(s + j + 24));
  }
  const __m256 m8 = _mm256_max_ps(_mm256_max_ps(a, b), _mm256_max_ps(c, d));
  alignas(32) float buf[8];
  _mm256_store_ps(buf, m8);
  float mx = -INFINITY;
  for (float x : buf) mx = std::max(mx, x);
  return mx;
}
bool has_nan(const float* s, int64_t n) {
  return std::any_of(s, s + n, [](float x) { return x != x; });
}
// Whether some s[j] > t (ordered: false for NaN) -- the lazy rule's test, the same on both ISAs.
bool any_greater(const float* s, int64_t n, float t) {
  const __m256 t8 = _mm256_set1_ps(t);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t j = 0; j + 8 <= n; j += 8)
    acc = _mm256_or_ps(acc, _mm256_cmp_ps(_mm256_loadu_ps(s + j), t8, _CMP_GT_OQ));
  return _mm256_movemask_ps(acc) != 0;
}

// ---- the forward, one (head, query tile) at a time ---------------------------------------------

enum class Var {
  base,
  base2,
  fmax,
  lazy,
  lazy2,
  fexp,
  flazy,
  kern,
  basefm,
  kernr,
  fexpsf,
  flazysf,
  basefmsf,
  lazysf
};
const char* name(Var v) {
  const char* n[] = {"base", "base2",  "fmax",  "lazy",   "lazy2",   "fexp",     "flazy",
                     "kern", "basefm", "kernr", "fexpsf", "flazysf", "basefmsf", "lazysf"};
  return n[int(v)];
}
bool is_avx2(Var v) {
  return v == Var::base2 || v == Var::lazy2;
}
bool is_lazy(Var v) {
  return v == Var::lazy || v == Var::lazy2 || v == Var::fexp || v == Var::flazy ||
         v == Var::fexpsf || v == Var::flazysf || v == Var::lazysf;
}

struct Work {
  alignas(64) float S[kBlockQ * ldS];
  alignas(64) float P[kBlockQ * ldS];
  alignas(64) float O[kBlockQ * D];
  alignas(64) float qt[kBlockQ * D];
  alignas(64) float vec[8 * 16];  // fused kernels' per-row vectors: max or sum
  float m[kBlockQ], l[kBlockQ];
  int64_t slow_rows = 0, rows = 0;  // fexp: rows of a key tile that took the exact path
};

// One row's online-softmax step on its scores s (n, in place -> P), as attend_rows does. With
// `lazy`, the max moves only when some score exceeds m + kTau. `mt`: the row's max when the
// caller has it (fmax), else NaN = compute. Returns false when the row adds nothing.
bool softmax_row(float* s, int64_t n, float& m, float& l, float* o, bool avx2, bool lazy,
                 float mt = NAN, bool max4 = false) {
  float m_new;
  if (lazy && m != kNegInf && !any_greater(s, n, m + kTau)) {
    m_new = m;  // no rescale: alpha = 1
  } else {
    m_new = std::max(m, mt == mt ? mt : max4 ? row_max4(s, n) : row_max(s, n));
    if (m_new == kNegInf) {
      if (!has_nan(s, n)) {
        std::fill(s, s + n, 0.f);
        return false;
      }
      m_new = NAN;
    }
  }
  const float alpha = m == kNegInf ? 0.f : float(std::exp2(m - m_new));
  l = l * alpha + (avx2 ? exp2_shifted_avx2(s, n, m_new) : exp2_shifted_avx512(s, n, m_new));
  m = m_new;
  if (alpha != 1.f)
    for (int64_t d = 0; d < D; ++d) o[d] *= alpha;
  return true;
}

// The fused S kernel: 8 query rows against all nk keys (row block outer, so the 8 rows' scores
// stay in L1 for their softmax), the 8 x 32 register block of abt_block8_avx512 per step.
// MODE 0 (fmax): the epilogue stores S and keeps each row's running max vector in w.vec.
// MODE 2 (flazy): the same, and records in `exceed` the rows with some score > mref[r] + kTau.
// MODE 1 (fexp): it stores P = 2^(S − mref[r]) to p rows, adds it to the row's sum
// vector in w.vec (the order of exp2_shifted_avx512: chunks of 16 in key order), and records
// in `exceed` the rows where some score > mref[r] + kTau (those are redone exactly).
template <int MODE, bool SF = false>
__attribute__((target("avx512f"))) void s_rows8_fused(const float* const* a, const float* panels,
                                                      int64_t nk, float alpha, float* const* s,
                                                      float* const* p, const float* mref,
                                                      float* vec, uint32_t& exceed) {
  const __m512 al = _mm512_set1_ps(alpha);
  for (int r = 0; r < 8; ++r)
    _mm512_store_ps(vec + 16 * r, MODE == 1 ? _mm512_setzero_ps() : _mm512_set1_ps(-INFINITY));
  uint32_t exc = 0;
  for (int64_t j0 = 0; j0 < nk; j0 += 32) {
    const float* b = panels + j0 * D;
#define DECL(r) __m512 c##r##0 = _mm512_setzero_ps(), c##r##1 = _mm512_setzero_ps();
    ROWS8(DECL)
#undef DECL
    for (int64_t d = 0; d < D; ++d) {
      const __m512 b0 = _mm512_loadu_ps(b + d * 16);
      const __m512 b1 = _mm512_loadu_ps(b + 16 * D + d * 16);
#define STEP(r)                                \
  {                                            \
    const __m512 x = _mm512_set1_ps(a[r][d]);  \
    c##r##0 = _mm512_fmadd_ps(x, b0, c##r##0); \
    c##r##1 = _mm512_fmadd_ps(x, b1, c##r##1); \
  }
      ROWS8(STEP)
#undef STEP
    }
#define EPI(r)                                                                                     \
  {                                                                                                \
    const __m512 x0 = _mm512_mul_ps(c##r##0, al), x1 = _mm512_mul_ps(c##r##1, al);                 \
    _mm512_storeu_ps(s[r] + j0, x0);                                                               \
    _mm512_storeu_ps(s[r] + j0 + 16, x1);                                                          \
    float* v = vec + 16 * r;                                                                       \
    if constexpr (MODE != 1) {                                                                     \
      _mm512_store_ps(                                                                             \
          v, _mm512_maskz_max_ps(0xFFFF, _mm512_load_ps(v), _mm512_maskz_max_ps(0xFFFF, x0, x1))); \
      if constexpr (MODE == 2) {                                                                   \
        const __m512 th = _mm512_set1_ps(mref[r] + kTau);                                          \
        if (_mm512_cmp_ps_mask(x0, th, _CMP_GT_OQ) | _mm512_cmp_ps_mask(x1, th, _CMP_GT_OQ))       \
          exc |= 1u << r;                                                                          \
      }                                                                                            \
    } else {                                                                                       \
      const __m512 mr = _mm512_set1_ps(mref[r]), th = _mm512_set1_ps(mref[r] + kTau);              \
      if (_mm512_cmp_ps_mask(x0, th, _CMP_GT_OQ) | _mm512_cmp_ps_mask(x1, th, _CMP_GT_OQ))         \
        exc |= 1u << r;                                                                            \
      const __m512 p0 =                                                                            \
          SF ? exp2_ps512_sf(_mm512_sub_ps(x0, mr)) : exp2_ps512(_mm512_sub_ps(x0, mr));           \
      const __m512 p1 =                                                                            \
          SF ? exp2_ps512_sf(_mm512_sub_ps(x1, mr)) : exp2_ps512(_mm512_sub_ps(x1, mr));           \
      _mm512_storeu_ps(p[r] + j0, p0);                                                             \
      _mm512_storeu_ps(p[r] + j0 + 16, p1);                                                        \
      _mm512_store_ps(v, _mm512_add_ps(_mm512_add_ps(_mm512_load_ps(v), p0), p1));                 \
    }                                                                                              \
  }
    ROWS8(EPI)
#undef EPI
  }
  exceed = exc;
}

__attribute__((target("avx512f"))) void exp2_both(const uint32_t* in, float* o1, float* o2) {
  const __m512 x = _mm512_castsi512_ps(_mm512_load_si512(in));
  _mm512_store_ps(o1, exp2_ps512(x));
  _mm512_store_ps(o2, exp2_ps512_sf(x));
}

__attribute__((target("avx512f"))) float hmax16(const float* v) {
  float mx = -INFINITY;
  for (int i = 0; i < 16; ++i) mx = std::max(mx, v[i]);
  return mx;
}

// out (T x D), lse (T) for one head: q (T x D), K as panels (T/16 of (D, 16)), V rows (T x D).
void forward(const float* q, const float* kpan, const float* vrows, int64_t T, float scale,
             float* out, float* lse, Var var, Work& w) {
  g_sf = var == Var::fexpsf || var == Var::flazysf || var == Var::basefmsf || var == Var::lazysf;
  if (var == Var::basefmsf) var = Var::basefm;
  if (var == Var::lazysf) var = Var::lazy;
  if (var == Var::fexpsf) var = Var::fexp;
  if (var == Var::flazysf) var = Var::flazy;
  const bool avx2 = is_avx2(var), lazy = is_lazy(var);
  const float alpha_s = float(scale * kLog2e);
  for (int64_t i0 = 0; i0 < T; i0 += kBlockQ) {
    const int64_t n = std::min(kBlockQ, T - i0);
    std::copy(q + i0 * D, q + (i0 + n) * D, w.qt);
    std::fill(w.O, w.O + n * D, 0.f);
    std::fill(w.m, w.m + n, kNegInf);
    std::fill(w.l, w.l + n, 0.f);
    for (int64_t j0 = 0; j0 < T; j0 += kBlockK) {
      const int64_t nk = std::min(kBlockK, T - j0);
      const float* panels = kpan + j0 * D;
      const float* vr = vrows + j0 * D;
      float* Pm = w.S;  // where P ends up
      if (var == Var::base || var == Var::lazy || var == Var::kern || var == Var::basefm || avx2) {
        if (!avx2) {
          for (int64_t c0 = 0; c0 < nk; c0 += 32)
            for (int64_t r = 0; r < n; r += 8) {
              const float* ar[8];
              float* sr[8];
              for (int x = 0; x < 8; ++x)
                ar[x] = w.qt + (r + x) * D, sr[x] = w.S + (r + x) * ldS + c0;
              abt_block8_avx512(ar, panels + c0 * D, alpha_s, sr);
            }
        } else {
          alignas(64) float sink[32];
          for (int64_t c0 = 0; c0 < nk; c0 += 16)
            for (int64_t r = 0; r < n; r += 6) {
              const float* ar[6];
              float* sr[6];
              for (int x = 0; x < 6; ++x) {
                ar[x] = r + x < n ? w.qt + (r + x) * D : w.qt;
                sr[x] = r + x < n ? w.S + (r + x) * ldS + c0 : sink;
              }
              abt_block6(ar, panels + c0 * D, alpha_s, sr);
            }
        }
        for (int64_t r = 0; r < n && var != Var::kern; ++r)
          softmax_row(w.S + r * ldS, nk, w.m[r], w.l[r], w.O + r * D, avx2, lazy, NAN,
                      var == Var::basefm);
      } else {
        if (var == Var::fexp) Pm = w.P;
        for (int64_t r0 = 0; r0 < n; r0 += 8) {
          const float* ar[8];
          float *sr[8], *pr[8];
          for (int x = 0; x < 8; ++x) {
            ar[x] = w.qt + (r0 + x) * D;
            sr[x] = w.S + (r0 + x) * ldS;
            pr[x] = w.P + (r0 + x) * ldS;
          }
          uint32_t exceed = 0;
          if (var == Var::kernr) {
            s_rows8_fused<0>(ar, panels, nk, alpha_s, sr, pr, w.m + r0, w.vec, exceed);
          } else if (var == Var::fmax) {
            s_rows8_fused<0>(ar, panels, nk, alpha_s, sr, pr, w.m + r0, w.vec, exceed);
            for (int x = 0; x < 8; ++x) {
              const int64_t r = r0 + x;
              softmax_row(sr[x], nk, w.m[r], w.l[r], w.O + r * D, false, false,
                          hmax16(w.vec + 16 * x));
            }
          } else if (var == Var::flazy) {
            s_rows8_fused<2>(ar, panels, nk, alpha_s, sr, pr, w.m + r0, w.vec, exceed);
            for (int x = 0; x < 8; ++x) {
              const int64_t r = r0 + x;
              ++w.rows;
              if (w.m[r] != kNegInf && !(exceed >> x & 1)) {
                w.l[r] = w.l[r] + exp2_shifted_avx512(sr[x], nk, w.m[r]);  // alpha = 1
              } else {
                ++w.slow_rows;
                softmax_row(sr[x], nk, w.m[r], w.l[r], w.O + r * D, false, false,
                            hmax16(w.vec + 16 * x));
              }
            }
          } else {
            if (g_sf)
              s_rows8_fused<1, true>(ar, panels, nk, alpha_s, sr, pr, w.m + r0, w.vec, exceed);
            else
              s_rows8_fused<1>(ar, panels, nk, alpha_s, sr, pr, w.m + r0, w.vec, exceed);
            for (int x = 0; x < 8; ++x) {
              const int64_t r = r0 + x;
              ++w.rows;
              if (w.m[r] != kNegInf && !(exceed >> x & 1)) {
                w.l[r] = w.l[r] + sum16_at(w.vec + 16 * x);  // alpha = 1
              } else {  // the exact step from the stored scores
                ++w.slow_rows;
                std::copy(sr[x], sr[x] + nk, pr[x]);
                softmax_row(pr[x], nk, w.m[r], w.l[r], w.O + r * D, false, true);
              }
            }
          }
        }
      }
      // O += P·V
      alignas(64) float sink[64];
      for (int64_t r = 0; r < n; r += 6) {
        const float* prow[6];
        float* crow[6];
        for (int x = 0; x < 6; ++x) {
          prow[x] = r + x < n ? Pm + (r + x) * ldS : Pm;
          crow[x] = r + x < n ? w.O + (r + x) * D : sink;
        }
        if (avx2) {
          for (int64_t d0 = 0; d0 < D; d0 += 16) {
            float* cr[6];
            for (int x = 0; x < 6; ++x) cr[x] = r + x < n ? crow[x] + d0 : sink;
            pv_block6(prow, vr + d0, nk, cr);
          }
        } else {
          pv_block6_avx512(prow, vr, nk, crow);
        }
      }
    }
    for (int64_t r = 0; r < n; ++r) {
      float* o = out + (i0 + r) * D;
      if (w.l[r] == 0.f) {
        std::fill(o, o + D, NAN);  // every row sees every key here: all -inf -> NaN
        lse[i0 + r] = NAN;
        continue;
      }
      const float inv = 1.f / w.l[r];
      for (int64_t d = 0; d < D; ++d) o[d] = w.O[r * D + d] * inv;
      lse[i0 + r] = float((double(w.m[r]) + std::log2(double(w.l[r]))) * kLn2);
    }
  }
}

// ---- FMA peak (bench_attention's loop: 12 chains of 16-lane FMAs) ------------------------------
#define CHAINS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
__attribute__((target("avx512f"), noinline)) float fma_chains(int64_t iters, float seed) {
#define DECL(i) __m512 a##i = _mm512_set1_ps(seed + float(i));
  CHAINS(DECL)
#undef DECL
  const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it) {
#define STEP(i) a##i = _mm512_fmadd_ps(a##i, m, c);
    CHAINS(STEP)
#undef STEP
  }
  float sum = 0;
  alignas(64) float buf[16];
#define SUM(i)                \
  _mm512_store_ps(buf, a##i); \
  for (float x : buf) sum += x;
  CHAINS(SUM)
#undef SUM
  return sum;
}

double cpu_now() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

// 64-byte aligned, as the library's Scratch buffers (the AVX2 S kernel uses aligned loads).
template <class T>
struct Aligned64 {
  using value_type = T;
  Aligned64() = default;
  template <class U>
  Aligned64(const Aligned64<U>&) {}
  T* allocate(size_t n) {
    return static_cast<T*>(std::aligned_alloc(64, (n * sizeof(T) + 63) / 64 * 64));
  }
  void deallocate(T* p, size_t) { std::free(p); }
  bool operator==(const Aligned64&) const { return true; }
  bool operator!=(const Aligned64&) const { return false; }
};
using Buf = std::vector<float, Aligned64<float>>;

struct Problem {
  int64_t T, H;
  Buf q, k, v, kpan, vrows;  // (H, T, D) each; kpan/vrows packed per head
  void pack() {
    kpan.assign(size_t(H * T * D), 0.f);
    vrows.assign(v.begin(), v.end());
    for (int64_t h = 0; h < H; ++h)
      for (int64_t j = 0; j < T; ++j)
        for (int64_t d = 0; d < D; ++d)
          kpan[size_t(h * T * D + (j / 16) * 16 * D + d * 16 + j % 16)] =
              k[size_t((h * T + j) * D + d)];
  }
  Problem(int64_t T_, int64_t H_, uint32_t seed, float qscale = 1.f, float kgrow = 0.f)
      : T(T_), H(H_) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd;
    q.resize(size_t(H * T * D));
    k = q;
    v = q;
    for (auto& x : q) x = qscale * nd(rng);
    for (int64_t i = 0; i < H * T; ++i)  // kgrow > 0: key norms grow along T (max keeps moving)
      for (int64_t d = 0; d < D; ++d)
        k[size_t(i * D + d)] = nd(rng) * (1.f + kgrow * float(i % T) / float(T));
    for (auto& x : v) x = nd(rng);
    pack();
  }
};

struct Result {
  std::vector<float> out, lse;
  int64_t slow = 0, rows = 0;
};
Result run(const Problem& p, Var var, Work& w) {
  Result res;
  res.out.assign(size_t(p.H * p.T * D), 0.f);
  res.lse.assign(size_t(p.H * p.T), 0.f);
  w.slow_rows = w.rows = 0;
  for (int64_t h = 0; h < p.H; ++h)
    forward(p.q.data() + h * p.T * D, p.kpan.data() + h * p.T * D, p.vrows.data() + h * p.T * D,
            p.T, 0.125f, res.out.data() + h * p.T * D, res.lse.data() + h * p.T, var, w);
  res.slow = w.slow_rows;
  res.rows = w.rows;
  return res;
}

bool same_bits(const Result& a, const Result& b) {
  return std::memcmp(a.out.data(), b.out.data(), a.out.size() * 4) == 0 &&
         std::memcmp(a.lse.data(), b.lse.data(), a.lse.size() * 4) == 0;
}
bool same_nan_pattern(const Result& a, const Result& b) {
  for (size_t i = 0; i < a.out.size(); ++i)
    if (std::isnan(a.out[i]) != std::isnan(b.out[i])) return false;
  for (size_t i = 0; i < a.lse.size(); ++i)
    if (std::isnan(a.lse[i]) != std::isnan(b.lse[i])) return false;
  return true;
}
int64_t count_nan(const Result& a) {
  return std::count_if(a.out.begin(), a.out.end(), [](float x) { return x != x; });
}

// Max |out - exact| / max|exact| over a sample of rows, exact in double.
double max_err(const Problem& p, const Result& r) {
  double err = 0, scale = 0;
  for (int64_t h = 0; h < p.H; ++h)
    for (int64_t i = 0; i < p.T; i += 97) {
      std::vector<double> s(size_t(p.T));
      double mx = -INFINITY;
      for (int64_t j = 0; j < p.T; ++j) {
        double acc = 0;
        for (int64_t d = 0; d < D; ++d)
          acc += double(p.q[size_t((h * p.T + i) * D + d)]) * p.k[size_t((h * p.T + j) * D + d)];
        s[size_t(j)] = acc * 0.125;
        mx = std::max(mx, s[size_t(j)]);
      }
      double l = 0;
      std::vector<double> o(D, 0.0);
      for (int64_t j = 0; j < p.T; ++j) {
        const double e = std::exp(s[size_t(j)] - mx);
        l += e;
        for (int64_t d = 0; d < D; ++d) o[size_t(d)] += e * p.v[size_t((h * p.T + j) * D + d)];
      }
      for (int64_t d = 0; d < D; ++d) {
        const double x = o[size_t(d)] / l;
        err = std::max(err, std::abs(x - double(r.out[size_t((h * p.T + i) * D + d)])));
        scale = std::max(scale, std::abs(x));
      }
    }
  return err / scale;
}

}  // namespace

int main(int argc, char** argv) {
  if (!__builtin_cpu_supports("avx512f")) {
    std::printf("needs avx512f\n");
    return 1;
  }
  const int64_t T = argc > 1 ? std::atoll(argv[1]) : 4096;
  const int64_t H = argc > 2 ? std::atoll(argv[2]) : 2;
  const int rounds = argc > 3 ? std::atoi(argv[3]) : 5;
  const Var vars[] = {Var::base,   Var::base2,   Var::fmax,     Var::lazy,
                      Var::lazy2,  Var::fexp,    Var::flazy,    Var::basefm,
                      Var::fexpsf, Var::flazysf, Var::basefmsf, Var::lazysf};
  static Work w;  // ~0.4 MB

  // ---- exp2_ps512_sf against exp2_ps512 on every f32 input ------------------------------------
  {
    uint64_t diff = 0, nan_diff = 0;
    for (uint64_t b = 0; b < (uint64_t(1) << 32); b += 16) {
      alignas(64) uint32_t in[16];
      alignas(64) float o1[16], o2[16];
      for (int i = 0; i < 16; ++i) in[i] = uint32_t(b + i);
      exp2_both(in, o1, o2);
      for (int i = 0; i < 16; ++i)
        if (std::memcmp(&o1[i], &o2[i], 4)) ++(o1[i] != o1[i] && o2[i] != o2[i] ? nan_diff : diff);
    }
    std::printf(
        "# exp2_ps512_sf vs exp2_ps512 over all 2^32 inputs: %llu differ (%llu more "
        "differ only in a NaN's bits)\n",
        (unsigned long long)diff, (unsigned long long)nan_diff);
  }

  // ---- correctness: bits, accuracy, NaN/inf ---------------------------------------------------
  std::printf("# checks\n");
  {
    struct Case {
      const char* what;
      Problem p;
    };
    std::vector<Case> cases;
    cases.push_back({"random T=1024", Problem(1024, 1, 1)});
    cases.push_back(
        {"large logits, growing keys (max moves often)", Problem(1024, 1, 2, 6.f, 8.f)});
    {
      Problem p(512, 1, 3);
      p.q[7 * D + 3] = NAN;
      p.pack();
      cases.push_back({"NaN in q row 7", p});
    }
    {
      Problem p(512, 1, 4);
      p.k[300 * D + 5] = INFINITY;
      p.pack();
      cases.push_back({"+inf in k key 300", p});
    }
    {
      Problem p(512, 1, 5);
      p.k[269 * D + 5] = -INFINITY;
      p.pack();
      cases.push_back({"-inf in k key 269", p});
    }
    {
      Problem p(512, 1, 6);
      p.k[0 * D + 2] = NAN;  // the first key tile: every row's first (exact) step
      p.k[400 * D + 2] = NAN;
      p.pack();
      cases.push_back({"NaN in k keys 0 and 400", p});
    }
    {
      Problem p(512, 1, 7);
      for (int64_t d = 0; d < D; ++d) p.q[9 * D + d] = (d % 2 ? 1.f : -1.f) * INFINITY;
      p.pack();
      cases.push_back({"+-inf in all of q row 9", p});
    }
    for (auto& c : cases) {
      std::vector<Result> r;
      for (Var v : vars) r.push_back(run(c.p, v, w));
      std::printf("%s:\n", c.what);
      std::printf(
          "  bits: base2==base %d  fmax==base %d  lazy2==lazy %d  fexp==lazy2 %d  "
          "flazy==lazy2 %d  basefm==base %d  fexpsf==lazy2 %d  flazysf==lazy2 %d  "
          "basefmsf==base %d  lazysf==lazy2 %d | lazy==base %d\n",
          same_bits(r[1], r[0]), same_bits(r[2], r[0]), same_bits(r[4], r[3]),
          same_bits(r[5], r[4]), same_bits(r[6], r[4]), same_bits(r[7], r[0]),
          same_bits(r[8], r[4]), same_bits(r[9], r[4]), same_bits(r[10], r[0]),
          same_bits(r[11], r[4]), same_bits(r[3], r[0]));
      std::printf("  NaN entries (out): ");
      for (size_t i = 0; i < r.size(); ++i)
        std::printf("%s %lld  ", name(vars[i]), (long long)count_nan(r[i]));
      bool pat = true;
      for (size_t i = 1; i < r.size(); ++i) pat = pat && same_nan_pattern(r[i], r[0]);
      std::printf("| same NaN positions as base: %d\n", pat);
      std::printf("  rows (x key tiles) on the exact path: fexp %lld, flazy %lld of %lld\n",
                  (long long)r[5].slow, (long long)r[6].slow, (long long)r[5].rows);
      if (count_nan(r[0]) == 0) {
        std::printf("  max error / max|out| vs f64: ");
        for (size_t i = 0; i < r.size(); ++i)
          std::printf("%s %.2e  ", name(vars[i]), max_err(c.p, r[i]));
        std::printf("\n");
      }
    }
  }

  // ---- speed ----------------------------------------------------------------------------------
  const Problem p(T, H, 11);
  const double flops = 4.0 * double(T) * double(T) * double(D) * double(H);
  std::printf(
      "# speed: T=%lld H=%lld D=%lld, one thread, %d rounds, GFLOP per CPU second "
      "(best, median)\n",
      (long long)T, (long long)H, (long long)D, rounds);
  const Var timed[] = {Var::base,   Var::fmax,    Var::lazy,     Var::fexp,   Var::flazy,
                       Var::base2,  Var::lazy2,   Var::kern,     Var::basefm, Var::kernr,
                       Var::fexpsf, Var::flazysf, Var::basefmsf, Var::lazysf};
  constexpr int kTimed = 14;
  std::vector<std::vector<double>> gf(kTimed);
  std::vector<double> peak;
  float sink = 0;
  for (int it = 0; it < rounds; ++it) {
    const double c0 = cpu_now();
    sink += fma_chains(20'000'000, float(it));
    peak.push_back(12.0 * 16 * 2 * 20e6 / (cpu_now() - c0) * 1e-9);
    for (int k = 0; k < kTimed; ++k) {  // a different variant first each round
      const int v = (k + it) % kTimed;
      const double t0 = cpu_now();
      Result r = run(p, timed[v], w);
      sink += r.out[0];
      gf[size_t(v)].push_back(flops / (cpu_now() - t0) * 1e-9);
    }
  }
  auto best = [](std::vector<double> x) { return *std::max_element(x.begin(), x.end()); };
  auto median = [](std::vector<double> x) {
    std::sort(x.begin(), x.end());
    return x[x.size() / 2];
  };
  const double pk = best(peak);
  std::printf("FMA peak (avx512, 1 thread): best %.1f median %.1f GFLOP/cpu-s\n", pk, median(peak));
  for (int v = 0; v < kTimed; ++v)
    std::printf("%-6s best %6.1f (%4.1f%% of peak)  median %6.1f  x%.3f of base (best)\n",
                name(timed[v]), best(gf[size_t(v)]), 100 * best(gf[size_t(v)]) / pk,
                median(gf[size_t(v)]), best(gf[size_t(v)]) / best(gf[0]));
  std::printf("(sink %g)\n", double(sink));
  return 0;
}
