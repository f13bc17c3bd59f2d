// Probe (not part of the build): small_k_gemm before ("old": old_small_k_gemm.cpp, a copy of the
// base commit's src/cpu/small_k_gemm.cpp with its namespace renamed) against the working tree's
// ("new", same renaming), in one binary, alternating within every repetition, 2 threads, M = 4096,
// the llama prefill's projection shapes (forward y = x wᵀ, and "dx" = dy · W as linear_bwd
// calls SmallKWeight::rows). Per variant: median CPU and wall us of one call and GFLOP/s; and
// checks old and new agree bitwise. Build and run: see run.sh.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "longctx/context.h"
#include "new_small_k_gemm.h"
#include "old_small_k_gemm.h"
#include "src/cpu/isa.h"

using namespace longctx;

static double cpu_s() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}
static double wall_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
// 64-byte aligned, as the library's tensors are (src/core/tensor.cpp): a std::vector of a few MB
// comes from mmap at 16 bytes past a page, and y's rows then straddle cache lines.
template <class T>
struct Aligned64 {
  using value_type = T;
  Aligned64() = default;
  template <class U>
  Aligned64(const Aligned64<U>&) {}
  T* allocate(size_t n) {
    return static_cast<T*>(std::aligned_alloc(64, (n * sizeof(T) + 63) / 64 * 64));
  }
  void deallocate(T* p, size_t) { std::free(p); }
  bool operator==(const Aligned64&) const { return true; }
  bool operator!=(const Aligned64&) const { return false; }
};
using Buf = std::vector<float, Aligned64<float>>;

static double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 15;
  const bool dx = argc > 2 && std::strcmp(argv[2], "dx") == 0;
  if (argc > 3)
    cpu::set_cpu_isa_cap(std::strcmp(argv[3], "avx2") == 0 ? cpu::CpuIsa::avx2
                                                           : cpu::CpuIsa::avx512);
  const int threads = getenv("PROBE_THREADS") ? std::atoi(getenv("PROBE_THREADS")) : 2;
  Context ctx(Device::cpu(), threads);
  struct Shape {
    int64_t M, N, K;
    bool bias;
  };
  std::vector<Shape> shapes;
  for (auto [N, K] : std::vector<std::pair<int64_t, int64_t>>{
           {128, 128}, {64, 128}, {384, 128}, {128, 384}, {256, 128}})
    shapes.push_back({4096, N, K, false});
  if (!dx) shapes.push_back({4096, 384, 128, true});
  shapes.push_back({4093, 131, 127, true});
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> U(-1.f, 1.f);
  std::printf("%-20s %24s %24s %8s %8s %8s  %s\n", "shape M x N x K", "old CPU/wall us",
              "new CPU/wall us", "old GF/s", "new GF/s", "old/new", "bits");
  double sum_old = 0, sum_new = 0;
  for (const Shape& s : shapes) {
    // forward: y (M, N) = x (M, K) · w (N, K)ᵀ; dx: y (M, K) = x (M, N) · w (N, K)
    Buf x(s.M * (dx ? s.N : s.K)), w(s.N * s.K), b(s.N);
    for (auto& v : x) v = U(rng);
    for (auto& v : w) v = U(rng);
    for (auto& v : b) v = U(rng);
    const int64_t ysize = s.M * (dx ? s.K : s.N);
    Buf y[2];
    for (auto& v : y) v.assign(ysize, NAN);
    const float* bp = s.bias ? b.data() : nullptr;
    auto call = [&](int variant) {
      if (dx) {
        if (variant == 0) {
          const cpu_old::SmallKWeight packed(s.K, s.N, w.data(), true, nullptr);
#pragma omp parallel for num_threads(threads) schedule(static)
          for (int part = 0; part < threads; ++part)
            packed.rows(x.data(), s.M * part / threads, s.M * (part + 1) / threads, y[0].data());
        } else {
          const cpu_new::SmallKWeight packed(s.K, s.N, w.data(), true, nullptr);
#pragma omp parallel for num_threads(threads) schedule(static)
          for (int part = 0; part < threads; ++part)
            packed.rows(x.data(), s.M * part / threads, s.M * (part + 1) / threads, y[1].data());
        }
        return;
      }
      if (variant == 0)
        cpu_old::small_k_gemm(ctx, s.M, s.N, s.K, x.data(), w.data(), bp, y[0].data());
      else
        cpu_new::small_k_gemm(ctx, s.M, s.N, s.K, x.data(), w.data(), bp, y[1].data());
    };
    const double flop = 2.0 * s.M * s.N * s.K;
    const int inner = std::max<int64_t>(1, int64_t(4e8 / flop));  // ~4 ms of work a sample
    std::vector<double> tc[2], tw[2];
    for (int v = 0; v < 2; ++v) call(v);
    for (int r = 0; r < reps; ++r)
      for (int v0 = 0; v0 < 2; ++v0) {
        const int v = (r & 1) ? 1 - v0 : v0;
        const double c0 = cpu_s(), w0 = wall_s();
        for (int i = 0; i < inner; ++i) call(v);
        tc[v].push_back((cpu_s() - c0) * 1e6 / inner);
        tw[v].push_back((wall_s() - w0) * 1e6 / inner);
      }
    const bool same = std::memcmp(y[0].data(), y[1].data(), ysize * sizeof(float)) == 0;
    char name[64], col[2][64];
    std::snprintf(name, sizeof name, "%s%lldx%lldx%lld%s", dx ? "dx " : "", (long long)s.M,
                  (long long)s.N, (long long)s.K, s.bias && !dx ? "+b" : "");
    for (int v = 0; v < 2; ++v)
      std::snprintf(col[v], sizeof col[v], "%9.1f / %9.1f", median(tc[v]), median(tw[v]));
    std::printf("%-20s %24s %24s %8.1f %8.1f %8.3f  %s\n", name, col[0], col[1],
                flop / median(tw[0]) * 1e-3, flop / median(tw[1]) * 1e-3,
                median(tw[0]) / median(tw[1]), same ? "same" : "DIFFER");
    sum_old += median(tw[0]), sum_new += median(tw[1]);
    std::fflush(stdout);
  }
  std::printf("sum of wall medians: old %.1f us, new %.1f us, old/new %.3f\n", sum_old, sum_new,
              sum_old / sum_new);
}
