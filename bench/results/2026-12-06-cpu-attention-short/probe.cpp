// The CPU attention forward at the llama preset's prefill shape (B = 16, T = 256, H = 4,
// Hkv = 2, D = 32, causal; point 0) and bench_attention's default non-causal sweep (B·T = 4096,
// H = 8, D = 64, T = 512 / 1024 / 2048 / 4096; points 1-4, and causal, points 5-8): GFLOP of useful
// work per second of wall time and per CPU second (best of `reps` after a warm-up, each rep `inner`
// calls), and a checksum of out and lse (same checksum = same bits, in practice), for A/B runs of
// one binary against two builds of liblongctx.so (LD_LIBRARY_PATH). Inputs uniform in [-1, 1).
//   g++ -O2 -std=c++17 -Iinclude probe.cpp -Lbuild-cpu -llongctx -o probe
//   probe [reps] [point or -1]
#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <random>

#include "longctx/longctx.h"

using namespace longctx;

namespace {
double now(clockid_t c) {
  timespec ts;
  clock_gettime(c, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}
Tensor random_tensor(const Shape& shape, std::mt19937& gen) {
  Tensor t = Tensor::empty(shape, DType::f32);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (int64_t i = 0; i < t.numel(); ++i) t.data_as<float>()[i] = u(gen);
  return t;
}
double checksum(const Tensor& t) {
  double sum = 0;
  for (int64_t i = 0; i < t.numel(); ++i) sum += double(t.data_as<float>()[i]) * double(i % 7 + 1);
  return sum;
}
}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 5;
  const int only = argc > 2 ? std::atoi(argv[2]) : -1;
  Context ctx(Device::cpu());
  struct Point {
    int64_t B, T, H, Hkv, D;
    bool causal;
    int inner;
  };
  const Point points[] = {
      {16, 256, 4, 2, 32, true, 20}, {8, 512, 8, 8, 64, false, 2},  {4, 1024, 8, 8, 64, false, 2},
      {2, 2048, 8, 8, 64, false, 1}, {1, 4096, 8, 8, 64, false, 1}, {8, 512, 8, 8, 64, true, 2},
      {4, 1024, 8, 8, 64, true, 2},  {2, 2048, 8, 8, 64, true, 1},  {1, 4096, 8, 8, 64, true, 1}};
  std::mt19937 gen(7);
  for (int i = 0; i < int(sizeof(points) / sizeof(points[0])); ++i) {
    if (only >= 0 && only != i) continue;
    const Point p = points[i];
    Tensor q = random_tensor({p.B, p.T, p.H, p.D}, gen);
    Tensor k = random_tensor({p.B, p.T, p.Hkv, p.D}, gen);
    Tensor v = random_tensor({p.B, p.T, p.Hkv, p.D}, gen);
    Tensor out = Tensor::empty({p.B, p.T, p.H, p.D}, DType::f32);
    Tensor lse = Tensor::empty({p.B, p.H, p.T}, DType::f32);
    AttentionParams params;
    params.causal = p.causal;
    const double flops = 4.0 * p.B * p.T * p.T * p.H * p.D * (p.causal ? 0.5 : 1.0) * p.inner;
    attention_fwd(ctx, out, lse, q, k, v, params);
    double best_w = 1e30, best_c = 1e30;
    for (int r = 0; r < reps; ++r) {
      const double w0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
      for (int it = 0; it < p.inner; ++it) attention_fwd(ctx, out, lse, q, k, v, params);
      best_c = std::min(best_c, now(CLOCK_PROCESS_CPUTIME_ID) - c0);
      best_w = std::min(best_w, now(CLOCK_MONOTONIC) - w0);
    }
    std::printf(
        "pt=%d B=%ld T=%ld H=%ld Hkv=%ld D=%ld causal=%d gf_wall=%.1f gf_cpu=%.1f "
        "ms_per_call=%.3f sum=%.12g\n",
        i, long(p.B), long(p.T), long(p.H), long(p.Hkv), long(p.D), int(p.causal),
        flops / best_w * 1e-9, flops / best_c * 1e-9, best_w / p.inner * 1e3,
        checksum(out) + checksum(lse));
    std::fflush(stdout);
  }
}
