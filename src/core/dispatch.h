// Dtype dispatch for host code: turns a runtime DType into a compile-time type.
//
//   dispatch_cpu_float("rmsnorm", x.dtype(), [&](auto tag) {
//     using T = typename decltype(tag)::type;  // float or double
//     ...
//   });
#pragma once

#include "longctx/dtype.h"
#include "longctx/error.h"

namespace longctx {

template <class T>
struct TypeTag {
  using type = T;
};

// The CPU backend computes in f32, and in f64 for tests and gradient checks.
template <class F>
decltype(auto) dispatch_cpu_float(const char* op, DType dtype, F&& f) {
  switch (dtype) {
    case DType::f32:
      return f(TypeTag<float>{});
    case DType::f64:
      return f(TypeTag<double>{});
    default:
      throw Error(
          detail::concat(op, ": the CPU backend supports f32 and f64, got ", dtype_name(dtype)));
  }
}

}  // namespace longctx
