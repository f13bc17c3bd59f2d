// rmsnorm's params: validated and resolved once by src/ops/rmsnorm.cpp, then the one argument
// (besides the context) of both backends' entry points. The contract is
// include/longctx/ops/rmsnorm.h.
#pragma once

#include "longctx/ops/rmsnorm.h"

namespace longctx {

struct RMSNormArgs {
  DType dtype = DType::f32;  // of x, weight, out and the gradients
  int64_t rows = 0;          // x viewed as (rows, C): its leading dims flattened
  int64_t C = 0;             // the normalised (last) dimension
  double eps = 0;            // added to mean(x^2) before the square root (forward)

  // The forward normalises x, or with `residual` given (add_rmsnorm_fwd) h = x + residual,
  // which it writes to `h` first. The backward reads the normalised input (x or that h) as x.
  const void* x = nullptr;         // (rows, C)
  const void* residual = nullptr;  // (rows, C), forward, optional
  void* h = nullptr;               // (rows, C), forward, with residual; may be x or residual
  const void* weight = nullptr;    // (C)
  void* rstd = nullptr;  // (rows) stat_dtype(dtype): written by the forward, read by the backward
  void* out = nullptr;   // (rows, C), forward
  const void* dout = nullptr;  // (rows, C), backward
  const void* dh = nullptr;    // (rows, C), backward, optional: added to dx; may be dx
  void* dx = nullptr;          // (rows, C), backward
  void* dweight = nullptr;     // (C), backward, overwritten
};

namespace cpu {
void rmsnorm_fwd(const Context& ctx, const RMSNormArgs& args);
void rmsnorm_bwd(const Context& ctx, const RMSNormArgs& args);
}  // namespace cpu
namespace cuda {
void rmsnorm_fwd(const Context& ctx, const RMSNormArgs& args);
void rmsnorm_bwd(const Context& ctx, const RMSNormArgs& args);
}  // namespace cuda

}  // namespace longctx
