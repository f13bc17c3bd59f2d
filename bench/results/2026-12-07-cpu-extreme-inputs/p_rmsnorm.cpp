// rmsnorm fwd/bwd at extreme row scales and tiny eps (f32, CPU).
#include "longctx/ops/rmsnorm.h"
#include "probe.h"
#include "reference/rmsnorm.h"
using namespace P;
void run(const char* name, double scale, double eps, int64_t C = 64, int64_t rows = 4) {
  Context ctx;
  Rng rng(7);
  DType dt = DType::f32;
  Ref x = rounded(random_ref({rows, C}, rng, -2, 2), dt);
  for (auto& v : x.v) v = double(float(v * scale));
  Ref w = rounded(random_ref({C}, rng, 0.5, 1.5), dt);
  Ref dout = rounded(random_ref({rows, C}, rng), dt);
  Tensor out = Tensor::empty({rows, C}, dt), rstd = Tensor::empty({rows}, dt);
  char buf[200];
  guard(name, [&] {
    rmsnorm_fwd(ctx, out, rstd, from_ref(x, dt), from_ref(w, dt), {eps});
    auto ex = ref::rmsnorm_fwd<Oracle>(x, w, eps, no_round);
    auto nv = ref::rmsnorm_fwd<float>(x, w, eps, rounding_for(dt));
    snprintf(buf, sizeof buf, "%s fwd out", name);
    cmp(buf, out, ex.out, &nv.out);
    snprintf(buf, sizeof buf, "%s fwd rstd", name);
    cmp(buf, rstd, ex.rstd, &nv.rstd);
    Tensor dx = Tensor::empty({rows, C}, dt), dw = Tensor::empty({C}, dt);
    rmsnorm_bwd(ctx, dx, dw, from_ref(dout, dt), from_ref(x, dt), from_ref(w, dt), rstd, {eps});
    auto g = ref::rmsnorm_bwd<Oracle>(dout, x, w, eps, no_round);
    auto gn = ref::rmsnorm_bwd<float>(dout, x, w, eps, rounding_for(dt));
    snprintf(buf, sizeof buf, "%s bwd dx", name);
    cmp(buf, dx, g.dx, &gn.dx);
    snprintf(buf, sizeof buf, "%s bwd dw", name);
    cmp(buf, dw, g.dweight, &gn.dweight);
    // add_rmsnorm
    Ref res = rounded(random_ref({rows, C}, rng, -2, 2), dt);
    for (auto& v : res.v) v = double(float(v * scale));
    Tensor h = Tensor::empty({rows, C}, dt), out2 = Tensor::empty({rows, C}, dt),
           rstd2 = Tensor::empty({rows}, dt);
    add_rmsnorm_fwd(ctx, out2, h, rstd2, from_ref(x, dt), from_ref(res, dt), from_ref(w, dt),
                    {eps});
    auto ex2 =
        ref::add_rmsnorm_fwd<Oracle>(x, res, w, eps, rounding_for(dt));  // h rounded as stored
    snprintf(buf, sizeof buf, "%s add_fwd out", name);
    cmp(buf, out2, ex2.out);
  });
}
int main() {
  run("normal", 1, 1e-6);
  run("tiny 1e-30 eps1e-6", 1e-30, 1e-6);
  run("tiny 1e-20 eps1e-45", 1e-20, 1e-45);
  run("tiny 1e-19 eps1e-40", 1e-19, 1e-40);
  run("tiny 1e-15 eps1e-38", 1e-15, 1e-38);
  run("tiny 1e-12 eps1e-30", 1e-12, 1e-30);
  run("tiny 1e-10 eps1e-30", 1e-10, 1e-30);
  run("huge 1e15", 1e15, 1e-6);
  run("huge 1e18", 1e18, 1e-6);
  run("huge 1e19", 1e19, 1e-6);
  run("huge 1e20", 1e20, 1e-6);
  run("huge 1e30", 1e30, 1e-6);
  run("huge 1e37", 1e37, 1e-6);
  printf("flags=%d\n", g_flags);
}
