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

#include "longctx/ops/attention.h"
#include "src/core/dispatch.h"
#include "src/cpu/parallel.h"  // parallel_for: loops without BLAS calls

namespace longctx::cpu {
namespace {

constexpr double kLog2e = 1.4426950408889634074;
constexpr double kLn2 = 0.6931471805599453094;

// Tile sizes. Measured on the 2-core AMD EPYC (Zen 3, AVX2) dev machine, f32, B=1, T=4096,
// H=8, D=64, non-causal forward: see the table in the commit adding them.
constexpr int64_t kBlockQ = 64;
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
  const __m256 xc = _mm256_min_ps(_mm256_max_ps(x, lo), _mm256_set1_ps(127.f));
  const __m256 n = _mm256_round_ps(xc, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 f = _mm256_sub_ps(xc, n);
  __m256 p = _mm256_set1_ps(kExp2Poly[0]);
  for (int c = 1; c < 8; ++c) p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kExp2Poly[c]));
  const __m256i e = _mm256_slli_epi32(_mm256_cvtps_epi32(n), 23);
  const __m256 r = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), e));
  return _mm256_and_ps(r, _mm256_cmp_ps(x, lo, _CMP_GE_OQ));
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
  const float xc = std::min(std::max(x, -125.f), 127.f);
  const float n = std::nearbyint(xc);
  const float f = xc - n;
  float p = kExp2Poly[0];
  for (int c = 1; c < 8; ++c) p = p * f + kExp2Poly[c];
  const uint32_t bits = float_to_bits(p) + uint32_t(int32_t(n) * (1 << 23));
  return x < -125.f ? 0.f : bits_to_float(bits);
}

// max_j s[j] (-inf for an empty or fully masked row).
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

// ---- Masking --------------------------------------------------------------------------------

// The visible band, bottom-right aligned: query i sees key j iff lo(i) <= j < hi(i), with
//   lo(i) = i + Tk − Tq − left,  hi(i) = i + Tk − Tq + right + 1,  both clamped to [0, Tk].
// lo and hi never decrease with i, so the keys a query tile sees form one interval (each row's
// interval overlaps the next one's), and so do the queries that see a key tile.
struct Band {
  static constexpr int64_t kUnbounded = int64_t(1) << 40;  // a window side of -1
  int64_t Tq, Tk, left, right;

  Band(int64_t Tq_, int64_t Tk_, const AttentionParams& p) : Tq(Tq_), Tk(Tk_) {
    left = p.window_left < 0 ? kUnbounded : p.window_left;
    right = p.causal ? 0 : p.window_right < 0 ? kUnbounded : p.window_right;
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
  // Sets the invisible entries of row i (keys j0 .. j0 + nk) of a score tile to -inf.
  template <class T>
  void mask_row(T* s, int64_t i, int64_t j0, int64_t nk) const {
    const int64_t a = std::clamp(lo(i) - j0, int64_t(0), nk);
    const int64_t e = std::clamp(hi(i) - j0, a, nk);
    std::fill(s, s + a, -std::numeric_limits<T>::infinity());
    std::fill(s + e, s + nk, -std::numeric_limits<T>::infinity());
  }
};

// Scores in the log2 domain: s = log2e · softcap(scale · q·k).
template <class T>
struct Scores {
  T scale;    // softmax_scale, resolved
  T softcap;  // 0: off

  Scores(const AttentionParams& p, int64_t D)
      : scale(T(p.softmax_scale != 0.f ? double(p.softmax_scale) : 1.0 / std::sqrt(double(D)))),
        softcap(T(p.softcap)) {}

