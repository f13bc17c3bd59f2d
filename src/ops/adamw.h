// adamw's params: validated and resolved once by src/ops/adamw.cpp (the bias corrections in
// double), then the one argument (besides the context) of both backends' entry points. The
// contract is include/longctx/ops/adamw.h.
#pragma once

#include "longctx/ops/adamw.h"

namespace longctx {

struct AdamWArgs {
  DType dtype = DType::f32;  // of param, m, v, grad (CPU f32/f64; CUDA f32)
  int64_t n = 0;             // elements of each
  // The update of element i, with g = grad[i] * grad_scale:
  //   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
  //   param = param * decay - step_size * m / (sqrt(v) * inv_sqrt_bc2 + eps)
  double decay = 1;         // 1 - lr * weight_decay
  double step_size = 0;     // lr / (1 - beta1^step): lr with the first moment's bias correction
  double inv_sqrt_bc2 = 1;  // 1 / sqrt(1 - beta2^step): the second moment's
  double beta1 = 0, beta2 = 0, eps = 0, grad_scale = 1;
  // 1 - beta1 and 1 - beta2 formed in double, as the bias corrections are (torch passes them the
  // same way): in f32, 1 - float(beta) is not 1 - beta near 1, and the moments disagreed with
  // their corrections (a first step's update 6.7e-6 off at beta2 = 0.999, 6.8e-4 at 0.99999).
  double one_minus_beta1 = 1, one_minus_beta2 = 1;

  void* param = nullptr;           // (n), updated in place
  void* m = nullptr;               // (n), updated in place
  void* v = nullptr;               // (n), updated in place
  const void* grad = nullptr;      // (n)
  void* param_copy = nullptr;      // (n) optional 16-bit copy of the updated param, written
  DType copy_dtype = DType::bf16;  // of param_copy: bf16 or f16
};

namespace cpu {
void adamw_step(const Context& ctx, const AdamWArgs& args);
}
namespace cuda {
void adamw_step(const Context& ctx, const AdamWArgs& args);
}

}  // namespace longctx
