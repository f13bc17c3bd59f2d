// MLP forward (llama preset: C = 128, F = 384, M = 4096 rows) whole vs in row blocks of R.
//   mlp_probe ROUNDS REPS R...
#include <time.h>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>
#include "longctx/longctx.h"
using namespace longctx;
static double now(clockid_t c) {
  timespec ts;
  clock_gettime(c, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}
static Tensor rnd(const Shape& s, std::mt19937& g, float a) {
  Tensor t = Tensor::empty(s, DType::f32);
  std::uniform_real_distribution<float> u(-a, a);
  for (int64_t i = 0; i < t.numel(); ++i) t.data_as<float>()[i] = u(g);
  return t;
}
static uint64_t hash(const Tensor& t) {
  uint64_t h = 1469598103934665603ull;
  const unsigned char* p = static_cast<const unsigned char*>(t.data());
  for (size_t i = 0; i < size_t(t.numel()) * 4; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}
int main(int argc, char** argv) {
  const int rounds = atoi(argv[1]), reps = atoi(argv[2]);
  std::vector<int64_t> Rs;
  for (int i = 3; i < argc; ++i) Rs.push_back(atoll(argv[i]));
  const int64_t M = 4096, C = 128, F = 384;
  std::mt19937 g(3);
  Context ctx(Device::cpu());
  Tensor x = rnd({M, C}, g, 1), wg = rnd({F, C}, g, 0.1f), wu = rnd({F, C}, g, 0.1f),
         wd = rnd({C, F}, g, 0.1f);
  Tensor y = Tensor::empty({M, C}, DType::f32);
  Tensor gate = Tensor::empty({M, F}, DType::f32), up = Tensor::empty({M, F}, DType::f32),
         hid = Tensor::empty({M, F}, DType::f32);
  std::vector<char> flush(64 << 20);
  auto run = [&](int64_t R) {
    if (R == 0) R = M;
    for (int64_t m0 = 0; m0 < M; m0 += R) {
      const int64_t n = std::min(R, M - m0);
      Tensor gb = gate.narrow(0, 0, n), ub = up.narrow(0, 0, n), hb = hid.narrow(0, 0, n);
      if (R == M) {
        gb = gate;
        ub = up;
        hb = hid;
      }
      linear_fwd(ctx, gb, x.narrow(0, m0, n), wg);
      linear_fwd(ctx, ub, x.narrow(0, m0, n), wu);
      swiglu_fwd(ctx, hb, gb, ub);
      linear_fwd(ctx, y.narrow(0, m0, n), hb, wd);
    }
  };
  for (int64_t R : Rs) {
    run(R);
    printf("R=%ld hash %016lx\n", long(R), (unsigned long)hash(y));
  }
  for (int r = 0; r < rounds; ++r) {
    printf("round %d:", r);
    for (int64_t R : Rs) {
      double bc = 1e30, bw = 1e30;
      for (int i = 0; i < reps; ++i) {
        memset(flush.data(), i, flush.size());
        const double w0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
        run(R);
        bc = std::min(bc, now(CLOCK_PROCESS_CPUTIME_ID) - c0);
        bw = std::min(bw, now(CLOCK_MONOTONIC) - w0);
      }
      printf("  R=%ld %.2f/%.2f ms", long(R), bw * 1e3, bc * 1e3);
    }
    printf("  (wall/CPU)\n");
  }
}
