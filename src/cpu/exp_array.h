// exp and softplus over an array, in a form the compiler vectorizes.
//
// A scan's decays exp(delta * A) are one exp per state entry per step, and the scalar libm call
// is what bounds the CPU selective scan. For f32 this computes each exp in f64 arithmetic with
// branch-free code (range reduction by a power of two, a degree-10 Taylor polynomial, the power
// of two put into the exponent bits), which GCC turns into 4-wide AVX2 loops. The f64 result is
// within ~1e-12 relative of exp(x) before the one rounding to f32, so the f32 values are those of
// a correctly rounded expf except in rare ties: as accurate as libm's expf for the 2x rule.
// softplus (the scans' delta) is log(1 + exp(x)) the same way, with an f64 log. f64 arrays keep
// std::exp and std::log1p.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "src/core/activations.h"

namespace longctx::cpu {

inline void exp_array(double* y, const double* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::exp(x[i]);
}
inline void softplus_array(double* y, const double* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = softplus(x[i]);
}

// Without trapping math GCC may turn the clamps and selects below into vector blends; with it
// (the default) it keeps a branch per element and vectorizes nothing, and the scans stay bound by
// the scalar exp. No code here reads floating-point exception flags.
#pragma GCC push_options
#pragma GCC optimize("no-trapping-math")
// exp(v) for v in [-104, 88.8], in f64 arithmetic, branch-free: 2^k * exp(r), |r| <= ln2 / 2.
inline double exp_f64_core(double v) {
  constexpr double kLog2e = 1.4426950408889634, kLn2 = 0.6931471805599453;
  constexpr double kRound = 0x1.8p52;  // adding it rounds to an integer held in the low bits
  const double shifted = v * kLog2e + kRound;
  const double k = shifted - kRound;
  const double r = v - k * kLn2;
  double p = 1.0 / 3628800;  // the Taylor series to r^10: error < 3e-13 for |r| <= 0.35
  p = p * r + 1.0 / 362880;
  p = p * r + 1.0 / 40320;
  p = p * r + 1.0 / 5040;
  p = p * r + 1.0 / 720;
  p = p * r + 1.0 / 120;
  p = p * r + 1.0 / 24;
  p = p * r + 1.0 / 6;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  // 2^k from the integer in the low bits of `shifted`: (k + 1023) << 52 is its bit pattern.
  uint64_t bits;  // unsigned: the shift pushes bits out of the top, defined only unsigned
  std::memcpy(&bits, &shifted, sizeof bits);
  bits = (bits + 1023) << 52;
  double scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// log(w) for a finite w >= 1, branch-free: w = m * 2^e with m in [sqrt(1/2), sqrt(2)), and
// log(m) = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.172, by its series to s^15 (error < 1e-14).
inline double log_f64_core(double w) {
  uint64_t bits;
  std::memcpy(&bits, &w, sizeof bits);
  const uint64_t biased = bits >> 52;  // w > 0: no sign bit
  uint64_t mbits = (bits & ((uint64_t(1) << 52) - 1)) | (uint64_t(1023) << 52);
  double m;
  std::memcpy(&m, &mbits, sizeof m);  // in [1, 2)
  // The exponent as a double without an int64 -> f64 conversion (AVX2 has none).
  uint64_t ebits = (uint64_t(0x433) << 52) | biased;
  double e;
  std::memcpy(&e, &ebits, sizeof e);
  e -= 0x1.0p52 + 1023;
  const bool high = m > 1.4142135623730951;
  m = high ? 0.5 * m : m;
  e = high ? e + 1 : e;
  const double s = (m - 1) / (m + 1), z = s * s;
  double q = 1.0 / 15;
  q = q * z + 1.0 / 13;
  q = q * z + 1.0 / 11;
  q = q * z + 1.0 / 9;
  q = q * z + 1.0 / 7;
  q = q * z + 1.0 / 5;
  q = q * z + 1.0 / 3;
  q = q * z + 1.0;
  return e * 0.6931471805599453 + 2 * s * q;
}

inline void exp_array(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    // Below -104 the f32 result is 0, above 88.8 inf: clamping there keeps 2^k a normal double
    // without changing any f32 result. (NaN stays NaN through the polynomial.)
    double v = double(x[i]);
    v = v < -104.0 ? -104.0 : v;
    v = v > 88.8 ? 88.8 : v;
    y[i] = float(exp_f64_core(v));
  }
}

// softplus(x) = log(1 + exp(x)), as the scans use it: x itself above kSoftplusThreshold.
inline void softplus_array(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double v = double(x[i]);
    constexpr double kMax = kSoftplusThreshold;
    const double e = exp_f64_core(v < -104.0 ? -104.0 : (v > kMax ? kMax : v));
    // Small e: log1p's series (error e^4 / 4), where 1 + e would lose e's low bits.
    const double sp = e < 1e-5 ? e * (1 - e * (0.5 - e * (1.0 / 3))) : log_f64_core(1.0 + e);
    const double out = v > kMax ? v : sp;
    y[i] = float(v != v ? v : out);  // NaN in, NaN out
  }
}
// exp(v) for v in [-87, 87], in f32 arithmetic, branch-free: 2^k * exp(r) with k = round(v /
// ln 2), r = v - k ln 2 (ln 2 split in two so that k ln2_hi is exact), exp(r) by a degree-6
// polynomial (error ~1 ulp). On that range 2^k and the result are normal floats.
inline float exp_f32_core(float v) {
  constexpr float kRound = 0x1.8p23f;  // adding it rounds to an integer held in the low bits
  const float shifted = v * 1.44269504f + kRound;
  const float k = shifted - kRound;
  const float r = (v - k * 0.693145751953125f) - k * 1.428606765330187e-06f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  uint32_t bits;  // (k + 127) << 23 is the bit pattern of 2^k
  std::memcpy(&bits, &shifted, sizeof bits);
  bits = (bits + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// s[i] = sigmoid(x[i]) = 1 / (1 + exp(-x[i])), the gates of swiglu and sigmoid_gate (s may be x).
//
// f32: the exp in f32 arithmetic, 8 lanes per AVX2 vector instead of the f64 exp_array's 4.
// Within 2 ulp of the correctly rounded sigmoid (test_exp_array.cpp). Below x = -87, where the
// true value is subnormal or 0, the result is 0 (an absolute error < 1.7e-38).
//
// No subnormal float arises on any lane, whatever x: a subnormal operand or result costs a
// microcode assist of ~100+ cycles per instruction unless the caller runs with FTZ/DAZ, which a
// library cannot set. That is why the f32 exp prototype of the prefill profile
// (bench/results/2026-12-05-cpu-prefill-profile) was 10-14 ms without FTZ/DAZ and 0.9 ms with:
// its clamp `v > 88 ? 88 : v` sat in the same loop as `g / (1 + exp(v)) * u`, and GCC, turning
// the clamp into a blend, computed the clamped branch `g / (1 + exp(88))` on every lane, about
// 6e-39 * g: subnormal for every |g| < 2. Here the clamp feeds only constants (exp(87), 0) and
// the callers multiply by s in a separate loop. bench/results/2026-12-05-cpu-elementwise,
// swiglu_probe.cpp (FTZ toggled in one binary, swiglu over 4096 x 384, one thread, CPU time,
// load ~17): that prototype 9.1 ms without FTZ/DAZ, 1.7 with; swiglu by this function 1.73 ms
// without, 1.72 with (and 3.36 ms by the f64 exp_array before).
inline void sigmoid_array(float* s, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float xi = x[i];
    float v = -xi;  // NaN stays NaN through the clamps (comparisons with NaN are false)
    v = v < -87.0f ? -87.0f : v;
    v = v > 87.0f ? 87.0f : v;
    const float si = 1.0f / (1.0f + exp_f32_core(v));
    s[i] = xi < -87.0f ? 0.0f : si;
  }
}
#pragma GCC pop_options

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
