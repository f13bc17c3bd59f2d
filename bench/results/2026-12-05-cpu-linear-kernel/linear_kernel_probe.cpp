// Probe (not part of the build): linear_fwd's GEMM y = x W^T at M = 4096 rows, 2 threads, by
// OpenBLAS as linear.cpp did before small_k_gemm (single-threaded sgemm calls on one row block
// per thread, "blas") against small_k_gemm with the AVX-512 tiles ("avx512") and the AVX2 tiles
// ("avx2"), in one binary, the variants alternating within every repetition. Per variant: the
// median over REPS repetitions of the process CPU time (all threads) and the wall time of one
// call, in microseconds. Also checks that the three agree (max |difference| / max |y|).
//   g++ -O3 -march=x86-64-v3 -std=c++17 -fopenmp -I. -Iinclude \
//     bench/results/2026-12-05-cpu-linear-kernel/linear_kernel_probe.cpp -Lbuild-cpu -llongctx \
//     -lopenblas -Wl,-rpath,$PWD/build-cpu -o /tmp/linear_kernel_probe &&
//   OMP_WAIT_POLICY=passive /tmp/linear_kernel_probe [REPS] [sweep]
// Without a mode: the prefill's shapes (ops-longctx-1.txt of 2026-12-05-cpu-prefill-profile).
// "sweep": Cin from 32 to 1024 and fewer rows, for the crossover. "dx": the backward's
// dx = dout W (inner dimension Cout) at the prefill's shapes, OpenBLAS as linear_bwd called it
// (one sgemm per thread's row block) against SmallKWeight's rows (bias columns ignored).
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "longctx/context.h"
#include "src/cpu/isa.h"
#include "src/cpu/small_k_gemm.h"

using namespace longctx;

static double cpu_s() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}
static double wall_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// linear.cpp's forward before small_k_gemm (rows >= Cout): one row block per thread, the bias
// copied in, one single-threaded sgemm each.
static void blas_linear(int threads, int64_t M, int64_t N, int64_t K, const float* x,
                        const float* w, const float* b, float* y) {
#pragma omp parallel num_threads(threads)
  {
    omp_set_num_threads(1);
#pragma omp for schedule(static)
    for (int part = 0; part < threads; ++part) {
      const int64_t m0 = M * part / threads, m1 = M * (part + 1) / threads;
      if (b)
        for (int64_t r = m0; r < m1; ++r) std::copy(b, b + N, y + r * N);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(m1 - m0), int(N), int(K), 1.f,
                  x + m0 * K, int(K), w, int(K), b ? 1.f : 0.f, y + m0 * N, int(N));
    }
  }
}

