// selective_scan (Mamba-1), linear_scan, causal_conv1d at extreme inputs (f32, CPU).
#include "longctx/ops/causal_conv1d.h"
#include "longctx/ops/linear_scan.h"
#include "longctx/ops/selective_scan.h"
#include "probe.h"
#include "reference/causal_conv1d.h"
#include "reference/linear_scan.h"
#include "reference/selective_scan.h"
using namespace P;
const DType f = DType::f32;
void ss(const char* name, int64_t B, int64_t Dm, int64_t T, int64_t N, int64_t G, double Alo,
        double Ahi, double dlo, double dhi, bool sp, double h0s, bool z, double zr = 2) {
  Context ctx;
  Rng rng(21);
  ref::SelectiveScanRefs r;
  r.delta_softplus = sp;
  r.u = rounded(random_ref({B, Dm, T}, rng), f);
  r.delta = rounded(random_ref({B, Dm, T}, rng, dlo, dhi), f);
  r.A = rounded(random_ref({Dm, N}, rng, Alo, Ahi), f);
  r.B = rounded(random_ref({B, G, N, T}, rng), f);
  r.C = rounded(random_ref({B, G, N, T}, rng), f);
  r.D = rounded(random_ref({Dm}, rng), f);
  if (z) r.z = rounded(random_ref({B, Dm, T}, rng, -zr, zr), f);
  if (h0s > 0) r.h0 = rounded(random_ref({B, Dm, N}, rng, -h0s, h0s), f);
  auto opt = [&](const Ref& x) { return x.numel() ? from_ref(x, f) : Tensor(); };
  SelectiveScanInputs in{from_ref(r.u, f), from_ref(r.delta, f),
                         from_ref(r.A, f), from_ref(r.B, f),
                         from_ref(r.C, f), opt(r.D),
                         opt(r.z),         Tensor(),
                         opt(r.h0),        Tensor()};
  SelectiveScanParams p{sp};
  char buf[200];
  guard(name, [&] {
    Tensor out = Tensor::empty(r.u.shape, f), last = Tensor::empty({B, Dm, N}, f);
    selective_scan_fwd(ctx, out, last, in, p);
    auto ex = ref::selective_scan_fwd<Oracle>(r, no_round);
    auto nv = ref::selective_scan_fwd<float>(r, rounding_for(f));
    snprintf(buf, 200, "ss %s out", name);
    cmp(buf, out, ex.out, &nv.out);
    snprintf(buf, 200, "ss %s last", name);
    cmp(buf, last, ex.last_state, &nv.last_state);
    Ref dout = rounded(random_ref(r.u.shape, rng), f), dl = rounded(random_ref({B, Dm, N}, rng), f);
    SelectiveScanGrads g{Tensor::empty(r.u.shape, f),
                         Tensor::empty(r.u.shape, f),
                         Tensor::empty(r.A.shape, f),
                         Tensor::empty(r.B.shape, f),
                         Tensor::empty(r.C.shape, f),
                         Tensor::empty({Dm}, f),
                         z ? Tensor::empty(r.u.shape, f) : Tensor(),
                         Tensor(),
                         h0s > 0 ? Tensor::empty({B, Dm, N}, f) : Tensor()};
    selective_scan_bwd(ctx, g, from_ref(dout, f), from_ref(dl, f), in, p);
    auto e = ref::selective_scan_bwd<Oracle>(dout, dl, r, no_round);
    auto n = ref::selective_scan_bwd<float>(dout, dl, r, rounding_for(f));
    snprintf(buf, 200, "ss %s du", name);
    cmp(buf, g.du, e.du, &n.du);
    snprintf(buf, 200, "ss %s ddelta", name);
    cmp(buf, g.ddelta, e.ddelta, &n.ddelta);
    snprintf(buf, 200, "ss %s dA", name);
    cmp(buf, g.dA, e.dA, &n.dA);
    snprintf(buf, 200, "ss %s dB", name);
    cmp(buf, g.dB, e.dB, &n.dB);
    snprintf(buf, 200, "ss %s dC", name);
    cmp(buf, g.dC, e.dC, &n.dC);
    snprintf(buf, 200, "ss %s dD", name);
    cmp(buf, g.dD, e.dD, &n.dD);
    if (z) {
      snprintf(buf, 200, "ss %s dz", name);
      cmp(buf, g.dz, e.dz, &n.dz);
    }
    if (h0s > 0) {
      snprintf(buf, 200, "ss %s dh0", name);
      cmp(buf, g.dh0, e.dh0, &n.dh0);
    }
  });
}
void ls(const char* name, int64_t B, int64_t T, int64_t D, double alo, double ahi, double h0s) {
  Context ctx;
  Rng rng(22);
  Ref a = rounded(random_ref({B, T, D}, rng, alo, ahi), f),
      b = rounded(random_ref({B, T, D}, rng), f),
      h0 = rounded(random_ref({B, D}, rng, -h0s, h0s), f);
  char buf[200];
  guard(name, [&] {
    Tensor out = Tensor::empty({B, T, D}, f), last = Tensor::empty({B, D}, f);
    linear_scan_fwd(ctx, out, last, from_ref(a, f), from_ref(b, f), from_ref(h0, f));
    auto ex = ref::linear_scan_fwd<Oracle>(a, b, h0, no_round);
    auto nv = ref::linear_scan_fwd<float>(a, b, h0, rounding_for(f));
    snprintf(buf, 200, "ls %s out", name);
    cmp(buf, out, ex.out, &nv.out);
    Ref dout = rounded(random_ref({B, T, D}, rng), f), dl = rounded(random_ref({B, D}, rng), f);
    Tensor da = Tensor::empty({B, T, D}, f), db = Tensor::empty({B, T, D}, f),
           dh0 = Tensor::empty({B, D}, f);
    linear_scan_bwd(ctx, da, db, dh0, from_ref(dout, f), from_ref(dl, f), from_ref(a, f), out,
                    from_ref(h0, f));
    auto g = ref::linear_scan_bwd<Oracle>(dout, dl, a, b, h0, no_round);
    auto gn = ref::linear_scan_bwd<float>(dout, dl, a, b, h0, rounding_for(f));
    snprintf(buf, 200, "ls %s da", name);
    cmp(buf, da, g.da, &gn.da);
    snprintf(buf, 200, "ls %s db", name);
    cmp(buf, db, g.db, &gn.db);
    snprintf(buf, 200, "ls %s dh0", name);
    cmp(buf, dh0, g.dh0, &gn.dh0);
  });
}
void cc(const char* name, int64_t B, int64_t D, int64_t T, int64_t W, double xs, double ws,
        bool silu, bool channel_last) {
  Context ctx;
  Rng rng(23);
  Ref x = rounded(random_ref({B, D, T}, rng, -xs, xs), f),
      w = rounded(random_ref({D, W}, rng, -ws, ws), f), bias = rounded(random_ref({D}, rng), f),
      dout = rounded(random_ref({B, D, T}, rng), f);
  char buf[200];
  guard(name, [&] {
    CausalConv1dParams p;
    p.activation = silu ? Activation::silu : Activation::none;
    p.channel_last = channel_last;
    auto to_layout = [&](const Ref& r) {
      if (!channel_last) return from_ref(r, f);
      Ref t({B, T, D});
      for (int64_t b = 0; b < B; ++b)
        for (int64_t d = 0; d < D; ++d)
          for (int64_t s = 0; s < T; ++s) t[(b * T + s) * D + d] = r[(b * D + d) * T + s];
      return from_ref(t, f);
    };
    auto from_layout = [&](const Tensor& t) {
      Ref r = to_ref(t);
      if (!channel_last) return r;
      Ref o({B, D, T});
      for (int64_t b = 0; b < B; ++b)
        for (int64_t d = 0; d < D; ++d)
          for (int64_t s = 0; s < T; ++s) o[(b * D + d) * T + s] = r[(b * T + s) * D + d];
      return o;
    };
    Shape sh = channel_last ? Shape{B, T, D} : Shape{B, D, T};
    Tensor out = Tensor::empty(sh, f);
    causal_conv1d_fwd(ctx, out, to_layout(x), from_ref(w, f), from_ref(bias, f), p);
    Ref e = ref::causal_conv1d_fwd<Oracle>(x, w, bias, silu, no_round),
        n = ref::causal_conv1d_fwd<float>(x, w, bias, silu, rounding_for(f));
    snprintf(buf, 200, "cc %s out", name);
    cmp(buf, from_layout(out), e, &n);
    Tensor dx = Tensor::empty(sh, f), dw = Tensor::empty({D, W}, f), dbb = Tensor::empty({D}, f);
    causal_conv1d_bwd(ctx, dx, dw, dbb, to_layout(dout), to_layout(x), from_ref(w, f),
                      from_ref(bias, f), p);
    auto g = ref::causal_conv1d_bwd<Oracle>(dout, x, w, bias, silu, no_round);
    auto gn = ref::causal_conv1d_bwd<float>(dout, x, w, bias, silu, rounding_for(f));
    snprintf(buf, 200, "cc %s dx", name);
    cmp(buf, from_layout(dx), g.dx, &gn.dx);
    snprintf(buf, 200, "cc %s dw", name);
    cmp(buf, dw, g.dweight, &gn.dweight);
    snprintf(buf, 200, "cc %s db", name);
    cmp(buf, dbb, g.dbias, &gn.dbias);
  });
}
int main(int argc, char** argv) {
  int which = argc > 1 ? atoi(argv[1]) : -1;
  if (which < 0 || which == 0) {
    ss("near1 A~-1e-6 T=65536", 1, 4, 65536, 16, 1, -2e-6, -1e-7, 0.05, 0.5, false, 1, true);
    ss("near0 A=-1e4", 1, 8, 300, 16, 2, -2e4, -1e4, 0.05, 0.5, false, 1, true);
    ss("softplus delta +-100", 1, 8, 300, 16, 1, -2, -0.1, -100, 100, true, 1, true);
    ss("delta 1e4 softplus A=-1", 1, 8, 300, 16, 1, -1, -0.5, 1e3, 1e4, true, 1, true);
    ss("z +-1e4, h0 1e20", 1, 8, 200, 16, 1, -2, -0.1, 0.05, 0.5, false, 1e20, true, 1e4);
    ss("N=256 G=2", 1, 4, 100, 256, 2, -2, -0.1, 0.05, 0.5, true, 1, true);
  }
  if (which < 0 || which == 1) {
    ls("a~1-1e-7 T=65536", 1, 65536, 16, 1 - 1e-6, 1 - 1e-7, 1);
    ls("a~1e-30", 2, 500, 16, 1e-30, 1e-29, 1e30);
    ls("a in [-1,1] h0 1e35", 2, 500, 16, -1, 1, 1e35);
  }
  if (which < 0 || which == 2) {
    cc("silu preact +-1e4", 1, 16, 100, 4, 1e4, 1, true, false);
    cc("silu preact ~ +-90 ch-last", 1, 16, 100, 4, 30, 1, true, true);
    cc("x 1e30 no act", 1, 16, 100, 3, 1e30, 1, false, false);
    cc("x 1e-30 silu W=1", 1, 16, 100, 1, 1e-30, 1, true, true);
  }
  printf("flags=%d\n", g_flags);
}
