// attention: flash attention (flash_attn_func semantics) and KV-cache decoding
// (flash_attn_with_kvcache semantics).
//
// Layouts (contiguous):  q, out, dout, dq: (B, Tq, H, D)   k, v, dk, dv: (B, Tk, Hkv, D)
//                        lse: (B, H, Tq) f32 (f64 when q is f64), natural log
// H % Hkv == 0: query head h reads kv head h / (H / Hkv) (MHA, GQA, MQA).
//
// Masking, bottom-right aligned as in flash-attention: query i may see key j iff
//   i + Tk - Tq - window_left <= j <= i + Tk - Tq + window_right
// with a window side of -1 meaning unbounded; causal = (window_right = 0). A query row with no
// visible key gives out = 0 and lse = -inf.
// softcap > 0 replaces each score s (after scaling) by softcap * tanh(s / softcap).
//
// NaN and inf propagate as in a float64 softmax: a NaN in q, or in a key or value that a query
// sees, makes that query's outputs NaN (a +inf score too: exp(inf - inf)); a query whose visible
// scores are all -inf gets NaN (exp(-inf - -inf)); the gradients follow. On CUDA the products run
// over tiles, so a non-finite k, v, q or dout entry that carries zero weight for a query inside
// the query's tile (a masked key, a -inf score) adds 0 * inf = NaN there, where a per-element sum
// would skip it: NaN may then reach outputs whose exact value is finite, never the reverse.
//
// Accuracy at large scores: the backward, as flash-attention's, recomputes the probabilities from
// the stored lse and takes rowsum(dout * out) for the softmax's correction, and the forward scales
// the scores once by scale * log2 e. Where scores reach 1e3-1e4 (f32 probes, 2026-12-07,
// bench/results/2026-12-07-cpu-extreme-inputs/), dq, dk and dv reached 2-90x the error of a
// softmax formed explicitly in f32 and out up to 3x; in rows the softmax saturates, dq and dk are
// of order u |dout| |v| |k| scale (u = 2^-24) where the exact value is ~0. At the scores of the
// tests (of order 1) every result meets the 2x rule. f64 keeps large scores accurate.
// CPU: f32, f64, any head dim. CUDA: f32, bf16, f16 storage, f32 accumulation; f32 any head dim
// up to 256, bf16 and f16 the tensor-core head dims 32, 64, 96, 128, 256 (attention_supports()).
// On a CUDA context with bf16 matmul precision (context.h), f32 attention_fwd/bwd with a
// tensor-core head dim round q, k, v (and dout, out) to bf16 and run the tensor-core kernels;
// other head dims run the f32 kernels there too.
// Memory: O(B·T·H·D); no Tq x Tk matrix is ever materialised.
#pragma once

#include <string>

#include "longctx/context.h"

namespace longctx {

struct AttentionParams {
  float softmax_scale = 0.f;  // 0 means 1/sqrt(D)
  bool causal = false;
  int window_left = -1;        // keys visible to the left of the aligned diagonal; -1 = unbounded
  int window_right = -1;       // to the right; -1 = unbounded (causal forces 0)
  float softcap = 0.f;         // 0 = off
  bool deterministic = false;  // backward: no atomics, bitwise repeatable (also on a context in
                               // deterministic mode, Context::set_deterministic)
};

// "" when (device, dtype, head_dim) is supported, else the reason, naming what is supported.
// Dispatch and the tests use this same table.
std::string attention_supports(Device device, DType dtype, int64_t head_dim);

// Packed variable-length batches (flash_attn_varlen_func): with cu_seqlens_q and cu_seqlens_k,
// i32 (N + 1) each (0 first, nondecreasing, Tq and Tk last), q, out, dq are (1, Tq, H, D) and k,
// v, dk, dv (1, Tk, Hkv, D) holding N sequences back to back, lse (1, H, Tq); sequence n's
// queries [cu_seqlens_q[n], cu_seqlens_q[n + 1]) see only its keys [cu_seqlens_k[n],
// cu_seqlens_k[n + 1]), masked as above with that sequence's own Tq and Tk. A sequence's results
// are bitwise the same alone or packed (on CUDA, its backward in deterministic mode).
void attention_fwd(const Context& ctx, const Tensor& out, const Tensor& lse, const Tensor& q,
                   const Tensor& k, const Tensor& v, const AttentionParams& params = {},
                   const Tensor& cu_seqlens_q = {}, const Tensor& cu_seqlens_k = {});

// Recomputes the probabilities from lse; dq, dk, dv are overwritten.
void attention_bwd(const Context& ctx, const Tensor& dq, const Tensor& dk, const Tensor& dv,
                   const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                   const Tensor& out, const Tensor& lse, const AttentionParams& params = {},
                   const Tensor& cu_seqlens_q = {}, const Tensor& cu_seqlens_k = {});

// Decoding against a KV cache. q: (B, Tq, H, D) with Tq new tokens (1..a few);
// k_cache, v_cache: (B, Tmax, Hkv, D); cache_seqlens: (B) i32, the valid length of each cache
// before this call. When k_new/v_new (B, Tq, Hkv, D) are given they are written into the cache
// at [cache_seqlens[b], cache_seqlens[b] + Tq) first (requires that end <= Tmax), and attention
// runs over the cache_seqlens[b] + Tq keys; otherwise over cache_seqlens[b] keys. Masking as
// above with Tk the per-batch key count. cache_seqlens is not modified.
// The cache is split along its length (flash-decoding); num_splits = 0 picks a count.
// out: (B, Tq, H, D); lse: (B, H, Tq).
void attention_decode(const Context& ctx, const Tensor& out, const Tensor& lse, const Tensor& q,
                      const Tensor& k_cache, const Tensor& v_cache, const Tensor& cache_seqlens,
                      const Tensor& k_new = {}, const Tensor& v_new = {},
                      const AttentionParams& params = {}, int num_splits = 0);

}  // namespace longctx
