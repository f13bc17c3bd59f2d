// exp and softplus over an array, in a form the compiler vectorizes.
//
// A scan's decays exp(delta * A) are one exp per state entry per step, and the scalar libm call
// is what bounds the CPU selective scan. For f32 this computes each exp in f64 arithmetic with
// branch-free code (range reduction by a power of two, a degree-10 Taylor polynomial, the power
// of two put into the exponent bits), which GCC turns into 4-wide AVX2 loops (8-wide on AVX-512
// CPUs, chosen at run time: exp_array.cpp, where the f32 functions are). The f64 result is
// within ~1e-12 relative of exp(x) before the one rounding to f32, so the f32 values are those of
// a correctly rounded expf except in rare ties: as accurate as libm's expf for the 2x rule.
// softplus (the scans' delta) is log(1 + exp(x)) the same way, with an f64 log. f64 arrays keep
// std::exp and std::log1p.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "src/core/activations.h"

namespace longctx::cpu {

inline void exp_array(double* y, const double* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::exp(x[i]);
}
inline void expm1_array(double* y, const double* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::expm1(x[i]);
}
inline void softplus_array(double* y, const double* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = softplus(x[i]);
}

// f32: y[i] = exp(x[i]), expm1(x[i]), softplus(x[i]) (x itself above kSoftplusThreshold) and
// s[i] = sigmoid(x[i]) (the gates of swiglu and sigmoid_gate; its exp in f32 arithmetic, within
// 2 ulp of the correctly rounded sigmoid, 0 below x = -87 and never subnormal). y or s may be x.
void exp_array(float* y, const float* x, int64_t n);
void expm1_array(float* y, const float* x, int64_t n);
void softplus_array(float* y, const float* x, int64_t n);
void sigmoid_array(float* s, const float* x, int64_t n);

// f64: std::exp, the same values as longctx::sigmoid (src/core/activations.h).
inline void sigmoid_array(double* s, const double* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) s[i] = 1.0 / (1.0 + std::exp(-x[i]));
}

// y[i] = silu(y[i]) = y[i] sigmoid(y[i]) in place, a chunk's sigmoids at a time into a scratch
// that stays in L1 (see elementwise.cpp's for_each_chunk). f64: the same values as longctx::silu.
template <class T>
void silu_array(T* y, int64_t n) {
  constexpr int64_t kChunk = 128;
  T s[kChunk];
  for (int64_t begin = 0; begin < n; begin += kChunk) {
    const int64_t m = std::min(kChunk, n - begin);
    sigmoid_array(s, y + begin, m);
    for (int64_t i = 0; i < m; ++i) y[begin + i] *= s[i];
  }
}

// g[i] = dy[i] · silu'(g[i]) in place, silu'(v) = sigmoid(v) (1 + v (1 - sigmoid(v))), with the
// sigmoids a chunk at a time as silu_array's (the causal conv's backward through its SiLU).
// f64: the same values as longctx::silu_grad.
template <class T>
void silu_grad_mul(T* g, const T* dy, int64_t n) {
  constexpr int64_t kChunk = 128;
  T s[kChunk];
  for (int64_t begin = 0; begin < n; begin += kChunk) {
    const int64_t m = std::min(kChunk, n - begin);
    T* gc = g + begin;
    sigmoid_array(s, gc, m);
    for (int64_t i = 0; i < m; ++i) gc[i] = dy[begin + i] * (s[i] * (T(1) + gc[i] * (T(1) - s[i])));
  }
}

}  // namespace longctx::cpu
