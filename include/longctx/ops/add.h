// add: out = a + b elementwise, for residual streams and gradient accumulation.
//
// a, b, out: the same shape, contiguous, one dtype (CPU: f32/f64; CUDA: f32/bf16/f16, f32 math).
// out may be a or b (in place). Its backward is the identity to both inputs.
#pragma once

#include "longctx/context.h"

namespace longctx {

void add_fwd(const Context& ctx, const Tensor& out, const Tensor& a, const Tensor& b);

}  // namespace longctx
