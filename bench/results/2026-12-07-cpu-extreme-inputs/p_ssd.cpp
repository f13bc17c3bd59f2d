// ssd (Mamba-2) fwd/bwd with extreme decays / dt / states / chunk sizes (f32, CPU).
#include "longctx/ops/ssd.h"
#include "probe.h"
#include "reference/ssd.h"
using namespace P;
const DType dt32 = DType::f32;
struct Case {
  const char* name;
  int64_t B, T, H, P, N, G, chunk;
  bool softplus;
  double dtlo, dthi;
  std::vector<double> A;
  double h0scale;
  bool D, z;
  double xscale = 1;
};
void run(const Case& c, bool bwd = true) {
  Context ctx;
  Rng rng(505);
  ref::SSDRefs r;
  r.dt_softplus = c.softplus;
  r.x = rounded(random_ref({c.B, c.T, c.H, c.P}, rng, -c.xscale, c.xscale), dt32);
  r.dt = rounded(random_ref({c.B, c.T, c.H}, rng, c.dtlo, c.dthi), dt32);
  r.A = Ref({c.H});
  for (int64_t h = 0; h < c.H; ++h) r.A[h] = c.A[h % c.A.size()];
  r.A = rounded(r.A, dt32);
  r.B = rounded(random_ref({c.B, c.T, c.G, c.N}, rng), dt32);
  r.C = rounded(random_ref({c.B, c.T, c.G, c.N}, rng), dt32);
  if (c.D) r.D = rounded(random_ref({c.H}, rng), dt32);
  if (c.z) r.z = rounded(random_ref({c.B, c.T, c.H, c.P}, rng, -2, 2), dt32);
  if (c.h0scale > 0)
    r.initial_states = rounded(random_ref({c.B, c.H, c.P, c.N}, rng, -c.h0scale, c.h0scale), dt32);
  auto opt = [&](const Ref& x) { return x.numel() ? from_ref(x, dt32) : Tensor(); };
  SSDInputs in{from_ref(r.x, dt32),
               from_ref(r.dt, dt32),
               from_ref(r.A, dt32),
               from_ref(r.B, dt32),
               from_ref(r.C, dt32),
               opt(r.D),
               opt(r.z),
               Tensor(),
               opt(r.initial_states)};
  SSDParams params{c.chunk, c.softplus};
  Shape ss = {c.B, c.H, c.P, c.N};
  char buf[200];
  guard(c.name, [&] {
    Tensor out = Tensor::empty(r.x.shape, dt32), fin = Tensor::empty(ss, dt32);
    ssd_fwd(ctx, out, fin, in, params);
    auto ex = ref::ssd_fwd<Oracle>(r, no_round);
    auto nv = ref::ssd_fwd<float>(r, rounding_for(dt32));
    snprintf(buf, 200, "%s out", c.name);
    cmp(buf, out, ex.out, &nv.out);
    snprintf(buf, 200, "%s final", c.name);
    cmp(buf, fin, ex.final_states, &nv.final_states);
    if (!bwd) return;
    Ref dout = rounded(random_ref(r.x.shape, rng), dt32), dfin = rounded(random_ref(ss, rng), dt32);
    auto mk = [&](const Ref& like, const Shape& s) {
      return like.numel() ? Tensor::empty(s, dt32) : Tensor();
    };
    SSDGrads g{Tensor::empty(r.x.shape, dt32),
               Tensor::empty(r.dt.shape, dt32),
               Tensor::empty({c.H}, dt32),
               Tensor::empty(r.B.shape, dt32),
               Tensor::empty(r.C.shape, dt32),
               mk(r.D, {c.H}),
               mk(r.z, r.x.shape),
               Tensor(),
               mk(r.initial_states, ss)};
    ssd_bwd(ctx, g, from_ref(dout, dt32), from_ref(dfin, dt32), in, params);
    auto e = ref::ssd_bwd<Oracle>(dout, dfin, r, no_round);
    auto n = ref::ssd_bwd<float>(dout, dfin, r, rounding_for(dt32));
    snprintf(buf, 200, "%s dx", c.name);
    cmp(buf, g.dx, e.dx, &n.dx);
    snprintf(buf, 200, "%s ddt", c.name);
    cmp(buf, g.ddt, e.ddt, &n.ddt);
    snprintf(buf, 200, "%s dA", c.name);
    cmp(buf, g.dA, e.dA, &n.dA);
    snprintf(buf, 200, "%s dB", c.name);
    cmp(buf, g.dB, e.dB, &n.dB);
    snprintf(buf, 200, "%s dC", c.name);
    cmp(buf, g.dC, e.dC, &n.dC);
    if (r.D.numel()) {
      snprintf(buf, 200, "%s dD", c.name);
      cmp(buf, g.dD, e.dD, &n.dD);
    }
    if (r.z.numel()) {
      snprintf(buf, 200, "%s dz", c.name);
      cmp(buf, g.dz, e.dz, &n.dz);
    }
    if (r.initial_states.numel()) {
      snprintf(buf, 200, "%s dh0", c.name);
      cmp(buf, g.dinitial_states, e.dinitial_states, &n.dinitial_states);
    }
  });
}
int main(int argc, char** argv) {
  int which = argc > 1 ? atoi(argv[1]) : -1;
  std::vector<Case> cases = {
      {"near1 A=-1e-6 T=16384 chunk64 P8N16",
       1,
       16384,
       2,
       8,
       16,
       1,
       64,
       false,
       0.05,
       0.5,
       {-1e-6, -1e-7},
       1,
       true,
       true},
      {"near1 A=-1e-6 T=16384 chunk64 P2N4(scan bwd)",
       1,
       16384,
       2,
       2,
       4,
       1,
       64,
       false,
       0.05,
       0.5,
       {-1e-6, -1e-7},
       1,
       true,
       true},
      {"near0 A=-1e4 T=300 chunk32",
       1,
       300,
       2,
       8,
       16,
       1,
       32,
       false,
       0.05,
       0.5,
       {-1e4, -3e4},
       1,
       true,
       true},
      {"dt huge softplus dt 1e3..1e4 A=-1",
       1,
       200,
       2,
       8,
       16,
       1,
       64,
       true,
       1e3,
       1e4,
       {-1, -0.01},
       1,
       true,
       true},
      {"dt softplus -100..100 A=-1",
       1,
       200,
       2,
       8,
       16,
       1,
       16,
       true,
       -100,
       100,
       {-1, -1e-3},
       1,
       true,
       true},
      {"threshold straddle dtA~-2.4e-4 chunk64",
       1,
       500,
       4,
       8,
       16,
       1,
       64,
       false,
       0.9,
       1.1,
       {-2.44e-4, -2.5e-4, -2.3e-4, -1e-3},
       1,
       false,
       false},
      {"threshold straddle chunk16 dtA~-4e-3",
       1,
       500,
       4,
       8,
       16,
       1,
       16,
       false,
       0.9,
       1.1,
       {-3.9e-3, -4e-3, -4.2e-3, -1e-2},
       1,
       false,
       false},
      {"h0 1e30 A=-0.1",
       1,
       100,
       2,
       8,
       16,
       1,
       32,
       false,
       0.05,
       0.5,
       {-0.1, -1e-5},
       1e30,
       true,
       false},
      {"h0 1e30 near0 A=-1e3",
       1,
       100,
       2,
       8,
       16,
       1,
       32,
       false,
       0.05,
       0.5,
       {-1e3, -50},
       1e30,
       true,
       false},
      {"chunk1 T=37", 1, 37, 2, 8, 16, 1, 1, true, -3, 0.5, {-1, -0.1}, 1, true, true},
      {"chunk256 T=1000 N=256",
       1,
       1000,
       2,
       4,
       256,
       1,
       256,
       true,
       -3,
       0.5,
       {-1, -1e-4},
       1,
       true,
       true},
      {"dt=0 exactly A=-1", 1, 100, 2, 8, 16, 1, 32, false, 0.0, 0.0, {-1, -1e-4}, 1, true, false},
      {"A=0", 1, 200, 2, 8, 16, 1, 64, false, 0.05, 0.5, {0.0, -0.0}, 1, true, false},
      {"mixed A=-1e-7 & -80 near1 longT=65536",
       1,
       65536,
       2,
       8,
       16,
       1,
       64,
       false,
       0.05,
       0.5,
       {-1e-7, -80},
       1,
       true,
       true},
      {"x 1e15 scale",
       1,
       100,
       2,
       8,
       16,
       1,
       32,
       false,
       0.05,
       0.5,
       {-1, -1e-4},
       0,
       true,
       false,
       1e15},
      {"x 1e-30 scale",
       1,
       100,
       2,
       8,
       16,
       1,
       32,
       false,
       0.05,
       0.5,
       {-1, -1e-4},
       0,
       true,
       false,
       1e-30},
  };
  for (int i = 0; i < int(cases.size()); ++i)
    if (which < 0 || which == i) run(cases[i]);
  printf("flags=%d\n", g_flags);
}
