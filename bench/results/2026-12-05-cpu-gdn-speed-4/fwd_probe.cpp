// The forward of gated_delta_rule alone (bench_gdn's inputs: B = 1, H = HV = 8, K = V = 128,
// k L2-normalised, g = log of decays in [0.9, 0.999], beta in [0.05, 1]), one thread, for perf
// and for A/B of two builds of the library (LD_LIBRARY_PATH) without the backward's time.
// Prints the best and the median process CPU time of `reps` runs after a warm-up.
//   g++ -O2 -std=c++17 -I<repo>/include fwd_probe.cpp -L<build> -llongctx -o fwd_probe
//   fwd_probe [reps] [T] [kda]
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <vector>

#include "longctx/longctx.h"

using namespace longctx;

namespace {

double cpu_s() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

Tensor filled(const Shape& shape, std::mt19937& gen, double lo, double hi) {
  Tensor t = Tensor::empty(shape, DType::f32, Device::cpu());
  std::uniform_real_distribution<float> u{float(lo), float(hi)};
  float* x = static_cast<float*>(t.data());
  for (int64_t i = 0; i < t.numel(); ++i) x[i] = u(gen);
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 10;
  const int64_t B = 1, T = argc > 2 ? std::atol(argv[2]) : 8192, H = 8, K = 128, V = 128;
  const bool kda = argc > 3 && std::atoi(argv[3]) != 0;
  const Context ctx(Device::cpu(), 1);
  std::mt19937 gen(2026);
  GatedDeltaRuleInputs x;
  x.q = filled({B, T, H, K}, gen, -1, 1);
  x.k = filled({B, T, H, K}, gen, -1, 1);
  float* k = static_cast<float*>(x.k.data());
  for (int64_t r = 0; r < B * T * H; ++r) {
    double ss = 0;
    for (int64_t c = 0; c < K; ++c) ss += double(k[r * K + c]) * k[r * K + c];
    for (int64_t c = 0; c < K; ++c) k[r * K + c] = float(k[r * K + c] / std::sqrt(ss));
  }
  x.v = filled({B, T, H, V}, gen, -1, 1);
  x.g = filled(kda ? Shape{B, T, H, K} : Shape{B, T, H}, gen, std::log(0.9), std::log(0.999));
  x.beta = filled({B, T, H}, gen, 0.05, 1);
  const GatedDeltaRuleParams params{0.0, false, 64};
  Tensor out = Tensor::empty({B, T, H, V}, DType::f32, Device::cpu());
  std::vector<double> t;
  for (int r = 0; r <= reps; ++r) {
    const double c0 = cpu_s();
    gated_delta_rule_fwd(ctx, out, Tensor(), x, params);
    if (r > 0) t.push_back(cpu_s() - c0);
  }
  std::sort(t.begin(), t.end());
  // FNV-1a over the output's bytes: equal hashes across builds = bitwise equal outputs.
  uint64_t hash = 1469598103934665603ull;
  const unsigned char* bytes = static_cast<const unsigned char*>(out.data());
  for (size_t i = 0; i < out.nbytes(); ++i) hash = (hash ^ bytes[i]) * 1099511628211ull;
  std::printf("forward T=%ld %s: best %.1f ms, median %.1f ms CPU (%d runs), output hash %016llx\n",
              long(T), kda ? "KDA" : "GDN", t.front() * 1e3, t[t.size() / 2] * 1e3, reps,
              (unsigned long long)hash);
}
