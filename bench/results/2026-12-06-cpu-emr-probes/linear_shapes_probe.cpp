// The llama preset's 29 projection shapes of a training step at M = 4096: linear_fwd, linear_bwd
// (dx + dweight), linear_bwd (dweight only: dx empty), timed per call, CPU and wall.
#include <chrono>
#include <cstdio>
#include <ctime>
#include <random>
#include <vector>
#include "longctx/ops/linear.h"
using namespace longctx;
static double cpu_s() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}
static double wall_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
Tensor rnd(const Shape& s, std::mt19937& g) {
  Tensor t = Tensor::empty(s, DType::f32);
  std::uniform_real_distribution<float> u(-1, 1);
  float* p = t.data_as<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = u(g);
  return t;
}
int main(int argc, char** argv) {
  const int reps = argc > 1 ? atoi(argv[1]) : 10;
  const int64_t M = 4096;
  // (Cout, Cin, count): q, k, v, o per attention layer; gate, up, down per MLP; head
  struct S {
    int64_t cout, cin, n;
  } shapes[] = {{128, 128, 8}, {64, 128, 8}, {384, 128, 8}, {128, 384, 4}, {256, 128, 1}};
  Context ctx;
  std::mt19937 g(1);
  for (const char* what : {"fwd", "bwd", "dw"}) {
    double tc_all = 0, tw_all = 0;
    for (auto& s : shapes) {
      Tensor x = rnd({M, s.cin}, g), w = rnd({s.cout, s.cin}, g), dy = rnd({M, s.cout}, g);
      Tensor y = Tensor::empty({M, s.cout}, DType::f32), dx = Tensor::empty({M, s.cin}, DType::f32),
             dw = Tensor::empty({s.cout, s.cin}, DType::f32);
      auto call = [&] {
        if (what[0] == 'f')
          linear_fwd(ctx, y, x, w);
        else if (what[0] == 'b')
          linear_bwd(ctx, dx, dw, {}, dy, x, w);
        else
          linear_bwd(ctx, {}, dw, {}, dy, x, w);
      };
      call();
      double bc = 1e9, bw = 1e9;
      for (int r = 0; r < reps; ++r) {
        double c0 = cpu_s(), w0 = wall_s();
        call();
        bc = std::min(bc, cpu_s() - c0);
        bw = std::min(bw, wall_s() - w0);
      }
      printf("%s %4ld x %4ld: %7.1f us CPU %7.1f us wall  (%5.1f GFLOP/CPU-s)\n", what, s.cout,
             s.cin, bc * 1e6, bw * 1e6,
             2.0 * M * s.cout * s.cin * (what[0] == 'b' ? 2 : 1) / bc * 1e-9);
      tc_all += bc * s.n;
      tw_all += bw * s.n;
    }
    printf("%s: a step's 29 calls %.1f ms CPU, %.1f ms wall\n", what, tc_all * 1e3, tw_all * 1e3);
  }
}
