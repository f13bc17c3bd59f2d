// GB/s of cpu::gemv over many matrices (more bytes than the L3), f32 vs bf16, 1 thread.
#include <chrono>
#include <cstdio>
#include <vector>
#include "longctx/longctx.h"
#include "src/cpu/gemv.h"
using namespace longctx;
static double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
static double cpu_now() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}
int main(int argc, char** argv) {
  const int threads = argc > 1 ? atoi(argv[1]) : 1;
  Context ctx(Device::cpu(), threads);
  const int64_t n = 2048, count = 96;  // 96 x 16 MB f32 = 1.5 GB; bf16 768 MB
  std::vector<float> x(n, 0.5f), y(n);
  {
    std::vector<float> w(size_t(n * n * count), 0.25f);
    for (int pass = 0; pass < 3; ++pass) {
      double t0 = now(), c0 = cpu_now();
      for (int64_t m = 0; m < count; ++m)
        cpu::gemv(ctx, n, n, w.data() + m * n * n, x.data(), nullptr, y.data());
      std::printf("f32  %.2f GB/s wall, %.2f GB/s per cpu-second\n",
                  n * n * count * 4 / (now() - t0) * 1e-9,
                  n * n * count * 4 / (cpu_now() - c0) * 1e-9);
    }
  }
  {
    std::vector<bf16> w(size_t(n * n * count), to_bf16(0.25f));
    for (int pass = 0; pass < 3; ++pass) {
      double t0 = now(), c0 = cpu_now();
      for (int64_t m = 0; m < count; ++m)
        cpu::gemv(ctx, n, n, w.data() + m * n * n, x.data(), nullptr, y.data());
      std::printf("bf16 %.2f GB/s wall, %.2f GB/s per cpu-second\n",
                  n * n * count * 2 / (now() - t0) * 1e-9,
                  n * n * count * 2 / (cpu_now() - c0) * 1e-9);
    }
  }
}
