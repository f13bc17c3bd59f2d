// monarch_project: a Monarch matrix scaled by s must project to itself (relative 1e-12, f64),
// and for f32 to within the test's bound. Scales from 1e-300 to 1e300 (f64), 1e-30..1e30 (f32).
#include "longctx/ops/monarch_linear.h"
#include "probe.h"
#include "reference/monarch_linear.h"
using namespace P;
static double fro(const Ref& a) {
  double s = 0, m = max_abs(a);
  if (m == 0) return 0;
  for (double x : a.v) s += (x / m) * (x / m);
  return m * std::sqrt(s);
}
int main() {
  Context ctx(Device::cpu());
  Rng rng(21);
  std::vector<MonarchShape> shapes = {{{4, 8, 8}, {4, 8, 8}},
                                      {{3, 4, 5}, {2, 7, 6}},
                                      {{1, 10, 6}, {1, 7, 10}},
                                      {{16, 2, 2}, {16, 2, 2}}};
  for (DType dt : {DType::f64, DType::f32}) {
    std::vector<double> scales =
        dt == DType::f64
            ? std::vector<double>{1e-300, 1e-200, 1e-160, 1e-150, 1e-100, 1e-80, 1e-75, 1,    1e75,
                                  1e77,   1e78,   1e80,   1e100,  1e150,  1e152, 1e160, 1e200}
            : std::vector<double>{1e-30, 1e-20, 1e-10, 1, 1e10, 1e20, 1e30, 1e35};
    for (auto& sh : shapes)
      for (double s : scales) {
        Ref w1 = random_ref(sh.w1, rng), w2 = random_ref(sh.w2, rng);
        Ref dense = ref::monarch_dense(w1, w2);
        for (double& v : dense.v) v *= s;
        dense = rounded(dense, dt);
        Tensor t1 = poisoned(sh.w1, dt, Device::cpu(), &ctx),
               t2 = poisoned(sh.w2, dt, Device::cpu(), &ctx);
        bool threw = false;
        try {
          monarch_project(ctx, t1, t2, from_ref(dense, dt));
        } catch (const std::exception& e) {
          printf("THROW %s\n", e.what());
          threw = true;
        }
        if (threw) continue;
        Ref back = ref::monarch_dense(to_ref(t1), to_ref(t2));
        Ref diff = back;
        for (int64_t i = 0; i < diff.numel(); ++i) diff[i] -= dense[i];
        double rel = fro(diff) / fro(dense);
        bool nf = false;
        for (double v : back.v) nf |= !std::isfinite(v);
        double lim = dt == DType::f64 ? 1e-12 : 1e-5;
        bool bad = nf || !(rel <= lim);
        if (bad) g_flags++;
        printf("%s %s w1%s w2%s scale=%g  rel_frob_err=%.3g nonfinite=%d\n",
               bad ? "**BAD**" : "  ok   ", dtype_name(dt), shape_str(sh.w1).c_str(),
               shape_str(sh.w2).c_str(), s, rel, nf);
      }
  }
  printf("flags=%d\n", g_flags);
}
