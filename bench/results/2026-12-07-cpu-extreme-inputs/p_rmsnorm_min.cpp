// Repros for rmsnorm (f32, CPU):
// (a) forward: a row whose sum of squares overflows f32 (every x = 1e19, C = 64: sum 6.4e39) gives
//     out = 0, rstd = 0 although the exact out = x / rms(x) * w = w = 1 and rstd = 1e-19.
// (b) backward: tiny rows with a tiny (valid, > 0) eps: rstd ~ 1e19-1e20 and the backward's
//     dot * rstd^3 / C overflows: dx = -inf/+inf/NaN although the exact dx is ~1e19.
#include "longctx/ops/rmsnorm.h"
#include "probe.h"
using namespace P;
int main() {
  Context ctx;
  const DType f = DType::f32;
  for (auto [C, xv] : {std::pair<int64_t, float>{64, 1e18f},
                       {64, 1e19f},
                       {4096, 2e17f},
                       {4096, 4e17f},
                       {1, 2e19f}}) {
    Tensor x = Tensor::empty({1, C}, f), w = Tensor::empty({C}, f), out = Tensor::empty({1, C}, f),
           rstd = Tensor::empty({1}, f);
    x.fill(xv);
    w.fill(1.0);
    rmsnorm_fwd(ctx, out, rstd, x, w, {1e-6});
    printf("(a) C=%-5lld x=%g: out[0]=%g (exact 1)  rstd=%g (exact %g)\n", (long long)C, double(xv),
           out.data_as<float>()[0], rstd.data_as<float>()[0], 1.0 / xv);
    Tensor h = Tensor::empty({1, C}, f), res = Tensor::zeros({1, C}, f);
    add_rmsnorm_fwd(ctx, out, h, rstd, x, res, w, {1e-6});
    printf("    add_rmsnorm_fwd: out[0]=%g\n", out.data_as<float>()[0]);
  }
  for (auto [xv, eps] :
       {std::pair<float, double>{1e-20f, 1e-45}, {1e-19f, 1e-40}, {3e-20f, 1e-39}}) {
    const int64_t C = 4;
    Tensor x = Tensor::empty({1, C}, f), w = Tensor::empty({C}, f), out = Tensor::empty({1, C}, f),
           rstd = Tensor::empty({1}, f);
    float xs[4] = {xv, -2 * xv, 0.5f * xv, xv};
    for (int i = 0; i < 4; ++i) x.data_as<float>()[i] = xs[i];
    w.fill(1.0);
    rmsnorm_fwd(ctx, out, rstd, x, w, {eps});
    Tensor dout = Tensor::empty({1, C}, f), dx = Tensor::empty({1, C}, f),
           dw = Tensor::empty({C}, f);
    float ds[4] = {1, 0.5f, -1, 0.25f};
    for (int i = 0; i < 4; ++i) dout.data_as<float>()[i] = ds[i];
    rmsnorm_bwd(ctx, dx, dw, dout, x, w, rstd, {eps});
    // exact in long double
    long double ss = 0, dot = 0;
    for (int i = 0; i < 4; ++i) {
      ss += (long double)xs[i] * xs[i];
      dot += (long double)ds[i] * xs[i];
    }
    long double r = 1 / std::sqrt(ss / C + (long double)(float)eps);
    printf("(b) x~%g eps=%g: rstd=%g (exact %Lg)  dx = [", double(xv), eps,
           rstd.data_as<float>()[0], r);
    for (int i = 0; i < 4; ++i) printf("%g ", dx.data_as<float>()[i]);
    printf("]  exact [");
    for (int i = 0; i < 4; ++i) printf("%Lg ", ds[i] * r - xs[i] * dot * r * r * r / C);
    printf("]\n");
    Tensor dh = Tensor::zeros({1, C}, f), dx2 = Tensor::empty({1, C}, f);
    add_rmsnorm_bwd(ctx, dx2, dw, dout, dh, x, w, rstd, {eps});
    printf("    add_rmsnorm_bwd dx[0]=%g\n", dx2.data_as<float>()[0]);
  }
}
