// gdn_gate: the log decay g of Gated DeltaNet (Qwen3-Next, fla's fused_gdn_gating) and of Kimi
// Delta Attention (fla's fused_kda_gate), from the layer's gate projection a:
//
//   g[..., c] = -exp(A_log[c / Kg]) * softplus(a[..., c] + dt_bias[c])
//
// with the channels c of a grouped into HV heads of Kg each: Kg = 1 for Gated DeltaNet (one
// decay per head), Kg = K for KDA (one per key channel). g <= 0 always, the gated_delta_rule's
// log decay. Backward from dg gives da, and dA_log and ddt_bias summed over every row in a fixed
// order (deterministic).
//
// Layouts: a, g, da, dg: (..., D) contiguous, D = HV * Kg;  dt_bias, ddt_bias: (D);
//          A_log, dA_log: (HV), with D % HV == 0. One dtype for all (CPU: f32/f64; CUDA:
//          f32/bf16/f16 storage, f32 math).
#pragma once

#include <string>

#include "longctx/context.h"

namespace longctx {

// "" when the backend of `device` runs gdn_gate in `dtype`, else the reason.
std::string gdn_gate_supports(Device device, DType dtype);

void gdn_gate_fwd(const Context& ctx, const Tensor& g, const Tensor& a, const Tensor& A_log,
                  const Tensor& dt_bias);
// Every gradient is overwritten.
void gdn_gate_bwd(const Context& ctx, const Tensor& da, const Tensor& dA_log,
                  const Tensor& ddt_bias, const Tensor& dg, const Tensor& a, const Tensor& A_log,
                  const Tensor& dt_bias);

}  // namespace longctx
