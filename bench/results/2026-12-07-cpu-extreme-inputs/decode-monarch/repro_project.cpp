// Minimal repro: monarch_project of a Monarch matrix (n = 4, 2 blocks: w1, w2 (2, 2, 2), so each
// 2x2 block of the dense weight is rank 1) must return the same matrix; f64, weight scaled by s.
#include "longctx/ops/monarch_linear.h"
#include "probe.h"
#include "reference/monarch_linear.h"
using namespace P;
int main() {
  Context ctx(Device::cpu());
  Ref f1({2, 2, 2}), f2({2, 2, 2});
  for (int i = 0; i < 8; ++i) {
    f1[i] = 1 + i;
    f2[i] = 0.5 + 0.25 * i;
  }
  const Ref dense = ref::monarch_dense(f1, f2);  // (4, 4)
  printf("dense = monarch_dense(w1 = 1..8, w2 = 0.5..2.25), row 0: %g %g %g %g\n", dense[0],
         dense[1], dense[2], dense[3]);
  for (double s : {1.0, 1e75, 1e77, 1e80, 1e150, 1e160, 1e-150, 1e-160, 1e-200}) {
    Ref w = dense;
    for (double& x : w.v) x *= s;
    Tensor w1 = Tensor::empty({2, 2, 2}, DType::f64), w2 = Tensor::empty({2, 2, 2}, DType::f64);
    monarch_project(ctx, w1, w2, from_ref(w, DType::f64));
    Ref back = ref::monarch_dense(to_ref(w1), to_ref(w2));
    double err = 0, mx = 0;
    for (int i = 0; i < 16; ++i) {
      err = std::max(err, std::abs(back[i] / s - dense[i]));
      mx = std::max(mx, std::abs(dense[i]));
    }
    printf("s=%-7g max|proj/s - dense| / max|dense| = %.3g   proj/s row 0: %.6g %.6g %.6g %.6g\n",
           s, err / mx, back[0] / s, back[1] / s, back[2] / s, back[3] / s);
  }
}
