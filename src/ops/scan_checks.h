// Validation helpers shared by the recurrent ops (linear_scan, selective_scan, ssd,
// causal_conv1d): optional inputs with their gradients.
#pragma once

#include "src/ops/backend.h"

namespace longctx {

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

}  // namespace longctx
