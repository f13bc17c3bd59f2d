// The CPU attention forward and backward at bench_attention's non-causal sweep points (B·T =
// 4096, H = 8, D = 64, T = 512…4096) and, for reference, causal T = 512 and 4096: GFLOP per CPU
// second of all threads (best of `reps` after a warm-up), and checksums of out and dq + dk + dv
// (same checksum = same result bits), for A/B runs of one binary against two builds of
// liblongctx.so (LD_LIBRARY_PATH). Inputs uniform in [-1, 1).
//   g++ -O2 -std=c++17 -Iinclude nc_probe.cpp -Lbuild-cpu -llongctx -o probe
//   probe [reps] [shape index or -1] [fwd|bwd|both]
#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
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

Tensor random_tensor(const Shape& shape, std::mt19937& gen) {
  Tensor t = Tensor::empty(shape, DType::f32);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (int64_t i = 0; i < t.numel(); ++i) t.data_as<float>()[i] = u(gen);
  return t;
}

double checksum(const Tensor& t) {
  double sum = 0;
  for (int64_t i = 0; i < t.numel(); ++i) sum += t.data_as<float>()[i];
  return sum;
}

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 3;
  const int only = argc > 2 ? std::atoi(argv[2]) : -1;  // one shape (its index) for perf
  const char* what = argc > 3 ? argv[3] : "both";
  const bool fwd = std::strcmp(what, "bwd") != 0, bwd = std::strcmp(what, "fwd") != 0;
  Context ctx(Device::cpu());
  struct Point {
    int64_t T;
    bool causal;
  };
  const Point points[] = {{512, false},  {1024, false}, {2048, false},
                          {4096, false}, {512, true},   {4096, true}};
  const int64_t H = 8, D = 64;
  std::mt19937 gen(7);
  for (int i = 0; i < int(sizeof(points) / sizeof(points[0])); ++i) {
    if (only >= 0 && only != i) continue;
    const auto [T, causal] = points[i];
    const int64_t B = 4096 / T;
    Tensor q = random_tensor({B, T, H, D}, gen);
    Tensor k = random_tensor({B, T, H, D}, gen);
    Tensor v = random_tensor({B, T, H, D}, gen);
    Tensor dout = random_tensor({B, T, H, D}, gen);
    Tensor out = Tensor::empty({B, T, H, D}, DType::f32);
    Tensor lse = Tensor::empty({B, H, T}, DType::f32);
    Tensor dq = Tensor::empty({B, T, H, D}, DType::f32);
    Tensor dk = Tensor::empty({B, T, H, D}, DType::f32);
    Tensor dv = Tensor::empty({B, T, H, D}, DType::f32);
    AttentionParams params;
    params.causal = causal;
    const double flops = 4.0 * B * T * T * H * D * (causal ? 0.5 : 1.0);
    attention_fwd(ctx, out, lse, q, k, v, params);
    double best_f = 1e30, best_b = 1e30;
    for (int r = 0; fwd && r < reps; ++r) {
      const double c0 = cpu_seconds();
      attention_fwd(ctx, out, lse, q, k, v, params);
      best_f = std::min(best_f, cpu_seconds() - c0);
    }
    if (bwd) attention_bwd(ctx, dq, dk, dv, dout, q, k, v, out, lse, params);  // warm-up
    for (int r = 0; bwd && r < reps; ++r) {
      const double c0 = cpu_seconds();
      attention_bwd(ctx, dq, dk, dv, dout, q, k, v, out, lse, params);
      best_b = std::min(best_b, cpu_seconds() - c0);
    }
    std::printf("T=%ld causal=%d fwd_gf_cpu=%.2f bwd_gf_cpu=%.2f out_sum=%.9g grad_sum=%.9g\n",
                long(T), int(causal), fwd ? flops / best_f * 1e-9 : 0.0,
                bwd ? 2.5 * flops / best_b * 1e-9 : 0.0, checksum(out),
                bwd ? checksum(dq) + checksum(dk) + checksum(dv) : 0.0);
    std::fflush(stdout);
  }
}
