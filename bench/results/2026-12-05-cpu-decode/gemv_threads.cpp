// The 1-vs-2-thread GEMV sweep behind kParallelBytes (src/cpu/gemv.cpp), a throwaway measurement
// kept with its output (gemv-threads.txt). Built against a copy of src/cpu/gemv.cpp whose
// kParallelBytes constant is replaced by the global g_parallel_bytes (sed), so that the rows can
// be forced onto one thread or split over two:
//   g++ -O2 -march=x86-64-v3 -fopenmp -std=c++17 -I. -Iinclude gemv_threads.cpp gemv_copy.cpp \
//       src/cpu/isa.cpp -Lbuild-cpu -llongctx -lopenblas
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>
#include "longctx/longctx.h"
#include "src/cpu/gemv.h"
using namespace longctx;
namespace longctx::cpu {
extern int64_t g_parallel_bytes;
}
static double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
int main() {
  Context two(Device::cpu(), 2);
  for (int64_t n : {128, 256, 384, 512, 724, 1024, 2048}) {
    std::vector<float> x(n, 0.5f), w(n * n, 0.25f), y(n);
    double best[2], med[2];
    for (int c = 0; c < 2; ++c) {
      cpu::g_parallel_bytes = c ? 0 : (int64_t(1) << 40);
      std::vector<double> t;
      for (int r = 0; r < 400; ++r) {
        double t0 = now();
        cpu::gemv(two, n, n, w.data(), x.data(), nullptr, y.data());
        t.push_back(1e6 * (now() - t0));
      }
      std::sort(t.begin(), t.end());
      best[c] = t[0];
      med[c] = t[t.size() / 2];
    }
    std::printf(
        "n %5lld (%6.0f KB): 1 thread %7.1f us best %7.1f median | 2 threads %7.1f best %7.1f "
        "median\n",
        (long long)n, n * n * 4 / 1024.0, best[0], med[0], best[1], med[1]);
  }
}
