// Validation helpers shared by the recurrent ops (linear_scan, selective_scan, ssd,
// causal_conv1d): the dtype of their f32 parameter/state tensors, optional inputs with their
// gradients, and the dispatch used while an op's CUDA kernels are not in this build.
#pragma once

#include "src/ops/backend.h"

namespace longctx {

// Recurrent parameters and states are f32 on every backend (f64 when the main input is f64).
inline DType param_dtype(DType x) {
  return x == DType::f64 ? DType::f64 : DType::f32;
}

// An optional input and its gradient come together: `grad` is required exactly when `input` is
// given.
inline void check_optional_grad(const char* op, const char* input_name, const Tensor& input,
                                const char* grad_name, const Tensor& grad) {
  LONGCTX_CHECK(input.defined() == grad.defined(), op, ": argument '", grad_name, "' is ",
                input.defined() ? "required because '" : "given but '", input_name,
                input.defined() ? "' was given" : "' was not; pass both or neither");
}

// Checks an optional tensor only when it is given.
template <class F>
void if_given(const Tensor& t, F&& check) {
  if (t.defined()) check();
}

[[noreturn]] inline void throw_cuda_kernel_missing(const char* op) {
  throw Error(detail::concat(op,
                             ": the CUDA kernel for this op is not in this build of longctx yet; "
                             "run it on a CPU context"));
}

}  // namespace longctx

// Like LONGCTX_DISPATCH, for an op whose CUDA kernels have not landed: the CUDA branch throws.
// Replace with LONGCTX_DISPATCH when kernels/scan provides longctx::cuda::fn.
#define LONGCTX_DISPATCH_CPU_ONLY(ctx, fn, ...)              \
  ((ctx).device().is_cpu() ? ::longctx::cpu::fn(__VA_ARGS__) \
                           : ::longctx::throw_cuda_kernel_missing(#fn))
