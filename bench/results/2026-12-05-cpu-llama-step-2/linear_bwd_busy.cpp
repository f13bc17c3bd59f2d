// Probe (not part of the build): each thread's busy time inside linear_bwd (dx + dweight) at
// the llama preset's projection shapes, M = 4096 rows, 2 threads, x and dout cold (64 MB written
// between calls), with the library built with busy-instrumentation.diff applied (each work item's
// CLOCK_THREAD_CPUTIME_ID added to its thread's and its kind's sum; S8_OLD set: main's item
// mapping, one thread all of dx and the other all of dweight). Thread CPU time does not count the
// time a thread sleeps (passive workers) or is descheduled by other processes, so the slower
// thread's busy time is the call's wall time on an idle machine, whatever the load.
//   g++ -O2 -std=c++17 -fopenmp -I include linear_bwd_busy.cpp -Lbuild-cpu -llongctx -o busy
//   LD_LIBRARY_PATH=build-cpu OMP_WAIT_POLICY=passive ./busy 21; S8_OLD=1 ... ./busy 21
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include "longctx/longctx.h"
namespace longctx::cpu {
extern double g_busy[2][2];
extern double g_kind[2][2];
}  // namespace longctx::cpu
using namespace longctx;
int main(int argc, char** argv) {
  const int reps = atoi(argv[1]);
  std::vector<char> evict(64 << 20);
  const int64_t M = 4096;
  Context ctx(Device::cpu(), 2);
  const int64_t shapes[][2] = {{128, 128}, {64, 128}, {384, 128}, {128, 384}, {256, 128}};
  for (const auto& s : shapes) {
    const int64_t Cout = s[0], Cin = s[1];
    const Tensor x = Tensor::empty({M, Cin}, DType::f32),
                 w = Tensor::empty({Cout, Cin}, DType::f32);
    const Tensor dy = Tensor::empty({M, Cout}, DType::f32);
    x.fill(0.5), w.fill(0.25), dy.fill(0.125);
    Tensor dx = Tensor::empty({M, Cin}, DType::f32), dw = Tensor::empty({Cout, Cin}, DType::f32);
    linear_bwd(ctx, dx, dw, Tensor(), dy, x, w);
    std::memset(cpu::g_busy, 0, sizeof cpu::g_busy);
    std::memset(cpu::g_kind, 0, sizeof cpu::g_kind);
    for (int r = 0; r < reps; ++r) {
      std::memset(evict.data(), r, evict.size());
      linear_bwd(ctx, dx, dw, Tensor(), dy, x, w);
    }
    const char* v = getenv("S8_OLD") ? "old" : "new";
    int o = getenv("S8_OLD") ? 1 : 0;
    double a = cpu::g_busy[o][0] / reps * 1e6, b = cpu::g_busy[o][1] / reps * 1e6;
    printf("%s %4lldx%-4lld thread0 %6.0f us thread1 %6.0f us  max/mean %.3f  dx %6.0f dw %6.0f\n",
           v, (long long)Cout, (long long)Cin, a, b, 2 * std::max(a, b) / (a + b),
           cpu::g_kind[o][1] / reps * 1e6, cpu::g_kind[o][0] / reps * 1e6);
  }
}
