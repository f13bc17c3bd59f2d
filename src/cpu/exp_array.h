// exp over an array, in a form the compiler vectorizes.
//
// A scan's decays exp(delta * A) are one exp per state entry per step, and the scalar libm call
// is what bounds the CPU selective scan. For f32 this computes each exp in f64 arithmetic with
// branch-free code (range reduction by a power of two, a degree-8 Taylor polynomial, the power
// of two put into the exponent bits), which GCC turns into 4-wide AVX2 loops. The f64 result is
// within ~1e-9 relative of exp(x) before the one rounding to f32, so the f32 values are those of
// a correctly rounded expf except in rare ties: as accurate as libm's expf for the 2x rule. f64
// arrays keep std::exp.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace longctx::cpu {

inline void exp_array(double* y, const double* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::exp(x[i]);
}

// Without trapping math GCC may turn the clamps below into vector selects; with it (the default)
// it keeps a branch per element and does not vectorize at all (measured: 4x slower). No code here
// reads floating-point exception flags.
#pragma GCC push_options
#pragma GCC optimize("no-trapping-math")
inline void exp_array(float* y, const float* x, int64_t n) {
  constexpr double kLog2e = 1.4426950408889634, kLn2 = 0.6931471805599453;
  constexpr double kRound = 0x1.8p52;  // adding it rounds to an integer held in the low bits
  for (int64_t i = 0; i < n; ++i) {
    // exp(v) = 2^k * exp(r), |r| <= ln2 / 2. Below -104 the f32 result is 0, above 88.8 inf:
    // clamping there keeps 2^k a normal double without changing any f32 result. (NaN stays
    // NaN through the polynomial.)
    double v = double(x[i]);
    v = v < -104.0 ? -104.0 : v;
    v = v > 88.8 ? 88.8 : v;
    const double shifted = v * kLog2e + kRound;
    const double k = shifted - kRound;
    const double r = v - k * kLn2;
    double p = 1.0 / 40320;  // the Taylor series to r^8: error < 3e-10 for |r| <= 0.35
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
    y[i] = float(p * scale);
  }
}
#pragma GCC pop_options

}  // namespace longctx::cpu
