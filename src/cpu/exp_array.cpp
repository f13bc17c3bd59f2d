// The f32 exp, expm1, softplus and sigmoid over arrays (see exp_array.h).
#include "src/cpu/exp_array.h"

#include <cstring>

#include "src/cpu/isa.h"

namespace longctx::cpu {

namespace {

// Without trapping math GCC may turn the clamps and selects below into vector blends; with it
// (the default) it keeps a branch per element and vectorizes nothing, and the scans stay bound by
// the scalar exp. No code here reads floating-point exception flags.
#pragma GCC push_options
#pragma GCC optimize("no-trapping-math")
// exp(v) for v in [-104, 88.8], in f64 arithmetic, branch-free: 2^k * exp(r), |r| <= ln2 / 2.
double exp_f64_core(double v) {
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
double log_f64_core(double w) {
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

// exp(v) for the f32 results: below -104 the f32 result is 0, above 88.8 inf, and clamping there
// keeps 2^k a normal double without changing any f32 result. (NaN stays NaN through the
// polynomial.)
double exp_f64_for_f32(double v) {
  v = v < -104.0 ? -104.0 : v;
  v = v > 88.8 ? 88.8 : v;
  return exp_f64_core(v);
}

// exp_array's element (f32).
float exp_f32_via_f64(float x) {
  return float(exp_f64_for_f32(double(x)));
}

// expm1(x) = exp(x) − 1 (f32), in f64: where |x| < 1/32 its series to x^6 / 720 (remainder below
// 2e-13 relative there), written as x (1 + x p) so that -0 stays -0; elsewhere exp(x) − 1, whose
// subtraction costs at most a factor 1 / (1 − e^(−1/32)) ≈ 33 of exp's 3e-13 relative error. Both
// far below f32's half ulp: the f32 value is the correctly rounded one except in rare ties. (The
// RG-LRU gate's sqrt(1 − a²) = sqrt(−expm1(2 log a)) as a → 1.)
float expm1_f32_via_f64(float x) {
  const double v = double(x);
  const double p = 0.5 + v * (1.0 / 6 + v * (1.0 / 24 + v * (1.0 / 120 + v * (1.0 / 720))));
  const double series = v * (1.0 + v * p);
  const double big = exp_f64_for_f32(v) - 1.0;
  return float(std::fabs(v) < 1.0 / 32 ? series : big);  // NaN: `big`, NaN
}

// softplus(x) = log(1 + exp(x)), as the scans use it: x itself above kSoftplusThreshold.
float softplus_f32_via_f64(float x) {
  const double v = double(x);
  constexpr double kMax = kSoftplusThreshold;
  const double e = exp_f64_core(v < -104.0 ? -104.0 : (v > kMax ? kMax : v));
  // Small e: log1p's series (error e^4 / 4), where 1 + e would lose e's low bits.
  const double sp = e < 1e-5 ? e * (1 - e * (0.5 - e * (1.0 / 3))) : log_f64_core(1.0 + e);
  const double out = v > kMax ? v : sp;
  return float(v != v ? v : out);  // NaN in, NaN out
}

// exp(v) for v in [-87, 87], in f32 arithmetic, branch-free: 2^k * exp(r) with k = round(v /
// ln 2), r = v - k ln 2 (ln 2 split in two so that k ln2_hi is exact), exp(r) by a degree-6
// polynomial (error ~1 ulp). On that range 2^k and the result are normal floats.
float exp_f32_core(float v) {
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

// sigmoid_array's element, 1 / (1 + exp(-x)) (the gates of swiglu and sigmoid_gate), with the exp
// in f32 arithmetic: 8 lanes per AVX2 vector instead of the f64 exp_array's 4.
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
float sigmoid_f32(float x) {
  float v = -x;  // NaN stays NaN through the clamps (comparisons with NaN are false)
  v = v < -87.0f ? -87.0f : v;
  v = v > 87.0f ? 87.0f : v;
  const float s = 1.0f / (1.0f + exp_f32_core(v));
  return x < -87.0f ? 0.0f : s;
}

// y[i] = F(x[i]) for the f32 elements above (y may be x), the loop the compiler vectorizes: built
// for x86-64-v3, 4 lanes of the f64 functions and 8 of sigmoid_f32 per AVX2 vector; on AVX-512
// CPUs (cpu_isa(), src/cpu/isa.h: AVX-512F and VL, the only extensions the target names) the same
// loop compiled for 512-bit vectors, 8 and 16 lanes. Each element goes through the same operations
// either way (no sum across lanes), so the results are bitwise the same on both ISAs: checked on
// all 2^32 floats for the four functions (bench/results/2026-12-06-cpu-exp-avx512/), and on a
// sweep of them by test_exp_array.cpp on any machine with AVX-512. Measured there (8192 elements
// in L1, one thread, best of 200 calls, five alternating rounds, the 2-core Emerald Rapids VM):
// exp 1.85-2.26x, expm1 1.84-2.02x, softplus 1.75-1.79x, sigmoid 1.36-1.89x faster; in the KDA
// forward (B = 1, T = 8192, H = 8, K = V = 128, one thread) the exp went from 9.7-9.9% to 6.1-6.2%
// of the library's perf samples (two runs each, alternating). Built with -O2 (RelWithDebInfo, the
// sanitizer build) GCC 12 vectorizes neither loop: there both run the same scalar code.
template <float (*F)(float)>
void map_f32(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = F(x[i]);
}
#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__) && defined(__GNUC__)
template <float (*F)(float)>
__attribute__((target("avx512f,avx512vl,prefer-vector-width=512"))) void map_f32_avx512(
    float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = F(x[i]);
}
#endif
#pragma GCC pop_options

template <float (*F)(float)>
void map_f32_dispatch(float* y, const float* x, int64_t n) {
#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__) && defined(__GNUC__)
  if (cpu_isa() == CpuIsa::avx512) return map_f32_avx512<F>(y, x, n);
#endif
  map_f32<F>(y, x, n);
}

}  // namespace

void exp_array(float* y, const float* x, int64_t n) {
  map_f32_dispatch<exp_f32_via_f64>(y, x, n);
}

void expm1_array(float* y, const float* x, int64_t n) {
  map_f32_dispatch<expm1_f32_via_f64>(y, x, n);
}

void softplus_array(float* y, const float* x, int64_t n) {
  map_f32_dispatch<softplus_f32_via_f64>(y, x, n);
}

void sigmoid_array(float* s, const float* x, int64_t n) {
  map_f32_dispatch<sigmoid_f32>(s, x, n);
}

}  // namespace longctx::cpu
