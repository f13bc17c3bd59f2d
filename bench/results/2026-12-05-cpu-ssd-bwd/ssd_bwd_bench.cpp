// ssd_bwd alone, CPU time per call (all threads), on the mamba2 preset's layer shapes and on
// smaller ones (the crossover against the reverse scan). The same binary runs against two builds
// of liblongctx.so.0 chosen by LD_LIBRARY_PATH (ab.sh). Build (from the repo root):
//   g++ -O2 -std=c++17 -Iinclude bench/results/2026-12-05-cpu-ssd-bwd/ssd_bwd_bench.cpp \
//     -o /tmp/ssd_bwd_bench -Lbuild-cpu -llongctx
// Run: OMP_WAIT_POLICY=passive /tmp/ssd_bwd_bench THREADS MIN_SECONDS
#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <random>

#include "longctx/longctx.h"

using namespace longctx;

static double cpu_s() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

static Tensor rand_t(const Shape& s, std::mt19937& gen, float lo, float hi) {
  Tensor t = Tensor::empty(s, DType::f32);
  std::uniform_real_distribution<float> u(lo, hi);
  float* p = t.data_as<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = u(gen);
  return t;
}

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const double min_s = argc > 2 ? std::atof(argv[2]) : 1.0;
  Context ctx(Device::cpu(), threads);
  struct Shape_ {
    const char* name;
    int64_t B, T, H, P, N, G, Q;
  };
  const Shape_ shapes[] = {
      {"mamba2 preset layer", 16, 256, 8, 32, 64, 1, 64},
      {"mamba2 preset layer", 4, 1024, 8, 32, 64, 1, 64},
      {"mamba2 preset layer", 1, 4096, 8, 32, 64, 1, 64},
      {"mamba2-130m heads", 1, 1024, 24, 64, 128, 1, 64},
      {"N=16", 1, 4096, 8, 32, 16, 1, 64},
      {"N=8", 1, 4096, 8, 32, 8, 1, 64},
      {"N=4", 1, 4096, 8, 32, 4, 1, 64},
      {"P=8", 1, 4096, 8, 8, 64, 1, 64},
      {"P=8 N=8", 1, 4096, 8, 8, 8, 1, 64},
      {"P=4 N=4", 1, 4096, 8, 4, 4, 1, 64},
      {"short T=32", 128, 32, 8, 32, 64, 1, 64},
      {"short T=8", 512, 8, 8, 32, 64, 1, 64},
      {"chunk 16", 1, 4096, 8, 32, 64, 1, 16},
      {"chunk 128", 1, 4096, 8, 32, 64, 1, 128},
  };
  std::mt19937 gen(7);
  std::printf("%-22s %4s %5s %3s %3s %4s %2s %4s %12s\n", "shape", "B", "T", "H", "P", "N", "G",
              "Q", "ms CPU/call");
  for (const auto& s : shapes) {
    SSDInputs in;
    in.x = rand_t({s.B, s.T, s.H, s.P}, gen, -1, 1);
    in.dt = rand_t({s.B, s.T, s.H}, gen, -3, 0.5f);
    in.A = rand_t({s.H}, gen, -2, -0.1f);
    in.B = rand_t({s.B, s.T, s.G, s.N}, gen, -1, 1);
    in.C = rand_t({s.B, s.T, s.G, s.N}, gen, -1, 1);
    in.D = rand_t({s.H}, gen, -1, 1);
    in.dt_bias = rand_t({s.H}, gen, 0, 0.3f);
    const Tensor dout = rand_t({s.B, s.T, s.H, s.P}, gen, -1, 1);
    SSDGrads g{Tensor::empty(in.x.shape(), DType::f32),
               Tensor::empty(in.dt.shape(), DType::f32),
               Tensor::empty({s.H}, DType::f32),
               Tensor::empty(in.B.shape(), DType::f32),
               Tensor::empty(in.C.shape(), DType::f32),
               Tensor::empty({s.H}, DType::f32),
               Tensor(),
               Tensor::empty({s.H}, DType::f32),
               Tensor()};
    const SSDParams params{s.Q, true};
    ssd_bwd(ctx, g, dout, Tensor(), in, params);  // warm-up
    int n = 0;
    const double c0 = cpu_s();
    while (cpu_s() - c0 < min_s || n < 3) {
      ssd_bwd(ctx, g, dout, Tensor(), in, params);
      ++n;
    }
    const double ms = 1e3 * (cpu_s() - c0) / n;
    std::printf("%-22s %4lld %5lld %3lld %3lld %4lld %2lld %4lld %12.2f\n", s.name, (long long)s.B,
                (long long)s.T, (long long)s.H, (long long)s.P, (long long)s.N, (long long)s.G,
                (long long)s.Q, ms);
    std::fflush(stdout);
  }
}
