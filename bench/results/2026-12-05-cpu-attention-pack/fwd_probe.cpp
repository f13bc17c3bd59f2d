// The CPU attention forward at the sweep's shapes and the llama preset's (GQA, D = 32), timed
// in GFLOP per CPU second of all threads (best of `reps` after a warm-up), for A/B runs of one
// binary against two builds of liblongctx.so (LD_LIBRARY_PATH; see ab.sh). Inputs are uniform
// in [-1, 1) (not constant), so the lazy rescaling sees the scores of a real run.
//   g++ -O2 -std=c++17 -I../../../include fwd_probe.cpp -L../../../build-cpu -llongctx -o probe
#include <time.h>

#include <cstdio>
#include <cstdlib>
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

struct Shape4 {
  int64_t T, H, Hkv, D;
  bool causal;
};

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 3;
  Context ctx(Device::cpu());
  std::vector<Shape4> shapes;
  for (int64_t T : {512, 1024, 2048, 4096})
    for (bool causal : {false, true}) shapes.push_back({T, 8, 8, 64, causal});
  for (int64_t T : {256, 1024, 4096}) shapes.push_back({T, 4, 2, 32, true});
  const int only = argc > 2 ? std::atoi(argv[2]) : -1;  // one shape (its index) for perf
  std::mt19937 gen(7);
  for (size_t i = 0; i < shapes.size(); ++i) {
    if (only >= 0 && size_t(only) != i) continue;
    const Shape4& s = shapes[i];
    const int64_t B = 4096 / s.T;
    Tensor q = random_tensor({B, s.T, s.H, s.D}, gen);
    Tensor k = random_tensor({B, s.T, s.Hkv, s.D}, gen);
    Tensor v = random_tensor({B, s.T, s.Hkv, s.D}, gen);
    Tensor out = Tensor::empty({B, s.T, s.H, s.D}, DType::f32);
    Tensor lse = Tensor::empty({B, s.H, s.T}, DType::f32);
    AttentionParams params;
    params.causal = s.causal;
    attention_fwd(ctx, out, lse, q, k, v, params);
    double best = 1e30;
    for (int r = 0; r < reps; ++r) {
      const double c0 = cpu_seconds();
      attention_fwd(ctx, out, lse, q, k, v, params);
      best = std::min(best, cpu_seconds() - c0);
    }
    const double flops = 4.0 * B * s.T * s.T * s.H * s.D * (s.causal ? 0.5 : 1.0);
    double sum = 0;
    for (int64_t i = 0; i < out.numel(); ++i) sum += out.data_as<float>()[i];
    std::printf("T=%ld H=%ld Hkv=%ld D=%ld causal=%d gf_cpu=%.2f checksum=%.9g\n", long(s.T),
                long(s.H), long(s.Hkv), long(s.D), int(s.causal), flops / best * 1e-9, sum);
    std::fflush(stdout);
  }
}
