// Small elementwise ops that layers need around the big kernels.
//
// neg_exp: out = -exp(x), the map from Mamba's learned A_log to its (negative) decay rate A;
// backward: dx = dout * out.
// All tensors contiguous, one shape and dtype (CPU: f32/f64; CUDA: f32/bf16/f16, f32 math);
// out may be x, dx may be dout.
#pragma once

#include <string>

#include "longctx/context.h"

namespace longctx {

// "" when the backend of `device` runs neg_exp in `dtype`, else the reason.
std::string neg_exp_supports(Device device, DType dtype);

void neg_exp_fwd(const Context& ctx, const Tensor& out, const Tensor& x);
void neg_exp_bwd(const Context& ctx, const Tensor& dx, const Tensor& dout, const Tensor& out);

}  // namespace longctx
