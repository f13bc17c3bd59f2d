// gated_delta_rule: the gated delta rule of Gated DeltaNet (one decay per head) and Kimi Delta
// Attention (KDA, one decay per key channel), fla's chunk_gated_delta_rule semantics, and its
// one-step decode gated_delta_rule_update.
//
// Per sequence and value head hv, reading q/k head h = hv / (HV / H), with S a K x V state
// starting from initial_state (zeros when not given), every token t in order:
//   q̂, k̂ = q_t, k_t, or with use_qk_l2norm x / sqrt(sum_K x² + 1e-6) over K
//   S ← diag(exp g_t) S                       g_t one value (Gated DeltaNet) or K values (KDA)
//   S ← S + k̂ (β_t (v_t − Sᵀ k̂))ᵀ
//   o_t = Sᵀ (scale · q̂)
// and final_state = S after the sequence's last token. That is S_t = α_t (I − β_t k̂ k̂ᵀ) S_{t−1}
// + β_t k̂ v_tᵀ with α_t = exp g_t (as a diagonal for KDA). g is a log decay, normally <= 0; q and
// k should be unit-length (use_qk_l2norm) or small enough that β |k|² <= 2, else the recurrence
// itself grows without bound.
//
// Layouts (contiguous):  q, k, dq, dk: (B, T, H, K)    v, out, dv, dout: (B, T, HV, V)
//                        g, dg: (B, T, HV) or (B, T, HV, K)    beta, dbeta: (B, T, HV)
//                        initial_state, final_state and their gradients: (B, HV, K, V)
// with HV % H == 0 (grouped value heads, as Qwen3-Next's). Dtypes: q, k, v, beta, out and their
// gradients share one dtype (CPU: f32/f64; CUDA: f32/bf16/f16); g, the states and their gradients
// are f32 (f64 when q is f64): the decays are summed over a chunk and must keep f32 precision.
//
// Packed variable-length batches: with cu_seqlens, i32 (N + 1) — 0 first, nondecreasing, T last —
// every (B, T, ...) tensor has B = 1 and holds N sequences back to back, sequence n at positions
// [cu_seqlens[n], cu_seqlens[n + 1]), each run from its own initial_state[n]; the states are
// (N, HV, K, V). A sequence's results are bitwise the same alone, in a rectangular batch or packed.
//
// Computation: in chunks of chunk_size tokens (the UT transform: inside a chunk a unit
// lower-triangular solve gives the delta values U, then the chunk's outputs and the state it
// leaves are matrix products), sequentially over the chunks of a sequence and in parallel over
// (sequence, value head). Every decay factor is the exponential of a sum of g over a segment
// that ends at a later token than it starts (on the CPU, KDA's per-channel ones as running
// products of such exponentials), so no exp() argument is positive for g <= 0 and decays near 0
// underflow instead of overflowing. The backward recomputes the chunk states from
// the inputs (nothing is saved by the forward) and sums in a fixed order: it is deterministic.
// Its workspace holds every chunk's entering state (K·V f32) and the chunk's U and
// V − (γ ⊙ K̂) S (2·V f32 per token): on the CPU for the (sequence, value head) each thread is on,
// on CUDA for all of them at once.
// Both backends run chunks of min(chunk_size, 2 K) tokens: a chunk forms its transition (a
// product of up to C factors I − β k̂ k̂ᵀ) before applying it, and chunks several times longer
// than K lose accuracy the token loop does not (at K = 1 with 64-token chunks the worst output's
// error reached 4.3x the 2x rule's tolerance, against at most 0.79 at chunks of 2 K; measured in
// src/ops/gated_delta_rule.cpp). So small key head dims run shorter chunks; K >= 32 runs
// chunk_size as given. Results depend on the chunk actually run, so are bitwise the same for
// chunk_size 64 and 128 when 2 K <= 64.
#pragma once

#include <cstdint>
#include <string>

#include "longctx/context.h"

namespace longctx {

struct GatedDeltaRuleParams {
  double scale = 0.0;          // multiplies q; 0 means 1/sqrt(K)
  bool use_qk_l2norm = false;  // L2-normalise q and k over K inside the op (eps 1e-6)
  int64_t chunk_size = 64;     // tokens per chunk, 1..256; the op runs min(chunk_size, 2 K)
};

// Optional inputs are left undefined (Tensor{}).
struct GatedDeltaRuleInputs {
  Tensor q, k, v, g, beta;           // required
  Tensor initial_state, cu_seqlens;  // optional
};

// Gradients, named d<input>; dinitial_state is required exactly when initial_state is given.
// Every gradient is overwritten.
struct GatedDeltaRuleGrads {
  Tensor dq, dk, dv, dg, dbeta;
  Tensor dinitial_state;
};

// "" when the backend of `device` runs gated_delta_rule (and its decode step) in `dtype` with
// key head dim K and value head dim V, else the reason, naming what is supported.
std::string gated_delta_rule_supports(Device device, DType dtype, int64_t K, int64_t V);

// final_state is optional (Tensor{}: not written).
void gated_delta_rule_fwd(const Context& ctx, const Tensor& out, const Tensor& final_state,
                          const GatedDeltaRuleInputs& in, const GatedDeltaRuleParams& params = {});

// Recomputes the forward from the inputs. dfinal_state is optional.
void gated_delta_rule_bwd(const Context& ctx, const GatedDeltaRuleGrads& grads, const Tensor& dout,
                          const Tensor& dfinal_state, const GatedDeltaRuleInputs& in,
                          const GatedDeltaRuleParams& params = {});

// One decode step for B sequences, updating `state` (B, HV, K, V) in place: q, k (B, H, K);
// v, out (B, HV, V); g (B, HV) or (B, HV, K); beta (B, HV); dtypes as above. Equal to
// gated_delta_rule_fwd run token by token with the state carried over (chunk_size is unused).
void gated_delta_rule_update(const Context& ctx, const Tensor& out, const Tensor& state,
                             const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g,
                             const Tensor& beta, const GatedDeltaRuleParams& params = {});

}  // namespace longctx
