// The attention family on CUDA: the params structs shared by every kernel of the family, the
// masking rule, and the launchers that the per-head-dim files instantiate.
//
// Glossary: B batch, Tq queries, Tk keys, H query heads, Hkv kv heads, G = H / Hkv the group size,
// D head dim. Layouts (contiguous): q, out, dout, dq (B, Tq, H, D); k, v, dk, dv (B, Tk, Hkv, D);
// lse, dsum (B, H, Tq) f32 natural log.
//
// Masking (include/longctx/ops/attention.h), bottom-right aligned: query t sees key j iff
//   j < Tk  and  t + Tk - Tq - wl <= j (wl >= 0)  and  j <= t + Tk - Tq + wr (wr >= 0);
// a negative window side is unbounded. The host clamps a side that can never bind to -1, so the
// integer arithmetic below cannot overflow.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace longctx::cuda::attn {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Forward and decode. The rows of one kv head are packed: row r = t * G + g is query t of head
// hk * G + g, so all query heads of a GQA group share each K/V tile a block loads (for decode this
// reads the cache once per group). Grid: flat over (ceil(Tq * G / BlockM), Hkv, B * num_splits)
// (kernels/common/grid.h: B * num_splits passes gridDim.z's 65535 at B = 256, 256 splits).
struct FwdParams {
  const void* q;       // (B, Tq, H, D)
  const void* k;       // (B, Tk_alloc, Hkv, D)
  const void* v;       // (B, Tk_alloc, Hkv, D)
  void* out;           // (B, Tq, H, D), written when num_splits == 1
  float* lse;          // (B, H, Tq), natural log; written when num_splits == 1
  float* o_part;       // (num_splits, B, H, Tq, D) f32, normalised per split; num_splits > 1
  float* lse_part;     // (num_splits, B, H, Tq); -inf for a split that sees no key
  const int* seqlens;  // (B) or null: batch b has seqlens[b] + seqlen_add keys, else Tk
  int seqlen_add;
  int B, Tq, Tk, Tk_alloc, H, Hkv, G;
  int D;                          // head dim; a kernel compiled for head dim kD takes D <= kD
  float scale_log2;               // softmax_scale * log2(e)
  float softcap;                  // 0 = off
  float scale_softcap;            // softmax_scale / softcap (softcap on)
  float softcap_log2;             // softcap * log2(e) (softcap on)
  int window_left, window_right;  // -1 = unbounded
  int num_splits;                 // >= 1: the key range of each batch is cut into this many chunks
};

// Backward. Grid of the dK/dV kernel: flat over (ceil(Tk / BlockN), Hkv, B), the G query heads of
// a group looped inside the block; of the dQ kernel: flat over (ceil(Tq / BlockM), H, B).
struct BwdParams {
  const void* q;      // (B, Tq, H, D)
  const void* k;      // (B, Tk, Hkv, D)
  const void* v;      // (B, Tk, Hkv, D)
  const void* dout;   // (B, Tq, H, D)
  const float* lse;   // (B, H, Tq) natural log
  const float* dsum;  // (B, H, Tq): rowsum(dout * out), from the preprocess kernel
  void* dq;           // (B, Tq, H, D), written by the dQ kernel (deterministic mode)
  void* dk;           // (B, Tk, Hkv, D)
  void* dv;           // (B, Tk, Hkv, D)
  float* dq_accum;    // (B, Tq, H, D) f32 zeroed, atomics from the dK/dV kernel; null = no dQ there
  int B, Tq, Tk, H, Hkv, G;
  int D;                // head dim; a kernel compiled for head dim kD takes D <= kD
  float scale;          // softmax_scale
  float scale_log2;     // softmax_scale * log2(e)
  float softcap;        // 0 = off
  float scale_softcap;  // softmax_scale / softcap
  float softcap_log2;   // softcap * log2(e)
  int window_left, window_right;
};

// Keys [lo, hi) that some query in [t_first, t_last] may see (hi <= lo: none).
__host__ __device__ inline void visible_key_range(int t_first, int t_last, int Tq, int Tk, int wl,
                                                  int wr, int& lo, int& hi) {
  const int off = Tk - Tq;
  lo = wl < 0 ? 0 : max(0, t_first + off - wl);
  hi = wr < 0 ? Tk : min(Tk, t_last + off + wr + 1);
}

// Queries [lo, hi) that may see some key in [j_first, j_last] (hi <= lo: none).
__host__ __device__ inline void visible_query_range(int j_first, int j_last, int Tq, int Tk, int wl,
                                                    int wr, int& lo, int& hi) {
  const int off = Tk - Tq;
  lo = wr < 0 ? 0 : max(0, j_first - off - wr);
  hi = wl < 0 ? Tq : min(Tq, j_last - off + wl + 1);
}

__host__ __device__ inline bool key_visible(int t, int j, int Tq, int Tk, int wl, int wr) {
  const int diag = t + Tk - Tq;
  return j < Tk && (wl < 0 || j >= diag - wl) && (wr < 0 || j <= diag + wr);
}

// True when every query in [t_first, t_last] sees every key in [j_first, j_last] (all inside
// [0, Tk)): such a tile pair needs no element mask.
__host__ __device__ inline bool tile_fully_visible(int t_first, int t_last, int j_first, int j_last,
                                                   int Tq, int Tk, int wl, int wr) {
  const int off = Tk - Tq;
  return j_last < Tk && (wl < 0 || j_first >= t_last + off - wl) &&
         (wr < 0 || j_last <= t_first + off + wr);
}

// The end of a forward row: out = O * inv, lse (natural log), from the running max m (log2
// units) and sum l over the keys [split_lo, split_hi) of the split. As the float64 reference:
//   - a row that sees no key in the split: out 0, lse -inf (the combine skips such a split);
//   - l NaN (a NaN score, or +inf: 2^(inf - inf)): out and lse NaN;
//   - l == 0 although the row sees keys (every score -inf, from an inf in q or k): the
//     reference's exp(-inf - -inf) is NaN, so out and lse are NaN too (inv = 1/0: 0 * inf).
struct RowEnd {
  float inv, lse;
};
__device__ inline RowEnd row_end(int t, int Tq, int Tk, int wl, int wr, int split_lo, int split_hi,
                                 float m, float l) {
  int lo, hi;
  visible_key_range(t, t, Tq, Tk, wl, wr, lo, hi);
  if (min(hi, split_hi) <= max(lo, split_lo)) return {0.f, -INFINITY};
  if (l == 0.f) return {INFINITY, NAN};
  return {1.f / l, (m + log2f(l)) * kLn2};
}

// Launchers, explicitly instantiated for the head dims of head_dims.h: per head dim in
// flash_{fwd,bwd}_hdim*.cu (T is __nv_bfloat16 or __half), per bucket in
// attention_f32_hdim*.cu.
template <class T, int D>
void run_flash_fwd(const FwdParams& p, cudaStream_t stream);
template <class T, int D>
int flash_fwd_block_n();  // key tile of the forward (the split-count heuristic needs it)
template <class T, int D>
void run_flash_bwd(const BwdParams& p, bool deterministic, cudaStream_t stream);

// f32 path: plain FMA kernels, same params and semantics, compiled for head-dim bucket kD and
// running any p.D <= kD.
template <int kD>
int f32_fwd_block_n();
template <int kD>
void run_f32_fwd(const FwdParams& p, cudaStream_t stream);
template <int kD>
void run_f32_bwd(const BwdParams& p, cudaStream_t stream);

}  // namespace longctx::cuda::attn
