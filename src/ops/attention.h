// attention's params: validated and resolved once by src/ops/attention.cpp (the softmax scale,
// the window with causal folded in, the deterministic mode), then the one argument (besides the
// context) of both backends' entry points for the forward, the backward and decoding. The
// contract is include/longctx/ops/attention.h.
#pragma once

#include "longctx/ops/attention.h"
#include "src/ops/varlen.h"

namespace longctx {

struct AttentionArgs {
  DType dtype = DType::f32;  // of q, k, v, out and the gradients; lse is stat_dtype(dtype)
  int64_t B = 0;             // batch (1 for a packed batch)
  int64_t Tq = 0, Tk = 0;    // query and key positions (decode: Tk = Tmax, the cache length)
  int64_t H = 0, Hkv = 0;    // query and kv heads, H % Hkv == 0: head h reads kv head h / (H/Hkv)
  int64_t D = 0;             // head dim
  double scale = 0;          // softmax scale, resolved (1/sqrt(D) by default)
  // The visible band, bottom-right aligned per sequence: query i sees key j iff
  // i + Tk - Tq - window_left <= j <= i + Tk - Tq + window_right; -1 = unbounded; causal is
  // window_right = 0, folded in here.
  int64_t window_left = -1, window_right = -1;
  double softcap = 0;          // 0 = off
  bool deterministic = false;  // backward without atomics: the params' flag or the context's
  // The sequences: B rectangular ones of Tq queries and Tk keys, or a packed batch's
  // (cu_seqlens_q, cu_seqlens_k: sequence n has its own queries and keys, Tq_n may differ from
  // Tk_n).
  Sequences seqs_q, seqs_k;

  const void* q = nullptr;     // (B, Tq, H, D)
  const void* k = nullptr;     // (B, Tk, Hkv, D); decode: k_cache, written by the append
  const void* v = nullptr;     // (B, Tk, Hkv, D); decode: v_cache, likewise
  void* out = nullptr;         // (B, Tq, H, D), forward and decode
  void* lse = nullptr;         // (B, H, Tq) natural log; written forward, read backward
  const void* dout = nullptr;  // (B, Tq, H, D), backward
  void *dq = nullptr, *dk = nullptr, *dv = nullptr;  // like q, k, v: backward, overwritten

  // Decode only: the cache lengths before the call (B) i32, the new keys appended at them first
  // (B, Tq, Hkv, D) or null, and the split count (0 picks).
  const int32_t* cache_seqlens = nullptr;
  const void* k_new = nullptr;
  const void* v_new = nullptr;
  int num_splits = 0;

  // Sequence s of a packed batch as a batch of one (q/out/dout/dq at its queries, k/v/dk/dv at
  // its keys; lse, laid out (1, H, Tq), is left to the caller: a sequence's rows are Tq apart).
  AttentionArgs sequence(int64_t s) const;
};

namespace cpu {
void attention_fwd(const Context& ctx, const AttentionArgs& args);
void attention_bwd(const Context& ctx, const AttentionArgs& args);
void attention_decode(const Context& ctx, const AttentionArgs& args);
}  // namespace cpu
namespace cuda {
void attention_fwd(const Context& ctx, const AttentionArgs& args);
void attention_bwd(const Context& ctx, const AttentionArgs& args);
void attention_decode(const Context& ctx, const AttentionArgs& args);
}  // namespace cuda

}  // namespace longctx
