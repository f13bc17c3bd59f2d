// rglru_gate: the gates of Griffin's Real-Gated Linear Recurrent Unit, turning the block's
// inputs into the (a, b) of the recurrence h_t = a_t * h_{t-1} + b_t (run by linear_scan):
//
//   r = sigmoid(gate_a),  i = sigmoid(gate_x),  log a = -8 * r * softplus(lambda),
//   a = exp(log a),  b = sqrt(1 - a^2) * i * x          (sqrt(1 - a^2) as sqrt(-expm1(2 log a)))
//
// x, gate_a, gate_x, a, b and their gradients: (..., D) contiguous, one shape and dtype;
// lambda, dlambda: (D). Backward from da and db gives dx, dgate_a, dgate_x and dlambda (summed
// over every row in a fixed order: deterministic). CPU: f32/f64; CUDA: f32/bf16/f16 storage,
// f32 math.
#pragma once

#include <string>

#include "longctx/context.h"

namespace longctx {

// "" when the backend of `device` runs rglru_gate in `dtype`, else the reason.
std::string rglru_gate_supports(Device device, DType dtype);

void rglru_gate_fwd(const Context& ctx, const Tensor& a, const Tensor& b, const Tensor& x,
                    const Tensor& gate_a, const Tensor& gate_x, const Tensor& lambda);
void rglru_gate_bwd(const Context& ctx, const Tensor& dx, const Tensor& dgate_a,
                    const Tensor& dgate_x, const Tensor& dlambda, const Tensor& da,
                    const Tensor& db, const Tensor& x, const Tensor& gate_a, const Tensor& gate_x,
                    const Tensor& lambda);

}  // namespace longctx