static double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 21;
  const bool sweep = argc > 2 && std::strcmp(argv[2], "sweep") == 0;
  const bool dx = argc > 2 && std::strcmp(argv[2], "dx") == 0;
  const int threads = 2;
  Context ctx(Device::cpu(), threads);
  struct Shape {
    int64_t M, N, K;  // rows, Cout, Cin
    bool bias;
  };
  std::vector<Shape> shapes;
  if (!sweep) {
    for (auto [N, K] : std::vector<std::pair<int64_t, int64_t>>{
             {128, 128}, {64, 128}, {384, 128}, {128, 384}, {256, 128}, {648, 128}, {128, 256}})
      shapes.push_back({4096, N, K, false});
    shapes.push_back({4096, 384, 128, true});
    shapes.push_back({4093, 131, 127, true});  // odd tails
  } else {
    for (int64_t K : {32, 64, 128, 192, 256, 384, 512, 768, 1024})
      shapes.push_back({4096, 384, K, false});
    for (int64_t N : {1024, 2048, 4096, 8192}) shapes.push_back({4096, N, 128, false});
    for (int64_t M : {8, 16, 32, 64, 128, 256}) shapes.push_back({M, 384, 128, false});
    for (int64_t M : {16, 64, 256}) shapes.push_back({M, 128, 128, false});
  }
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> U(-1.f, 1.f);
  std::printf("%-22s %28s %28s %28s %9s %9s\n", "shape M x Cout x Cin", "blas CPU/wall us",
              "avx512 CPU/wall us", "avx2 CPU/wall us", "blas/512", "blas/avx2");
  for (const Shape& s : shapes) {
    std::vector<float> x(s.M * (dx ? s.N : s.K)), w(s.N * s.K), b(s.N);
    for (auto& v : x) v = U(rng);
    for (auto& v : w) v = U(rng);
    for (auto& v : b) v = U(rng);
    std::vector<float> y[3];
    const int64_t ysize = s.M * (dx ? s.K : s.N);
    for (auto& v : y) v.assign(ysize, NAN);
    const float* bp = s.bias ? b.data() : nullptr;
    auto call = [&](int variant) {
      if (dx) {  // y (M, K) = x (M, N) · w (N, K): x as dout, w as the weight
        if (variant == 0) {
#pragma omp parallel for num_threads(threads) schedule(static)
          for (int part = 0; part < threads; ++part) {
            omp_set_num_threads(1);
            const int64_t m0 = s.M * part / threads, m1 = s.M * (part + 1) / threads;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(m1 - m0), int(s.K), int(s.N),
                        1.f, x.data() + m0 * s.N, int(s.N), w.data(), int(s.K), 0.f,
                        y[0].data() + m0 * s.K, int(s.K));
          }
        } else {
          cpu::set_cpu_isa_cap(variant == 1 ? cpu::CpuIsa::avx512 : cpu::CpuIsa::avx2);
          const cpu::SmallKWeight packed(s.K, s.N, w.data(), /*transposed=*/true, nullptr);
#pragma omp parallel for num_threads(threads) schedule(static)
          for (int part = 0; part < threads; ++part)
            packed.rows(x.data(), s.M * part / threads, s.M * (part + 1) / threads,
                        y[variant].data());
        }
        return;
      }
      if (variant == 0) {
        blas_linear(threads, s.M, s.N, s.K, x.data(), w.data(), bp, y[0].data());
      } else {
        cpu::set_cpu_isa_cap(variant == 1 ? cpu::CpuIsa::avx512 : cpu::CpuIsa::avx2);
        cpu::small_k_gemm(ctx, s.M, s.N, s.K, x.data(), w.data(), bp, y[variant].data());
      }
    };
    // calls a sample: ~2 ms of work at least
    const int inner = std::max<int64_t>(1, 2000000000LL / (2 * s.M * s.N * s.K * 100));
    std::vector<double> tc[3], tw[3];
    for (int v = 0; v < 3; ++v) call(v);  // warm-up
    for (int r = 0; r < reps; ++r)
      for (int v = 0; v < 3; ++v) {
        const double c0 = cpu_s(), w0 = wall_s();
        for (int i = 0; i < inner; ++i) call(v);
        tc[v].push_back((cpu_s() - c0) * 1e6 / inner);
        tw[v].push_back((wall_s() - w0) * 1e6 / inner);
      }
    cpu::set_cpu_isa_cap(cpu::CpuIsa::avx512);
    double ymax = 0, d512 = 0, d2 = 0, d22 = 0;
    for (int64_t i = 0; i < ysize; ++i) {
      ymax = std::max(ymax, double(std::abs(y[0][i])));
      d512 = std::max(d512, double(std::abs(y[1][i] - y[0][i])));
      d2 = std::max(d2, double(std::abs(y[2][i] - y[1][i])));
    }
    (void)d22;
    char name[64];
    std::snprintf(name, sizeof name, "%s%lldx%lldx%lld%s", dx ? "dx " : "", (long long)s.M,
                  (long long)s.N, (long long)s.K, s.bias && !dx ? "+b" : "");
    char col[3][64];
    for (int v = 0; v < 3; ++v)
      std::snprintf(col[v], sizeof col[v], "%10.1f / %10.1f", median(tc[v]), median(tw[v]));
    std::printf("%-22s %28s %28s %28s %9.3f %9.3f   |512-blas|/max %.1e  |512-avx2| %.1e\n", name,
                col[0], col[1], col[2], median(tc[0]) / median(tc[1]),
                median(tc[0]) / median(tc[2]), d512 / ymax, d2);
    std::fflush(stdout);
  }
}
