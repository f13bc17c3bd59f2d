// Probe (not part of the build): the prefill's op shapes alone, at M = B * T = 4096 rows, 2
// threads: each linear_fwd (y = x W^T) of the llama and mamba2 presets, swiglu_fwd, rmsnorm_fwd
// and add_fwd. Median of 21 calls after 3 warm-ups: wall and process CPU time, in microseconds.
// Compare with torch_ops_probe.py (the same shapes in PyTorch, eager and torch.compile).
//   g++ -O3 -march=x86-64-v3 -std=c++17 -fopenmp -I include ops_probe.cpp -Lbuild-cpu -llongctx \
//     -Wl,-rpath,$PWD/build-cpu -o ops_probe && OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive
//     ./ops_probe
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <random>
#include <vector>

#include "longctx/longctx.h"
#include "longctx/ops/add.h"
#include "longctx/ops/linear.h"
#include "longctx/ops/rmsnorm.h"
#include "longctx/ops/swiglu.h"

using namespace longctx;

// Prototypes of two changes, timed beside the library's ops (not tested for accuracy beyond the
// check printed below): swiglu with an f32 exp (8 lanes of AVX2 instead of the f64 exp_array's
// 4), and the residual add fused into the next rmsnorm (one pass over h and y, as inductor does).
#pragma GCC push_options
#pragma GCC optimize("no-trapping-math")
static inline float exp_f32(float v) {  // |rel err| ~2e-7 on [-87, 88]
  v = v < -87.0f ? -87.0f : v;
  v = v > 88.0f ? 88.0f : v;
  const float shifted = v * 1.44269504f + 0x1.8p23f;  // rounds v log2(e) to an integer k
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
  bits = (bits + 127) << 23;  // 2^k: k sits in the low mantissa bits of `shifted`
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}
static void swiglu_block(float* __restrict out, const float* __restrict g,
                         const float* __restrict u, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = g[i] / (1.0f + exp_f32(-g[i])) * u[i];
}
static void swiglu_f32(float* out, const float* g, const float* u, int64_t n) {
#pragma omp parallel for num_threads(2) schedule(static)
  for (int64_t b = 0; b < (n + 16383) / 16384; ++b) {
    const int64_t begin = b * 16384, end = std::min(n, begin + 16384);
    swiglu_block(out + begin, g + begin, u + begin, end - begin);
  }
}
static void add_rmsnorm(float* h_out, float* normed, float* rstd, const float* h, const float* y,
                        const float* w, int64_t rows, int64_t C, float eps) {
#pragma omp parallel for num_threads(2) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    float ss = 0;
    for (int64_t c = 0; c < C; ++c) {
      const float s = h[r * C + c] + y[r * C + c];
      h_out[r * C + c] = s;
      ss += s * s;
    }
    const float inv = 1.0f / std::sqrt(ss / float(C) + eps);
    rstd[r] = inv;
    for (int64_t c = 0; c < C; ++c) normed[r * C + c] = h_out[r * C + c] * inv * w[c];
  }
}
#pragma GCC pop_options

static Tensor random(std::vector<int64_t> shape, std::mt19937& rng) {
  Tensor t = Tensor::empty(Shape(shape.begin(), shape.end()), DType::f32);
  std::normal_distribution<float> d(0, 1);
  float* p = static_cast<float*>(t.data());
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = d(rng);
  return t;
}

static void time(const char* name, const std::function<void()>& f) {
  for (int i = 0; i < 3; ++i) f();
  std::vector<double> wall, cpu;
  for (int i = 0; i < 21; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::clock_t c0 = std::clock();
    f();
    wall.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    cpu.push_back(double(std::clock() - c0) / CLOCKS_PER_SEC);
  }
  std::sort(wall.begin(), wall.end());
  std::sort(cpu.begin(), cpu.end());
  std::printf("%-28s %9.1f us wall %9.1f us CPU\n", name, wall[10] * 1e6, cpu[10] * 1e6);
  std::fflush(stdout);
}

int main() {
  Context ctx(Device::cpu(), 2);
  std::mt19937 rng(1);
  const int64_t M = 4096;
  // (Cout, Cin): llama q, k/v, o, gate/up, down, logits; mamba2 in_proj, out_proj.
  const std::vector<std::pair<int64_t, int64_t>> shapes = {
      {128, 128}, {64, 128}, {384, 128}, {128, 384}, {256, 128}, {648, 128}, {128, 256}};
  for (auto [Cout, Cin] : shapes) {
    Tensor x = random({M, Cin}, rng), w = random({Cout, Cin}, rng);
    Tensor y = Tensor::empty({M, Cout}, DType::f32);
    char name[64];
    std::snprintf(name, sizeof name, "linear %lldx%lld", (long long)Cout, (long long)Cin);
    time(name, [&] { linear_fwd(ctx, y, x, w); });
  }
  for (int64_t F : {384, 256}) {
    Tensor g = random({M, F}, rng), u = random({M, F}, rng), o = Tensor::empty({M, F}, DType::f32);
    char name[64];
    std::snprintf(name, sizeof name, "swiglu %lldx%lld", (long long)M, (long long)F);
    time(name, [&] { swiglu_fwd(ctx, o, g, u); });
    Tensor o2 = Tensor::empty({M, F}, DType::f32);
    std::snprintf(name, sizeof name, "proto swiglu_f32 %lldx%lld", (long long)M, (long long)F);
    float* po2 = static_cast<float*>(o2.data());
    time(name, [&] {
      swiglu_f32(po2, static_cast<float*>(g.data()), static_cast<float*>(u.data()), M * F);
    });
    double worst = 0;
    for (int64_t i = 0; i < M * F; ++i) {
      const double ref = static_cast<float*>(o.data())[i];
      worst = std::max(worst, std::abs(po2[i] - ref) / (std::abs(ref) + 1e-30));
    }
    std::printf("  proto swiglu_f32 vs swiglu_fwd: max relative difference %.2e\n", worst);
  }
  for (int64_t C : {128, 256}) {
    Tensor x = random({M, C}, rng), w = random({C}, rng), o = Tensor::empty({M, C}, DType::f32);
    Tensor r = Tensor::empty({M}, DType::f32);
    char name[64];
    std::snprintf(name, sizeof name, "rmsnorm %lldx%lld", (long long)M, (long long)C);
    time(name, [&] { rmsnorm_fwd(ctx, o, r, x, w, {1e-5}); });
  }
  Tensor a = random({M, 128}, rng), b = random({M, 128}, rng),
         s = Tensor::empty({M, 128}, DType::f32);
  time("add 4096x128", [&] { add_fwd(ctx, s, a, b); });
  Tensor w = random({128}, rng), n = Tensor::empty({M, 128}, DType::f32);
  Tensor r = Tensor::empty({M}, DType::f32);
  time("add + rmsnorm 4096x128", [&] {
    add_fwd(ctx, s, a, b);
    rmsnorm_fwd(ctx, n, r, s, w, {1e-5});
  });
  time("proto add_rmsnorm 4096x128", [&] {
    add_rmsnorm(static_cast<float*>(s.data()), static_cast<float*>(n.data()),
                static_cast<float*>(r.data()), static_cast<float*>(a.data()),
                static_cast<float*>(b.data()), static_cast<float*>(w.data()), M, 128, 1e-5f);
  });
}
