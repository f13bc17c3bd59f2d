// rmsnorm: y = x / sqrt(mean(x^2) + eps) * weight, over the last dimension; and the same with
// the residual add before it fused in (add_rmsnorm_fwd/bwd below).
//
// x, out, dout, dx: (..., C); weight, dweight: (C); rstd: (rows) = 1 / sqrt(mean(x^2) + eps),
// rows = numel / C, saved by the forward for the backward. rstd is f32 (f64 when x is f64).
// out may be x and dx may be dout (in place); any other overlap of an output with an input or
// another output is an error.
// Rows of any finite scale: one whose sum of squares overflows the accumulator, or is too small
// to keep its bits (f32: rms above ~1.8e19 / sqrt(C) or below ~1.1e-19), is summed again scaled
// by a power of two; the backward works in x * rstd (down to an rstd of f32's smallest normal).
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

// The residual add fused into the norm that reads its sum (a pre-norm block's h + mixer(...)
// followed by the next block's norm; flash-attention's layer_norm with a residual, llm.c's
// fused residual + layernorm):
//   h = x + residual;  out = rmsnorm(h) * weight
// in one pass over each row. h is written (it is the next residual stream) and rstd is that of
// h. x, residual, h, out: (..., C). h may be x or residual (in place); out is separate memory.
void add_rmsnorm_fwd(const Context& ctx, const Tensor& out, const Tensor& h, const Tensor& rstd,
                     const Tensor& x, const Tensor& residual, const Tensor& weight,
                     const RMSNormParams& params = {});

// Its backward: dx = dh + (the rmsnorm backward of dout at h), the gradient of both x and
// residual (the add hands it to each), with dh the gradient that reaches h from its other
// reader (the residual stream). dx may be dh (in place); dweight is overwritten. rmsnorm_bwd
// with the residual gradient summed in the same pass, so it also serves a plain rmsnorm whose
// input is read elsewhere too.
void add_rmsnorm_bwd(const Context& ctx, const Tensor& dx, const Tensor& dweight,
                     const Tensor& dout, const Tensor& dh, const Tensor& h, const Tensor& weight,
                     const Tensor& rstd, const RMSNormParams& params = {});

}  // namespace longctx
