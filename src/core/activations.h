// The scalar activations of the ops, written once for the CPU backend and the CUDA kernels
// (host and device), in the arithmetic type T (float or double).
//
//   sigmoid(s) = 1 / (1 + exp(-s))          silu(s) = s * sigmoid(s)
//   softplus(s) = log(1 + exp(s)), taken as s itself above kSoftplusThreshold
//
// The threshold is torch.nn.functional.softplus's (threshold 20), which mamba_ssm's kernels use
// too: above it log1p(exp(s)) equals s to within exp(-20) ≈ 2e-9 relative, below f32's half-ulp,
// and exp(s) would overflow f32 from s ≈ 88 on.
#pragma once

#include <cmath>

#include "longctx/ops/scan_operator.h"  // LONGCTX_HOST_DEVICE

namespace longctx {

constexpr double kSoftplusThreshold = 20.0;

template <class T>
LONGCTX_HOST_DEVICE T sigmoid(T s) {
  using std::exp;
  return T(1) / (T(1) + exp(-s));
}

template <class T>
LONGCTX_HOST_DEVICE T silu(T s) {
  return s * sigmoid(s);
}

// d silu(s) / ds = sigmoid(s) (1 + s (1 - sigmoid(s))).
template <class T>
LONGCTX_HOST_DEVICE T silu_grad(T s) {
  const T g = sigmoid(s);
  return g * (T(1) + s * (T(1) - g));
}

// d softplus(s) / ds = sigmoid(s); above the threshold the two sides differ by < exp(-20).
template <class T>
LONGCTX_HOST_DEVICE T softplus(T s) {
  using std::exp;
  using std::log1p;
  return s > T(kSoftplusThreshold) ? s : log1p(exp(s));
}

}  // namespace longctx
