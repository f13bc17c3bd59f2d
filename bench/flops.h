// The training-FLOP estimate of the scaling benchmark (`longctx bench scaling`'s TFLOP/s column),
// in a header of its own so that a test can check it against an independent count.
#pragma once

#include <algorithm>
#include <cstdint>

#include "longctx/model/config.h"

namespace longctx::bench {

// The delta rule's chunk products ('G', 'K' layers), training FLOPs per token of one layer: what
// the chunked algorithm does (src/cpu/gated_delta_rule.cpp), per value head and chunk of C
// tokens, in multiply-adds, a triangular product counted on its triangle:
//   forward   [P; M] = [K̂; Q̂] K̂ᵀ                        C²K
//             V − (γ ⊙ K̂) S and (scale γ ⊙ Q̂) S            2 CKV
//             the unit lower-triangular solve for U          C²V / 2
//             O += M U                                       C²V / 2
//             S ← diag(γ) S + (ρ ⊙ K̂)ᵀ U                     CKV
//   backward, pass 1 recomputes P, V − (γ ⊙ K̂) S, the solve and S:
//                                               C (C − 1) K / 2 + 2 CKV + C (C − 1) V / 2
//   pass 2    [P; M] again                                   C²K
//             dU = Mᵀ dO + (ρ ⊙ K̂) dS                        C²V / 2 + CKV
//             d(ρ ⊙ K̂) = U dSᵀ                               CKV
//             the transposed solve                           C²V / 2
//             [dM; dA] = [dO; dR] Uᵀ                         C²V
//             [dv; dO] S₀ᵀ                                   2 CKV
//             dS₀ += [−γ ⊙ K̂; scale γ ⊙ Q̂]ᵀ [dv; dO]         2 CKV
//             dq̂ = scale (dM ⊙ E) K̂                          C²K / 2
//             dk̂ = (dP + dPᵀ) K̂ + scale (dM ⊙ E)ᵀ Q̂          3 C²K / 2
// (P and the solve's matrix strictly lower, M lower with the diagonal: C (C − 1) / 2 and
// C (C + 1) / 2 entries, so that P and M together are C²K, the solve and O += M U C²V.) In all
// 11 CKV + (4.5 C² − C / 2) K + (3.5 C² − C / 2) V multiply-adds, 2 FLOPs each, on every one of the
// ⌈T / C⌉ chunks of a sequence (each is computed at its full length C). Per token that is about 22
// KV + C (9 K + 7 V) FLOPs per value head when C divides T: 55k at K = V = 32, C = 64 (the gdn
// preset), 442k per layer of 8 value heads: 51% on top of the rest of the gdn preset's count (574k
// parameters, 5.2 MFLOP per token in all), 16-19% for qwen3next, 9-11% for kimi (T = 1k-4k). KDA's
// per-channel decays make P, M and their gradients loops over the channels with one more multiply
// per pair and channel: counted as Gated DeltaNet's. The decays' exponentials, the elementwise work
// and O(KV) sums per chunk are left out, as the scans' are.
inline double delta_rule_train_flops_per_token(const DeltaNetConfig& d, int64_t T) {
  const double K = double(d.head_k_dim), V = double(d.head_v_dim), C = double(d.chunk_size);
  const double chunks = double((T + d.chunk_size - 1) / d.chunk_size);
  const double macs_per_chunk =
      11 * C * K * V + (4.5 * C * C - 0.5 * C) * K + (3.5 * C * C - 0.5 * C) * V;
  return 2 * macs_per_chunk * chunks * double(d.n_v_heads) / double(T);
}

// Training FLOPs per token of a model with `parameter_count` parameters at sequence length T, the
// usual estimate: 6 per weight used in a matrix product (forward 2, backward 4; the LM head
// counts whether tied or not, the embedding lookup does not), plus the attention scores and
// values, 6 * H * D per visible key per token (causal: T / 2 keys on average; a sliding layer sees
// at most `window`), plus the delta rule's chunk products (above). The scans, convs and norms are
// left out: a few percent at these widths. `c` validated (deltanet.n_v_heads filled in).
inline double train_flops_per_token(const ModelConfig& c, int64_t parameter_count, int64_t T) {
  const double table = double(c.vocab_size * c.d_model);  // the embedding (and an untied head)
  double flops = 6.0 * (double(parameter_count) - table * (c.tie_embeddings ? 1 : 2));
  flops += 6.0 * table;  // the head's product
  const double hd = double(c.attention.n_heads * c.head_dim());
  flops += 6.0 * hd * double(c.count(LayerKind::attention)) * double(T) / 2;
  flops += 6.0 * hd * double(c.count(LayerKind::sliding_attention)) *
           double(std::min(T, c.attention.window));
  flops += delta_rule_train_flops_per_token(c.deltanet, T) *
           double(c.count(LayerKind::gated_deltanet) + c.count(LayerKind::kda));
  return flops;
}

}  // namespace longctx::bench
