// rmsnorm: y = x / sqrt(mean(x^2) + eps) * weight, over the last dimension.
//
// x, out, dout, dx: (..., C); weight, dweight: (C); rstd: (rows) = 1 / sqrt(mean(x^2) + eps),
// rows = numel / C, saved by the forward for the backward. rstd is f32 (f64 when x is f64).
// CPU: f32, f64. CUDA: f32, bf16, f16 (weight in the same dtype as x; f32 accumulation).
#pragma once

#include <string>

#include "longctx/context.h"

namespace longctx {

struct RMSNormParams {
  double eps = 1e-6;  // added to mean(x^2) before the square root
};

// "" when the backend of `device` runs rmsnorm in `dtype`, else the reason.
std::string rmsnorm_supports(Device device, DType dtype);

void rmsnorm_fwd(const Context& ctx, const Tensor& out, const Tensor& rstd, const Tensor& x,
                 const Tensor& weight, const RMSNormParams& params = {});

// dweight is overwritten (not accumulated into).
void rmsnorm_bwd(const Context& ctx, const Tensor& dx, const Tensor& dweight, const Tensor& dout,
                 const Tensor& x, const Tensor& weight, const Tensor& rstd,
                 const RMSNormParams& params = {});

}  // namespace longctx
