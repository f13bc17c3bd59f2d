// Probe: the residual add and the next norm as two ops (add_fwd, rmsnorm_fwd; rmsnorm_bwd,
// add_fwd) against the fused add_rmsnorm_fwd/bwd, on the (B*T, C) = (4096, 128) f32 activations
// of the presets' training step (d_model 128, 4096 tokens a batch). One binary, the two variants
// alternated call by call so both see the same load; process CPU time (all threads), median per
// call over the rounds.
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <random>
#include <vector>

#include "longctx/longctx.h"

using namespace longctx;

namespace {

double cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

Tensor random(const Shape& shape, std::mt19937& gen) {
  Tensor t = Tensor::empty(shape, DType::f32);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (int64_t i = 0; i < t.numel(); ++i) t.data_as<float>()[i] = u(gen);
  return t;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t rows = argc > 1 ? std::atoll(argv[1]) : 4096, C = 128;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 400;
  Context ctx(Device::cpu());
  std::mt19937 gen(1);
  Tensor x = random({rows, C}, gen), y = random({rows, C}, gen), w = random({C}, gen);
  Tensor dout = random({rows, C}, gen), dh = random({rows, C}, gen);
  Tensor h = Tensor::empty({rows, C}, DType::f32), normed = Tensor::empty({rows, C}, DType::f32);
  Tensor rstd = Tensor::empty({rows}, DType::f32), dw = Tensor::empty({C}, DType::f32);
  Tensor dh_norm = Tensor::empty({rows, C}, DType::f32), dx = Tensor::empty({rows, C}, DType::f32);

  const std::vector<std::pair<const char*, std::function<void()>>> variants = {
      {"fwd: add_fwd + rmsnorm_fwd",
       [&] {
         add_fwd(ctx, h, x, y);
         rmsnorm_fwd(ctx, normed, rstd, h, w);
       }},
      {"fwd: add_rmsnorm_fwd", [&] { add_rmsnorm_fwd(ctx, normed, h, rstd, x, y, w); }},
      {"bwd: rmsnorm_bwd + add_fwd",
       [&] {
         rmsnorm_bwd(ctx, dh_norm, dw, dout, h, w, rstd);
         add_fwd(ctx, dx, dh, dh_norm);
       }},
      {"bwd: add_rmsnorm_bwd", [&] { add_rmsnorm_bwd(ctx, dx, dw, dout, dh, h, w, rstd); }},
  };
  std::vector<std::vector<double>> cpu(variants.size());
  for (int r = 0; r < rounds; ++r)
    for (size_t v = 0; v < variants.size(); ++v) {
      const double start = cpu_seconds();
      variants[v].second();
      cpu[v].push_back(cpu_seconds() - start);
    }
  std::printf("rows %lld, C %lld, f32, %d threads, %d rounds: median CPU us per call\n",
              (long long)rows, (long long)C, ctx.cpu_threads(), rounds);
  for (size_t v = 0; v < variants.size(); ++v)
    std::printf("  %-28s %8.1f\n", variants[v].first, median(cpu[v]) * 1e6);
  std::printf("  fused / unfused: fwd %.3f, bwd %.3f\n", median(cpu[1]) / median(cpu[0]),
              median(cpu[3]) / median(cpu[2]));
}
