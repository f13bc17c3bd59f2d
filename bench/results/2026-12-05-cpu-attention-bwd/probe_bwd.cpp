// probe_bwd: the attention backward alone at one shape, timed by CPU seconds (the machine is
// shared), for A/B runs of two builds of liblongctx.so through LD_LIBRARY_PATH.
//   probe_bwd B T H Hkv D causal reps  ->  "B T H Hkv D causal  best_cpu_s  GFLOP/cpu_s
//   best_wall_s"
// FLOPs as bench_attention counts them: backward 2.5x the forward's 4·B·T²·H·D, halved causal.
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>

#include "longctx/longctx.h"

using namespace longctx;

static double cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

static Tensor random_tensor(const Shape& shape, std::mt19937& gen) {
  Tensor t = Tensor::empty(shape, DType::f32);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (int64_t i = 0; i < t.numel(); ++i) t.data_as<float>()[i] = u(gen);
  return t;
}

int main(int argc, char** argv) {
  if (argc != 8) {
    std::fprintf(stderr, "usage: probe_bwd B T H Hkv D causal reps\n");
    return 2;
  }
  const int64_t B = std::atoll(argv[1]), T = std::atoll(argv[2]), H = std::atoll(argv[3]),
                Hkv = std::atoll(argv[4]), D = std::atoll(argv[5]);
  const bool causal = std::atoi(argv[6]) != 0;
  const int reps = std::atoi(argv[7]);
  const Context ctx(Device::cpu());
  std::mt19937 gen(1);
  const Tensor q = random_tensor({B, T, H, D}, gen), k = random_tensor({B, T, Hkv, D}, gen),
               v = random_tensor({B, T, Hkv, D}, gen), dout = random_tensor({B, T, H, D}, gen);
  Tensor out = Tensor::empty({B, T, H, D}, DType::f32), lse = Tensor::empty({B, H, T}, DType::f32);
  Tensor dq = Tensor::empty({B, T, H, D}, DType::f32),
         dk = Tensor::empty({B, T, Hkv, D}, DType::f32),
         dv = Tensor::empty({B, T, Hkv, D}, DType::f32);
  AttentionParams params;
  params.causal = causal;
  attention_fwd(ctx, out, lse, q, k, v, params);
  attention_bwd(ctx, dq, dk, dv, dout, q, k, v, out, lse, params);  // warm-up
  double best_cpu = 1e30, best_wall = 1e30;
  for (int r = 0; r < reps; ++r) {
    const double c0 = cpu_seconds();
    const auto t0 = std::chrono::steady_clock::now();
    attention_bwd(ctx, dq, dk, dv, dout, q, k, v, out, lse, params);
    best_wall = std::min(
        best_wall, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    best_cpu = std::min(best_cpu, cpu_seconds() - c0);
  }
  const double flops =
      2.5 * 4.0 * double(B) * double(T) * double(T) * double(H) * double(D) * (causal ? 0.5 : 1.0);
  double sum = 0;  // a checksum, so that A and B can be seen to agree
  for (const Tensor* g : {&dq, &dk, &dv})
    for (int64_t i = 0; i < g->numel(); ++i) sum += double(g->data_as<float>()[i]) * double(i % 7);
  std::printf("%lld %lld %lld %lld %lld %d  %.4f  %.1f  %.4f  sum %.9g\n", (long long)B,
              (long long)T, (long long)H, (long long)Hkv, (long long)D, int(causal), best_cpu,
              flops / best_cpu * 1e-9, best_wall, sum);
  return 0;
}
