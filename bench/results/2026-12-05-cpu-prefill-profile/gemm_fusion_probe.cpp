// Probe (not part of the build): what fusing a layer's projections that read the same x into one
// GEMM would save on longctx's linear_fwd at M = 4096, 2 threads: llama's q, k, v (128 + 64 + 64
// outputs from C = 128) as three calls against one call with the weights concatenated (256), and
// its MLP's gate and up (384 + 384) against one call of 768. Rounds alternate the two forms;
// median of 21 rounds of wall and process CPU time, microseconds.
//   g++ -O2 -std=c++17 -fopenmp -I include gemm_fusion_probe.cpp -Lbuild-cpu -llongctx \
//     -Wl,-rpath,$PWD/build-cpu -o gemm_fusion_probe
//   OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive ./gemm_fusion_probe
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <functional>
#include <random>
#include <vector>

#include "longctx/longctx.h"
#include "longctx/ops/linear.h"

using namespace longctx;

static Tensor random(std::vector<int64_t> shape, std::mt19937& rng) {
  Tensor t = Tensor::empty(Shape(shape.begin(), shape.end()), DType::f32);
  std::normal_distribution<float> d(0, 1);
  float* p = static_cast<float*>(t.data());
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = d(rng);
  return t;
}

struct Sample {
  std::vector<double> wall, cpu;
  void add(const std::function<void()>& f) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::clock_t c0 = std::clock();
    f();
    wall.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    cpu.push_back(double(std::clock() - c0) / CLOCKS_PER_SEC);
  }
  void print(const char* name) {
    std::sort(wall.begin(), wall.end());
    std::sort(cpu.begin(), cpu.end());
    std::printf("%-34s %9.1f us wall %9.1f us CPU\n", name, wall[wall.size() / 2] * 1e6,
                cpu[cpu.size() / 2] * 1e6);
  }
};

static void compare(const Context& ctx, const char* name_split, const char* name_fused,
                    const std::vector<int64_t>& outs, std::mt19937& rng) {
  const int64_t M = 4096, C = 128;
  Tensor x = random({M, C}, rng);
  std::vector<Tensor> w, y;
  int64_t total = 0;
  for (int64_t n : outs) {
    w.push_back(random({n, C}, rng));
    y.push_back(Tensor::empty({M, n}, DType::f32));
    total += n;
  }
  Tensor wf = random({total, C}, rng), yf = Tensor::empty({M, total}, DType::f32);
  auto split = [&] {
    for (size_t i = 0; i < outs.size(); ++i) linear_fwd(ctx, y[i], x, w[i]);
  };
  auto fused = [&] { linear_fwd(ctx, yf, x, wf); };
  for (int i = 0; i < 3; ++i) split(), fused();
  Sample a, b;
  for (int i = 0; i < 21; ++i) a.add(split), b.add(fused);
  a.print(name_split);
  b.print(name_fused);
}

int main() {
  Context ctx(Device::cpu(), 2);
  std::mt19937 rng(1);
  compare(ctx, "q, k, v: 3 calls (128, 64, 64)", "qkv: 1 call (256)", {128, 64, 64}, rng);
  compare(ctx, "gate, up: 2 calls (384, 384)", "gate+up: 1 call (768)", {384, 384}, rng);
}