  // S (n x nk, leading dim ld) = log2e · softcap(scale · Q·Kᵀ). With softcap, `dcap` (same
  // layout) receives its derivative 1 − tanh² when given.
  void compute(const T* q, int64_t ldq, const T* k, int64_t ldk, int64_t D, int64_t n, int64_t nk,
               T* S, int64_t ld, T* dcap = nullptr) const {
    if (softcap == T(0)) {
      gemm(false, true, n, nk, D, T(scale * kLog2e), q, ldq, k, ldk, T(0), S, ld);
      return;
    }
    gemm(false, true, n, nk, D, scale, q, ldq, k, ldk, T(0), S, ld);
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
                 int64_t ke, T* out, int64_t ldo, T* lse) {
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
  const Scratch<T> work(kBlockQ * kBlockK + kBlockQ * D + 2 * kBlockQ);
  T* S = work.get();             // (kBlockQ, kBlockK) scores, then probabilities
  T* O = S + kBlockQ * kBlockK;  // (kBlockQ, D) unnormalised output
  T* m = O + kBlockQ * D;        // (kBlockQ) running max, log2 domain
  T* l = m + kBlockQ;            // (kBlockQ) running sum
  std::fill(O, O + n * D, T(0));
  std::fill(m, m + n, kNegInf);
  std::fill(l, l + n, T(0));

  const int64_t i1 = i0 + n;
  const int64_t k_begin = std::max(kb, band.lo(i0)), k_end = std::min(ke, band.hi(i1 - 1));
  for (int64_t j0 = k_begin; j0 < k_end; j0 += kBlockK) {
    const int64_t nk = std::min(kBlockK, k_end - j0);
    scores.compute(q + i0 * ldq, ldq, k + j0 * ldkv, ldkv, D, n, nk, S, kBlockK);
    const bool masked = !band.full(i0, i1, j0, j0 + nk);
    for (int64_t r = 0; r < n; ++r) {
      T* s = S + r * kBlockK;
      if (masked) band.mask_row(s, i0 + r, j0, nk);
      const T m_new = std::max(m[r], row_max(s, nk));
      if (m_new == kNegInf) {  // no visible key so far: nothing to add
        std::fill(s, s + nk, T(0));
        continue;
      }
      const T alpha = m[r] == kNegInf ? T(0) : T(std::exp2(m[r] - m_new));
      l[r] = l[r] * alpha + exp2_shifted(s, nk, m_new);
      m[r] = m_new;
      if (alpha != T(1)) {
        T* o = O + r * D;
        for (int64_t d = 0; d < D; ++d) o[d] *= alpha;
      }
    }
    gemm(false, false, n, D, nk, T(1), S, kBlockK, v + j0 * ldkv, ldkv, T(1), O, D);
  }

  for (int64_t r = 0; r < n; ++r) {
    T* o = out + (i0 + r) * ldo;
    if (l[r] == T(0)) {
      std::fill(o, o + D, T(0));
      lse[r] = kNegInf;
      continue;
    }
    const T inv = T(1) / l[r];
    for (int64_t d = 0; d < D; ++d) o[d] = O[r * D + d] * inv;
    lse[r] = T((double(m[r]) + std::log2(double(l[r]))) * kLn2);
  }
}

template <class T>
void fwd_impl(const Context& ctx, const Tensor& out, const Tensor& lse, const Tensor& q,
              const Tensor& k, const Tensor& v, const AttentionParams& params) {
  const int64_t B = q.size(0), Tq = q.size(1), H = q.size(2), D = q.size(3);
  const int64_t Tk = k.size(1), Hkv = k.size(2), group = H / Hkv;
  const Band band(Tq, Tk, params);
  const Scores<T> scores(params, D);
  const int64_t n_tiles = (Tq + kBlockQ - 1) / kBlockQ;
  const T* qp = q.data_as<T>();
  const T* kp = k.data_as<T>();
  const T* vp = v.data_as<T>();
  T* op = out.data_as<T>();
  T* lp = lse.data_as<T>();
  // Under a causal mask the last query tiles see the most keys; they go first.
  parallel_tiles(ctx, B * H * n_tiles, [&](int64_t item) {
    const int64_t tile = n_tiles - 1 - item % n_tiles, bh = item / n_tiles;
    const int64_t b = bh / H, h = bh % H, hk = h / group;
    const int64_t i0 = tile * kBlockQ, n = std::min(kBlockQ, Tq - i0);
    attend_rows(qp + (b * Tq * H + h) * D, H * D, kp + (b * Tk * Hkv + hk) * D,
                vp + (b * Tk * Hkv + hk) * D, Hkv * D, D, band, scores, i0, n, int64_t(0), Tk,
                op + (b * Tq * H + h) * D, H * D, lp + bh * Tq + i0);
  });
}

// ---- Backward -------------------------------------------------------------------------------

// One (query rows, key rows) tile of the backward: P from lse, then dS.
template <class T>
struct BwdTile {
  Scratch<T> buf;
  T *P, *dS, *dcap;  // (kBlockQ, kBlockK) each

