// swiglu: the gated activation of the LLaMA MLP, out = silu(gate) * up, elementwise, with
// silu(g) = g * sigmoid(g). (The MLP is down(swiglu(x @ W_gate^T, x @ W_up^T)).)
//
//   dgate = dout * up * sigmoid(g) * (1 + g * (1 - sigmoid(g))),   dup = dout * silu(g)
//
// gate, up, out, dout, dgate, dup: the same shape (..., C), contiguous, one dtype.
// An output may be exactly one of the inputs (in place: out = gate, dgate = dout, ...); any other
// overlap is an error, and dgate and dup must be separate. CPU: f32, f64. CUDA: f32, bf16, f16
// (f32 math).
// Implemented with the other elementwise ops: src/cpu/elementwise.cpp, kernels/nn/elementwise.cu.
#pragma once

#include <string>

#include "longctx/context.h"

namespace longctx {

// "" when the backend of `device` runs swiglu in `dtype`, else the reason.
std::string swiglu_supports(Device device, DType dtype);

void swiglu_fwd(const Context& ctx, const Tensor& out, const Tensor& gate, const Tensor& up);

// dgate and dup are overwritten.
void swiglu_bwd(const Context& ctx, const Tensor& dgate, const Tensor& dup, const Tensor& dout,
                const Tensor& gate, const Tensor& up);

}  // namespace longctx
