// Small elementwise ops that layers need around the big kernels.
//
// neg_exp: out = -exp(x), the map from Mamba's learned A_log to its (negative) decay rate A;
// backward: dx = dout * out.
// sigmoid: out = 1 / (1 + exp(-x)) (the delta rule's write strength beta); backward:
// dx = dout * out * (1 - out).
// sigmoid_gate: out = sigmoid(gate) * up, the output gate of gated attention (Qwen3-Next) and of
// KDA's output norm (Kimi Linear); backward: dgate = dout * up * s (1 - s) with s = sigmoid(gate),
// dup = dout * s.
// All tensors contiguous, one shape and dtype (CPU: f32/f64; CUDA: f32/bf16/f16, f32 math);
// an output may be exactly one of the inputs (out = x, dx = dout, dgate = gate, ...); dgate and
// dup must be separate.
#pragma once

#include <string>

#include "longctx/context.h"

namespace longctx {

// "" when the backend of `device` runs neg_exp in `dtype`, else the reason.
std::string neg_exp_supports(Device device, DType dtype);

void neg_exp_fwd(const Context& ctx, const Tensor& out, const Tensor& x);
void neg_exp_bwd(const Context& ctx, const Tensor& dx, const Tensor& dout, const Tensor& out);

// "" when the backend of `device` runs sigmoid and sigmoid_gate in `dtype`, else the reason.
std::string sigmoid_supports(Device device, DType dtype);
void sigmoid_fwd(const Context& ctx, const Tensor& out, const Tensor& x);
void sigmoid_bwd(const Context& ctx, const Tensor& dx, const Tensor& dout, const Tensor& out);
void sigmoid_gate_fwd(const Context& ctx, const Tensor& out, const Tensor& gate, const Tensor& up);
// dgate and dup are overwritten.
void sigmoid_gate_bwd(const Context& ctx, const Tensor& dgate, const Tensor& dup,
                      const Tensor& dout, const Tensor& gate, const Tensor& up);

}  // namespace longctx