  BwdTile() : buf(3 * kBlockQ * kBlockK) {
    P = buf.get();
    dS = P + kBlockQ * kBlockK;
    dcap = dS + kBlockQ * kBlockK;
  }

  // Rows [i0, i0 + n) of q/dout/lse/Di (pointers at row 0 of the head), keys [j0, j0 + nk).
  void compute(const T* q, const T* dout, int64_t ldq, const T* k, const T* v, int64_t ldkv,
               int64_t D, const T* lse, const T* Di, const Band& band, const Scores<T>& scores,
               int64_t i0, int64_t n, int64_t j0, int64_t nk) {
    constexpr int64_t ld = kBlockK;
    const bool capped = scores.softcap != T(0);
    scores.compute(q + i0 * ldq, ldq, k + j0 * ldkv, ldkv, D, n, nk, P, ld,
                   capped ? dcap : nullptr);
    const bool masked = !band.full(i0, i0 + n, j0, j0 + nk);
    for (int64_t r = 0; r < n; ++r) {
      T* p = P + r * ld;
      const T l2 = lse[i0 + r] * T(kLog2e);
      if (masked) band.mask_row(p, i0 + r, j0, nk);
      if (std::isinf(l2)) {  // a row that sees no key: P = 0 (lse = -inf)
        std::fill(p, p + nk, T(0));
        continue;
      }
      exp2_shifted(p, nk, l2);
    }
    // dS = dO·Vᵀ, then P∘(dS − Di)(∘ dcap).
    gemm(false, true, n, nk, D, T(1), dout + i0 * ldq, ldq, v + j0 * ldkv, ldkv, T(0), dS, ld);
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
    }
  }
};

template <class T>
void bwd_impl(const Context& ctx, const Tensor& dq, const Tensor& dk, const Tensor& dv,
              const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
              const Tensor& out, const Tensor& lse, const AttentionParams& params) {
  const int64_t B = q.size(0), Tq = q.size(1), H = q.size(2), D = q.size(3);
  const int64_t Tk = k.size(1), Hkv = k.size(2), group = H / Hkv;
  const Band band(Tq, Tk, params);
  const Scores<T> scores(params, D);
  const T* qp = q.data_as<T>();
  const T* kp = k.data_as<T>();
  const T* vp = v.data_as<T>();
  const T* op = out.data_as<T>();
  const T* dop = dout.data_as<T>();
  const T* lp = lse.data_as<T>();
  T* dqp = dq.data_as<T>();
  T* dkp = dk.data_as<T>();
  T* dvp = dv.data_as<T>();

  // Di = rowsum(dO ∘ O), laid out like lse: (B, H, Tq).
  std::vector<T> Di(size_t(B * H * Tq));
  parallel_for(ctx, B * H, [&](int64_t bh) {
    const int64_t b = bh / H, h = bh % H;
    for (int64_t i = 0; i < Tq; ++i) {
      const T* o = op + ((b * Tq + i) * H + h) * D;
      const T* d_o = dop + ((b * Tq + i) * H + h) * D;
      T sum = 0;
      for (int64_t d = 0; d < D; ++d) sum += o[d] * d_o[d];
      Di[size_t(bh * Tq + i)] = sum;
    }
  });

  // dK, dV: one owner per (batch, kv head, key tile), looping over the group's query heads.
  const int64_t k_tiles = (Tk + kBlockK - 1) / kBlockK;
  parallel_tiles(ctx, B * Hkv * k_tiles, [&](int64_t item) {
    const int64_t tile = item % k_tiles, bhk = item / k_tiles, b = bhk / Hkv, hk = bhk % Hkv;
    const int64_t j0 = tile * kBlockK, nk = std::min(kBlockK, Tk - j0);
    const T* kh = kp + (b * Tk * Hkv + hk) * D;
    const T* vh = vp + (b * Tk * Hkv + hk) * D;
    const Scratch<T> acc(2 * nk * D);
    T* dk_acc = acc.get();  // (nk, D)
    std::fill(dk_acc, dk_acc + 2 * nk * D, T(0));
    T* dv_acc = dk_acc + nk * D;  // (nk, D)
    BwdTile<T> t;
    const int64_t q_begin = band.first_query(j0), q_end = band.end_query(j0 + nk);
    for (int64_t h = hk * group; h < (hk + 1) * group; ++h) {
      const T* qh = qp + (b * Tq * H + h) * D;
      const T* doh = dop + (b * Tq * H + h) * D;
      const T* lh = lp + (b * H + h) * Tq;
      const T* dih = Di.data() + (b * H + h) * Tq;
      for (int64_t i0 = q_begin; i0 < q_end; i0 += kBlockQ) {
        const int64_t n = std::min(kBlockQ, q_end - i0);
        t.compute(qh, doh, H * D, kh, vh, Hkv * D, D, lh, dih, band, scores, i0, n, j0, nk);
        gemm(true, false, nk, D, n, T(1), t.P, kBlockK, doh + i0 * H * D, H * D, T(1), dv_acc, D);
        gemm(true, false, nk, D, n, scores.scale, t.dS, kBlockK, qh + i0 * H * D, H * D, T(1),
             dk_acc, D);
      }
    }
    for (int64_t j = 0; j < nk; ++j) {
      std::copy(dk_acc + j * D, dk_acc + (j + 1) * D, dkp + ((b * Tk + j0 + j) * Hkv + hk) * D);
      std::copy(dv_acc + j * D, dv_acc + (j + 1) * D, dvp + ((b * Tk + j0 + j) * Hkv + hk) * D);
    }
  });

  // dQ: one owner per (batch, head, query tile), recomputing P and dS.
  const int64_t q_tiles = (Tq + kBlockQ - 1) / kBlockQ;
  parallel_tiles(ctx, B * H * q_tiles, [&](int64_t item) {
    const int64_t tile = q_tiles - 1 - item % q_tiles, bh = item / q_tiles;
    const int64_t b = bh / H, h = bh % H, hk = h / group;
    const int64_t i0 = tile * kBlockQ, n = std::min(kBlockQ, Tq - i0);
    const T* qh = qp + (b * Tq * H + h) * D;
    const T* doh = dop + (b * Tq * H + h) * D;
    const T* kh = kp + (b * Tk * Hkv + hk) * D;
    const T* vh = vp + (b * Tk * Hkv + hk) * D;
    const Scratch<T> dq_scratch(n * D);
    T* dq_acc = dq_scratch.get();  // (n, D)
    std::fill(dq_acc, dq_acc + n * D, T(0));
    BwdTile<T> t;
    const int64_t k_begin = band.lo(i0), k_end = band.hi(i0 + n - 1);
    for (int64_t j0 = k_begin; j0 < k_end; j0 += kBlockK) {
      const int64_t nk = std::min(kBlockK, k_end - j0);
      t.compute(qh, doh, H * D, kh, vh, Hkv * D, D, lp + bh * Tq, Di.data() + bh * Tq, band, scores,
                i0, n, j0, nk);
      gemm(false, false, n, D, nk, scores.scale, t.dS, kBlockK, kh + j0 * Hkv * D, Hkv * D, T(1),
           dq_acc, D);
    }
    for (int64_t r = 0; r < n; ++r)
      std::copy(dq_acc + r * D, dq_acc + (r + 1) * D, dqp + ((b * Tq + i0 + r) * H + h) * D);
  });
}

// ---- Decode ---------------------------------------------------------------------------------

template <class T>
void decode_impl(const Context& ctx, const Tensor& out, const Tensor& lse, const Tensor& q,
                 const Tensor& k_cache, const Tensor& v_cache, const Tensor& cache_seqlens,
                 const Tensor& k_new, const Tensor& v_new, const AttentionParams& params,
                 int num_splits) {
  const int64_t B = q.size(0), Tq = q.size(1), H = q.size(2), D = q.size(3);
  const int64_t Tmax = k_cache.size(1), Hkv = k_cache.size(2), group = H / Hkv;
  const int32_t* lens = cache_seqlens.data_as<int32_t>();
  const T* qp = q.data_as<T>();
  T* kc = k_cache.data_as<T>();
  T* vc = v_cache.data_as<T>();
  T* op = out.data_as<T>();
  T* lp = lse.data_as<T>();
  const Scores<T> scores(params, D);

  // Append: (b, t) of k_new/v_new goes to cache row lens[b] + t.
  const bool append = k_new.defined();
  if (append) {
    const T* kn = k_new.data_as<T>();
    const T* vn = v_new.data_as<T>();
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
  parallel_tiles(ctx, B * H * splits, [&](int64_t item) {
    const int64_t s = item % splits, bh = item / splits, b = bh / H, h = bh % H, hk = h / group;
    const int64_t Tk = keys(b), len = (Tk + splits - 1) / splits;
    const int64_t kb = std::min(Tk, s * len), ke = std::min(Tk, kb + len);
    const Band band(Tq, Tk, params);
    T* po = part_o.data() + item * Tq * D;
    T* pl = part_lse.data() + item * Tq;
    for (int64_t i0 = 0; i0 < Tq; i0 += kBlockQ)
      attend_rows(qp + (b * Tq * H + h) * D, H * D, kc + (b * Tmax * Hkv + hk) * D,
                  vc + (b * Tmax * Hkv + hk) * D, Hkv * D, D, band, scores, i0,
                  std::min(kBlockQ, Tq - i0), kb, ke, po, D, pl + i0);
  });

  // Combine, in double: L = logsumexp_s lse_s, O = Σ_s e^(lse_s − L)·O_s.
  parallel_for(ctx, B * H * Tq, [&](int64_t row) {
    const int64_t i = row % Tq, bh = row / Tq, b = bh / H, h = bh % H;
    T* o = op + ((b * Tq + i) * H + h) * D;
    double L = -std::numeric_limits<double>::infinity();
    for (int64_t s = 0; s < splits; ++s)
      L = std::max(L, double(part_lse[size_t((bh * splits + s) * Tq + i)]));
    if (std::isinf(L)) {
      std::fill(o, o + D, T(0));
      lp[bh * Tq + i] = T(L);
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
  });
}

}  // namespace

void attention_fwd(const Context& ctx, const Tensor& out, const Tensor& lse, const Tensor& q,
                   const Tensor& k, const Tensor& v, const AttentionParams& params) {
  dispatch_cpu_float("attention_fwd", q.dtype(), [&](auto tag) {
    fwd_impl<typename decltype(tag)::type>(ctx, out, lse, q, k, v, params);
  });
}

void attention_bwd(const Context& ctx, const Tensor& dq, const Tensor& dk, const Tensor& dv,
                   const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                   const Tensor& out, const Tensor& lse, const AttentionParams& params) {
  dispatch_cpu_float("attention_bwd", q.dtype(), [&](auto tag) {
    bwd_impl<typename decltype(tag)::type>(ctx, dq, dk, dv, dout, q, k, v, out, lse, params);
  });
}

void attention_decode(const Context& ctx, const Tensor& out, const Tensor& lse, const Tensor& q,
                      const Tensor& k_cache, const Tensor& v_cache, const Tensor& cache_seqlens,
                      const Tensor& k_new, const Tensor& v_new, const AttentionParams& params,
                      int num_splits) {
  dispatch_cpu_float("attention_decode", q.dtype(), [&](auto tag) {
    decode_impl<typename decltype(tag)::type>(ctx, out, lse, q, k_cache, v_cache, cache_seqlens,
                                              k_new, v_new, params, num_splits);
  });
}

}  // namespace longctx::cpu
