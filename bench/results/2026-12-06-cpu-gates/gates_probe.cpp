// The gate ops alone through the public API: rglru_gate forward and backward at Griffin/Hawk's
// bench_scan width (rows = B·T = 4096, D = 2560) and gdn_gate forward and backward at a Gated
// DeltaNet layer's (rows = 4096, HV = 16 heads, KDA's per-channel gate: D = 16 x 128). f32, best
// of 5 calls after one warm-up, 1 and 2 threads. Run against two builds of the library in
// alternation (LD_LIBRARY_PATH), as in README.md. From the repo root:
//   g++ -O2 -std=c++17 -Iinclude bench/results/2026-12-06-cpu-gates/gates_probe.cpp
//   -Lbuild-cpu -l:liblongctx.so.0 -o gates_probe
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <random>

#include "longctx/longctx.h"
#include "longctx/ops/gdn_gate.h"

using namespace longctx;

namespace {

Tensor uniform(const Shape& shape, std::mt19937& gen, float lo, float hi) {
  Tensor t = Tensor::empty(shape, DType::f32);
  std::uniform_real_distribution<float> u(lo, hi);
  float* p = t.data_as<float>();
  for (int64_t i = 0, n = t.numel(); i < n; ++i) p[i] = u(gen);
  return t;
}

double best_ms(const std::function<void()>& f) {
  f();
  double best = 1e30;
  for (int r = 0; r < 5; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(
        best,
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

}  // namespace

int main() {
  std::mt19937 gen(1);
  const int64_t rows = 4096, D = 2560;
  const Tensor x = uniform({rows, D}, gen, -1, 1), ga = uniform({rows, D}, gen, -3, 3);
  const Tensor gx = uniform({rows, D}, gen, -3, 3), lambda = uniform({D}, gen, -1, 2);
  const Tensor da = uniform({rows, D}, gen, -1, 1), db = uniform({rows, D}, gen, -1, 1);
  Tensor a = Tensor::empty({rows, D}, DType::f32), b = Tensor::empty({rows, D}, DType::f32);
  Tensor dx = Tensor::empty({rows, D}, DType::f32), dga = Tensor::empty({rows, D}, DType::f32);
  Tensor dgx = Tensor::empty({rows, D}, DType::f32), dl = Tensor::empty({D}, DType::f32);

  const int64_t HV = 16, K = 128, Dg = HV * K;
  const Tensor ag = uniform({rows, Dg}, gen, -4, 4), A_log = uniform({HV}, gen, -1, 1);
  const Tensor dt_bias = uniform({Dg}, gen, -1, 1), dg = uniform({rows, Dg}, gen, -1, 1);
  Tensor g = Tensor::empty({rows, Dg}, DType::f32), dag = Tensor::empty({rows, Dg}, DType::f32);
  Tensor dA = Tensor::empty({HV}, DType::f32), dbias = Tensor::empty({Dg}, DType::f32);

  for (int threads : {1, 2}) {
    Context ctx(Device::cpu(), threads);
    const double rf = best_ms([&] { rglru_gate_fwd(ctx, a, b, x, ga, gx, lambda); });
    const double rb =
        best_ms([&] { rglru_gate_bwd(ctx, dx, dga, dgx, dl, da, db, x, ga, gx, lambda); });
    const double gf = best_ms([&] { gdn_gate_fwd(ctx, g, ag, A_log, dt_bias); });
    const double gb = best_ms([&] { gdn_gate_bwd(ctx, dag, dA, dbias, dg, ag, A_log, dt_bias); });
    std::printf(
        "%d thread(s): rglru_gate fwd %7.2f ms (%5.1f ns/element) bwd %7.2f ms (%5.1f)   "
        "gdn_gate fwd %7.2f ms (%5.1f) bwd %7.2f ms (%5.1f)\n",
        threads, rf, rf * 1e6 / double(rows * D), rb, rb * 1e6 / double(rows * D), gf,
        gf * 1e6 / double(rows * Dg), gb, gb * 1e6 / double(rows * Dg));
  }
  return 0;
}
