// In-process A/B of attention_fwd / attention_bwd: library A (dlopen'ed copy, its own symbols)
// against the linked library B, calls alternating A, B, A, B ..., best of each round, CPU and wall.
//   attn_ab LIB_A ROUNDS REPS POINT [bwd]   (POINT: as probe.cpp of
//   ../2026-12-06-cpu-attention-short/; with a fifth argument the backward, its GFLOP counted
//   as 2.5x the forward's)
#include <dlfcn.h>
#include <time.h>
#include <cstdio>
#include <cstdlib>
#include <random>
#include "longctx/longctx.h"
using namespace longctx;
namespace {
double now(clockid_t c) {
  timespec ts;
  clock_gettime(c, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}
Tensor rnd(const Shape& shape, std::mt19937& gen) {
  Tensor t = Tensor::empty(shape, DType::f32);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (int64_t i = 0; i < t.numel(); ++i) t.data_as<float>()[i] = u(gen);
  return t;
}
double checksum(const Tensor& t) {
  double s = 0;
  for (int64_t i = 0; i < t.numel(); ++i) s += double(t.data_as<float>()[i]) * double(i % 7 + 1);
  return s;
}
}  // namespace
using Fwd = void (*)(const Context&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                     const Tensor&, const AttentionParams&, const Tensor&, const Tensor&);
using Bwd = void (*)(const Context&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                     const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                     const AttentionParams&, const Tensor&, const Tensor&);
int main(int argc, char** argv) {
  void* h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
  if (!h) {
    printf("dlopen: %s\n", dlerror());
    return 1;
  }
  const int rounds = atoi(argv[2]), reps = atoi(argv[3]), pt = atoi(argv[4]);
  const bool bwd = argc > 5;
  Fwd fA = (Fwd)dlsym(h,
                      "_ZN7longctx13attention_fwdERKNS_7ContextERKNS_6TensorES5_S5_S5_S5_RKNS_"
                      "15AttentionParamsES5_S5_");
  Fwd fB = static_cast<Fwd>(&attention_fwd);
  Bwd bA = (Bwd)dlsym(h,
                      "_ZN7longctx13attention_bwdERKNS_7ContextERKNS_6TensorES5_S5_S5_S5_S5_S5_S5_"
                      "S5_RKNS_15AttentionParamsES5_S5_");
  Bwd bB = static_cast<Bwd>(&attention_bwd);
  if (!fA || !bA) {
    printf("dlsym\n");
    return 1;
  }
  struct Point {
    int64_t B, T, H, Hkv, D;
    bool causal;
  };
  const Point points[] = {
      {16, 256, 4, 2, 32, true},  {8, 512, 8, 8, 64, false},  {4, 1024, 8, 8, 64, false},
      {2, 2048, 8, 8, 64, false}, {1, 4096, 8, 8, 64, false}, {8, 512, 8, 8, 64, true},
      {4, 1024, 8, 8, 64, true},  {2, 2048, 8, 8, 64, true},  {1, 4096, 8, 8, 64, true}};
  const Point p = points[pt];
  std::mt19937 gen(7);
  Tensor q = rnd({p.B, p.T, p.H, p.D}, gen), k = rnd({p.B, p.T, p.Hkv, p.D}, gen),
         v = rnd({p.B, p.T, p.Hkv, p.D}, gen);
  Tensor out = Tensor::empty({p.B, p.T, p.H, p.D}, DType::f32),
         lse = Tensor::empty({p.B, p.H, p.T}, DType::f32);
  AttentionParams params;
  params.causal = p.causal;
  Context ctx(Device::cpu());
  const double flops =
      (bwd ? 2.5 : 1.0) * 4.0 * p.B * p.T * p.T * p.H * p.D * (p.causal ? 0.5 : 1.0);
  Tensor dout = rnd(out.shape(), gen), dq = Tensor::empty(q.shape(), DType::f32),
         dk = Tensor::empty(k.shape(), DType::f32), dv = Tensor::empty(v.shape(), DType::f32);
  fB(ctx, out, lse, q, k, v, params, {}, {});
  auto call = [&](int a) {
    if (bwd)
      (a ? bB : bA)(ctx, dq, dk, dv, dout, q, k, v, out, lse, params, {}, {});
    else
      (a ? fB : fA)(ctx, out, lse, q, k, v, params, {}, {});
  };
  auto sum_of = [&] {
    return bwd ? checksum(dq) + checksum(dk) + checksum(dv) : checksum(out) + checksum(lse);
  };
  double sums[2];
  for (int a = 0; a < 2; ++a) {
    call(a);
    sums[a] = sum_of();
  }
  printf("checksums A %.12g B %.12g %s\n", sums[0], sums[1],
         sums[0] == sums[1] ? "same" : "DIFFER");
  int wins = 0;
  double ra[64], rb[64];
  for (int r = 0; r < rounds; ++r) {
    double bw[2] = {1e30, 1e30}, bc[2] = {1e30, 1e30};
    for (int i = 0; i < reps; ++i)
      for (int a = 0; a < 2; ++a) {
        const double w0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
        call(a);
        bc[a] = std::min(bc[a], now(CLOCK_PROCESS_CPUTIME_ID) - c0);
        bw[a] = std::min(bw[a], now(CLOCK_MONOTONIC) - w0);
      }
    ra[r] = bc[0];
    rb[r] = bc[1];
    wins += bc[1] < bc[0];
    printf("round %d: GFLOP/s wall A %.1f B %.1f  per CPU s A %.1f B %.1f  B/A(cpu time) %.3f\n", r,
           flops / bw[0] * 1e-9, flops / bw[1] * 1e-9, flops / bc[0] * 1e-9, flops / bc[1] * 1e-9,
           bc[1] / bc[0]);
  }
  printf("B faster (CPU) in %d of %d rounds\n", wins, rounds);
}
