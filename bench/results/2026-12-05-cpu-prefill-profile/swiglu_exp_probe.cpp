// Probe: swiglu over 4096x384 f32 with a vectorized f32 exp, one thread (see README).
//   g++ -O3 -march=x86-64-v3 -fno-trapping-math [-ffast-math] swiglu_exp_probe.cpp
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

static inline float exp_f32(float v) {
  v = v < -87.0f ? -87.0f : v;
  v = v > 88.0f ? 88.0f : v;
  const float shifted = v * 1.44269504f + 0x1.8p23f;
  const float k = shifted - 0x1.8p23f;
  const float r = (v - k * 0.693145751953125f) - k * 1.428606765330187e-06f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  uint32_t bits;
  std::memcpy(&bits, &shifted, 4);
  bits = (bits + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}
__attribute__((noinline)) void swiglu_block(float* __restrict out, const float* __restrict g,
                                            const float* __restrict u, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = g[i] / (1.0f + exp_f32(-g[i])) * u[i];
}
int main() {
  const int64_t n = 4096 * 384;
  std::vector<float> g(n), u(n), o(n);
  std::mt19937 rng(1);
  std::normal_distribution<float> d(0, 1);
  for (auto& x : g) x = d(rng);
  for (auto& x : u) x = d(rng);
  for (int it = 0; it < 5; ++it) {
    auto t0 = std::chrono::steady_clock::now();
    for (int64_t b = 0; b < n; b += 16384)
      swiglu_block(o.data() + b, g.data() + b, u.data() + b, std::min<int64_t>(16384, n - b));
    std::printf("%.1f us\n",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() * 1e6);
  }
}
