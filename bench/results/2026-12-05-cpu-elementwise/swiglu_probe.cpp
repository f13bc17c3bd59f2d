// Probe: swiglu_fwd's loop over 4096 x 384 f32 (the llama preset's prefill shape) in blocks of
// 16384 elements as src/cpu/elementwise.cpp runs them, one thread, thread CPU time, A/B
// alternating in one binary:
//   f64exp/16384  before: the block's sigmoids by exp_array (f64 arithmetic, 4 lanes) into a
//                 16384-element scratch, then the product
//   f32exp/C      sigmoid_array (src/cpu/exp_array.h: f32 arithmetic, 8 lanes) into a scratch
//                 of C elements, then the product, chunk by chunk (after: C = 128)
//   f32exp/128 FTZ  the same with FTZ/DAZ set around the call (no subnormal arises: no change)
//   proto         the prefill profile's prototype (clamp and product in one loop) with the
//                 MXCSR the process starts with (no FTZ/DAZ), and with FTZ/DAZ set around it
// Build (worktree root):
//   g++ -O3 -march=x86-64-v3 -I. -Iinclude
//   bench/results/2026-12-05-cpu-elementwise/swiglu_probe.cpp
#include <immintrin.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <vector>

#include "src/cpu/exp_array.h"

namespace {

constexpr int64_t kBlock = 16384;

double cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

__attribute__((noinline)) void swiglu_f64exp(float* out, const float* g, const float* u,
                                             int64_t n) {
  static float s[kBlock];
  for (int64_t i = 0; i < n; ++i) s[i] = -g[i];
  longctx::cpu::exp_array(s, s, n);
  for (int64_t i = 0; i < n; ++i) s[i] = 1.0f / (1.0f + s[i]);
  for (int64_t i = 0; i < n; ++i) out[i] = (g[i] * s[i]) * u[i];
}

template <int64_t C>
__attribute__((noinline)) void swiglu_f32exp(float* out, const float* g, const float* u,
                                             int64_t n) {
  static float s[C];
  for (int64_t c = 0; c < n; c += C) {
    const int64_t m = std::min(C, n - c);
    longctx::cpu::sigmoid_array(s, g + c, m);
    for (int64_t i = 0; i < m; ++i) out[c + i] = (g[c + i] * s[i]) * u[c + i];
  }
}

#pragma GCC push_options
#pragma GCC optimize("no-trapping-math")
// The prototype: the clamp of the exp's argument and the product in the same loop.
__attribute__((noinline)) void swiglu_proto(float* out, const float* g, const float* u, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    float v = -g[i];
    v = v < -87.0f ? -87.0f : v;
    v = v > 88.0f ? 88.0f : v;
    out[i] = g[i] / (1.0f + longctx::cpu::exp_f32_core(v)) * u[i];
  }
}
#pragma GCC pop_options

template <class F>
double time_ms(F f, const std::vector<float>& g, const std::vector<float>& u,
               std::vector<float>& o) {
  const int64_t n = int64_t(g.size());
  const double t0 = cpu_seconds();
  for (int64_t b = 0; b < n; b += kBlock)
    f(o.data() + b, g.data() + b, u.data() + b, std::min(kBlock, n - b));
  return (cpu_seconds() - t0) * 1e3;
}

}  // namespace

int main() {
  const int64_t n = 4096 * 384;
  std::vector<float> g(n), u(n), o(n), ref(n);
  std::mt19937 rng(1);
  std::normal_distribution<float> d(0, 1);
  for (auto& x : g) x = d(rng);
  for (auto& x : u) x = d(rng);
  const unsigned mxcsr = _mm_getcsr();
  std::printf("MXCSR at start 0x%x (FTZ %u, DAZ %u)\n", mxcsr, (mxcsr >> 15) & 1, (mxcsr >> 6) & 1);
  const char* names[] = {"f64exp/16384 (before)", "f32exp/16384",   "f32exp/512",
                         "f32exp/128 (after)",    "f32exp/128 FTZ", "proto, no FTZ/DAZ",
                         "proto, FTZ/DAZ"};
  std::vector<double> t[7];
  for (int round = 0; round < 9; ++round) {
    t[0].push_back(time_ms(swiglu_f64exp, g, u, ref));
    t[1].push_back(time_ms(swiglu_f32exp<16384>, g, u, o));
    t[2].push_back(time_ms(swiglu_f32exp<512>, g, u, o));
    t[3].push_back(time_ms(swiglu_f32exp<128>, g, u, o));
    t[5].push_back(time_ms(swiglu_proto, g, u, o));
    _mm_setcsr(mxcsr | 0x8040);  // FTZ | DAZ
    t[4].push_back(time_ms(swiglu_f32exp<128>, g, u, o));
    t[6].push_back(time_ms(swiglu_proto, g, u, o));
    _mm_setcsr(mxcsr);
  }
  time_ms(swiglu_f32exp<128>, g, u, o);
  double max_rel = 0;
  for (int64_t i = 0; i < n; ++i)
    max_rel = std::max(max_rel, std::abs(double(o[i]) - ref[i]) / std::abs(double(ref[i])));
  for (int k = 0; k < 7; ++k) {
    std::sort(t[k].begin(), t[k].end());
    std::printf("%-22s median %.3f ms CPU  min %.3f  max %.3f\n", names[k], t[k][t[k].size() / 2],
                t[k].front(), t[k].back());
  }
  std::printf("max rel diff f32exp/128 vs f64exp: %.3g\n", max_rel);
}
