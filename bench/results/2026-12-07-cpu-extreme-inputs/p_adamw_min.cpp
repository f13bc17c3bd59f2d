// Repro: adamw_step, first step from m = v = 0, grad = 1, weight_decay 0, lr = 1, eps tiny.
// Exact update: param = -lr * (m/bc1) / (sqrt(v/bc2) + eps) = -1 (to ~1e-12 with eps = 1e-12).
// The op rounds beta1/beta2 to f32 before forming (1 - beta) for m and v, but takes the bias
// corrections 1 - beta^step from the double betas, so the two disagree.
#include "longctx/ops/adamw.h"
#include "probe.h"
using namespace P;
int main() {
  Context ctx;
  for (double b1 : {0.9, 0.99})
    for (double b2 : {0.95, 0.999, 0.9999, 0.99999, 0.9999999}) {
      Tensor p = Tensor::zeros({1}, DType::f32), m = Tensor::zeros({1}, DType::f32),
             v = Tensor::zeros({1}, DType::f32), g = Tensor::empty({1}, DType::f32);
      g.data_as<float>()[0] = 1.f;
      AdamWParams ap;
      ap.lr = 1;
      ap.beta1 = b1;
      ap.beta2 = b2;
      ap.eps = 1e-12;
      ap.weight_decay = 0;
      ap.step = 1;
      adamw_step(ctx, p, m, v, g, ap);
      const double got = p.data_as<float>()[0];
      // f64 run of the op, for comparison
      Tensor p64 = Tensor::zeros({1}, DType::f64), m64 = Tensor::zeros({1}, DType::f64),
             v64 = Tensor::zeros({1}, DType::f64), g64 = Tensor::empty({1}, DType::f64);
      g64.data_as<double>()[0] = 1.0;
      adamw_step(ctx, p64, m64, v64, g64, ap);
      printf(
          "beta1=%-5g beta2=%-9g  f32 param=%.9g  (exact -1, f64 op %.12g)  rel err %.3g = %.0f "
          "ulp\n",
          b1, b2, got, p64.data_as<double>()[0], std::abs(got + 1), std::abs(got + 1) / 0x1p-24);
    }
}
