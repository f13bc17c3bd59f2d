// linear fwd/bwd: gemv (M=1), small-K kernel, OpenBLAS, bf16 weight; tiny (subnormal products) and
// huge values; embedding.
#include "longctx/ops/embedding.h"
#include "longctx/ops/linear.h"
#include "probe.h"
#include "reference/embedding.h"
#include "reference/linear.h"
using namespace P;
const DType f = DType::f32;
void lin(const char* name, int64_t M, int64_t Cin, int64_t Cout, double xs, double ws,
         bool bf16w = false) {
  Context ctx;
  Rng rng(31);
  Ref x = rounded(random_ref({M, Cin}, rng, -xs, xs), f),
      w = rounded(random_ref({Cout, Cin}, rng, -ws, ws), bf16w ? DType::bf16 : f),
      b = rounded(random_ref({Cout}, rng, -xs * ws, xs * ws), f);
  char buf[200];
  guard(name, [&] {
    Tensor out = Tensor::empty({M, Cout}, f);
    linear_fwd(ctx, out, from_ref(x, f), from_ref(w, bf16w ? DType::bf16 : f), from_ref(b, f));
    Ref e = ref::linear_fwd<Oracle>(x, w, b, no_round),
        n = ref::linear_fwd<float>(x, w, b, rounding_for(f));
    snprintf(buf, 200, "%s out", name);
    cmp(buf, out, e, &n);
    if (bf16w) return;
    Ref dout = rounded(random_ref({M, Cout}, rng), f);
    Tensor dx = Tensor::empty({M, Cin}, f), dw = Tensor::empty({Cout, Cin}, f),
           db = Tensor::empty({Cout}, f);
    linear_bwd(ctx, dx, dw, db, from_ref(dout, f), from_ref(x, f), from_ref(w, f));
    auto g = ref::linear_bwd<Oracle>(dout, x, w, no_round);
    auto gn = ref::linear_bwd<float>(dout, x, w, rounding_for(f));
    snprintf(buf, 200, "%s dx", name);
    cmp(buf, dx, g.dx, &gn.dx);
    snprintf(buf, 200, "%s dw", name);
    cmp(buf, dw, g.dweight, &gn.dweight);
    snprintf(buf, 200, "%s db", name);
    cmp(buf, db, g.dbias, &gn.dbias);
  });
}
int main() {
  for (auto [xs, ws, tag] : {std::tuple{1.0, 1.0, "unit"},
                             {1e-20, 1e-20, "subnormal products"},
                             {1e18, 1e18, "products 1e36"},
                             {1e-30, 1e30, "mixed 1e-30*1e30"}}) {
    char n[100];
    snprintf(n, 100, "gemv M=1 %s", tag);
    lin(n, 1, 300, 77, xs, ws);
    snprintf(n, 100, "smallK M=2048 K=4 %s", tag);
    lin(n, 2048, 4, 64, xs, ws);
    snprintf(n, 100, "blas M=64 K=300 %s", tag);
    lin(n, 64, 300, 50, xs, ws);
    snprintf(n, 100, "bf16w M=1 %s", tag);
    lin(n, 1, 300, 77, xs, ws, true);
    snprintf(n, 100, "bf16w M=33 %s", tag);
    lin(n, 33, 300, 77, xs, ws, true);
  }
  // embedding bwd: many repeats of one token, values with huge spread
  guard("embedding", [&] {
    Context ctx;
    Rng rng(5);
    const int64_t N = 100000, V = 3, C = 8;
    std::vector<int32_t> tok(N);
    for (auto& t : tok) t = int32_t(rng.integer(0, V - 1));
    Ref dout = rounded(random_ref({N, C}, rng), f);
    Tensor dt = Tensor::empty({V, C}, f);
    embedding_bwd(ctx, dt, from_ref(dout, f), int_tensor(tok, {N}));
    Ref e = ref::embedding_bwd<Oracle>(dout, tok, V, no_round),
        nn = ref::embedding_bwd<float>(dout, tok, V, rounding_for(f));
    cmp("embedding_bwd 100k tokens V=3", dt, e, &nn);
  });
  printf("flags=%d\n", g_flags);
}
