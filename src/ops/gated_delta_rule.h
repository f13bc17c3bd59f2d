// gated_delta_rule's params: validated once by src/ops/gated_delta_rule.cpp, then the one argument
// (besides the context) of both backends' entry points, for the chunked forward, its backward and
// the decode step. The contract is include/longctx/ops/gated_delta_rule.h.
#pragma once

#include "longctx/ops/gated_delta_rule.h"
#include "src/ops/varlen.h"

namespace longctx {

// The l2norm of use_qk_l2norm: x / sqrt(sum x² + kL2NormEps), as fla's l2norm.
constexpr double kL2NormEps = 1e-6;

struct GatedDeltaRuleArgs {
  DType dtype = DType::f32;  // of q, k, v, beta, out and their gradients
  // g, the states and their gradients are stat_dtype(dtype): f32, f64 for f64.
  int64_t B = 0, T = 0;       // q: (B, T, H, K); B = 1 when packed; T = 1 for the decode step
  int64_t H = 0, HV = 0;      // q/k heads and value heads, HV % H == 0
  int64_t K = 0, V = 0;       // key and value head dims: the state is K x V
  bool channel_gate = false;  // g is (.., HV, K) (KDA), else (.., HV) (Gated DeltaNet)
  double scale = 0;           // resolved: never 0 (1/sqrt(K) when the params said 0)
  bool l2norm = false;        // normalise q and k over K (eps kL2NormEps)
  int64_t chunk_size = 64;    // tokens per chunk: min(params' chunk_size, 2 K), both backends
  Sequences seqs;             // the N sequences (N = B when rectangular); one per batch row when
                              // decoding

  int64_t gate_dim() const { return channel_gate ? K : 1; }

  // The decode step has no T dimension: its q is (B, H, K), indexed as (B, 1, H, K) here.
  const void* q = nullptr;              // (B, T, H, K)
  const void* k = nullptr;              // (B, T, H, K)
  const void* v = nullptr;              // (B, T, HV, V)
  const void* g = nullptr;              // (B, T, HV, gate_dim()), stat dtype
  const void* beta = nullptr;           // (B, T, HV)
  const void* initial_state = nullptr;  // (N, HV, K, V) optional; zeros when absent
  void* out = nullptr;                  // (B, T, HV, V): forward and decode step
  void* final_state = nullptr;          // (N, HV, K, V) forward, optional
  void* state = nullptr;                // (B, HV, K, V) decode step, updated in place
  const void* dout = nullptr;           // (B, T, HV, V), backward
  const void* dfinal_state = nullptr;   // (N, HV, K, V), backward, optional
  void* dq = nullptr;                   // (B, T, H, K), backward
  void* dk = nullptr;                   // (B, T, H, K), backward
  void* dv = nullptr;                   // (B, T, HV, V), backward
  void* dg = nullptr;                   // (B, T, HV, gate_dim()), backward, stat dtype
  void* dbeta = nullptr;                // (B, T, HV), backward
  void* dinitial_state = nullptr;       // (N, HV, K, V), backward, exactly when initial_state is
};

namespace cpu {
void gated_delta_rule_fwd(const Context& ctx, const GatedDeltaRuleArgs& args);
void gated_delta_rule_bwd(const Context& ctx, const GatedDeltaRuleArgs& args);
void gated_delta_rule_update(const Context& ctx, const GatedDeltaRuleArgs& args);
}  // namespace cpu
namespace cuda {
void gated_delta_rule_fwd(const Context& ctx, const GatedDeltaRuleArgs& args);
void gated_delta_rule_bwd(const Context& ctx, const GatedDeltaRuleArgs& args);
void gated_delta_rule_update(const Context& ctx, const GatedDeltaRuleArgs& args);
}  // namespace cuda

}  // namespace longctx
