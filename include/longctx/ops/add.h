// add: out = a + b elementwise, for residual streams and gradient accumulation.
//
// a, b, out: the same shape, contiguous, one dtype (CPU: f32/f64; CUDA: f32/bf16/f16, f32 math).
// out may be a or b (in place). Its backward is the identity to both inputs.
// Implemented with the other elementwise ops: src/cpu/elementwise.cpp, kernels/nn/elementwise.cu.
#pragma once

#include <string>

#include "longctx/context.h"

namespace longctx {

// "" when the backend of `device` runs add in `dtype`, else the reason.
std::string add_supports(Device device, DType dtype);

void add_fwd(const Context& ctx, const Tensor& out, const Tensor& a, const Tensor& b);

}  // namespace longctx
