// adamw: one in-place AdamW step with decoupled weight decay, torch.optim.AdamW semantics:
//
//   g = grad * grad_scale
//   param = param * (1 - lr * weight_decay)
//   m = beta1 * m + (1 - beta1) * g
//   v = beta2 * v + (1 - beta2) * g^2
//   param = param - lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
//
// param, m, v, grad: the same shape, contiguous; elementwise, so one call may cover a whole flat
// parameter arena. grad_scale folds gradient clipping (or loss-scale removal) into the step.
// param_copy (optional, same shape, bf16 or f16): also receives the updated param, rounded, for
// mixed precision (f32 master weights, a 16-bit copy for the forward), in the same pass.
// CPU: param/m/v/grad f32 or f64. CUDA: f32 (the master weights; a 16-bit model uses param_copy).
// The hyperparameters are checked as the step's arithmetic holds them (f32 unless the tensors are
// f64): beta1, beta2 in [0, 1) and eps > 0 after rounding. The tensors' values are not checked
// (a pass of its own over them): v, a running mean of squares, must be >= 0, or sqrt(v) is NaN
// there (as in torch.optim.AdamW); the `train` driver refuses a checkpoint whose moments or
// parameters are not finite.
#pragma once

#include <cstdint>

#include <string>

#include "longctx/context.h"

namespace longctx {

struct AdamWParams {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;
  int64_t step = 1;         // 1 for the first update: the bias corrections use beta^step
  double grad_scale = 1.0;  // g = grad * grad_scale (e.g. min(1, max_norm / grad_norm))
};

// param, m and v are updated in place; grad is read; param_copy, when given, is overwritten.
// "" when the backend of `device` runs adamw_step with params (and m, v, grad) in `dtype`, else
// the reason (CUDA keeps f32 master weights).
std::string adamw_supports(Device device, DType dtype);

void adamw_step(const Context& ctx, const Tensor& param, const Tensor& m, const Tensor& v,
                const Tensor& grad, const AdamWParams& params, const Tensor& param_copy = {});

}  // namespace longctx
