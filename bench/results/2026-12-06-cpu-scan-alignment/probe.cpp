// probe: selective_scan and ssd forward and backward, best-of-reps wall and process CPU time (ms).
// Build: g++ -O2 -std=c++17 -I<repo>/include -I<repo>/bench probe.cpp -L<build> -llongctx
// Run:   probe THREADS REPS [conv]  (the library picked by LD_LIBRARY_PATH, for an A/B of two
//        builds; "conv": causal_conv1d only, added after the scan runs)
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>

#include "common.h"
#include "longctx/longctx.h"

using namespace longctx;

static Tensor rnd(const Shape& s, bench::SplitMix64& g, float lo, float hi) {
  Tensor t = Tensor::empty(s, DType::f32);
  float* p = t.data_as<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = float(g.uniform(lo, hi));
  return t;
}

static double checksum(const Tensor& t) {
  const float* p = t.data_as<float>();
  double s = 0;
  for (int64_t i = 0; i < t.numel(); ++i) s += double(p[i]) * double(1 + (i % 7));
  return s;
}

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 1, reps = argc > 2 ? std::atoi(argv[2]) : 5;
  Context ctx(Device::cpu(), threads);
  bench::SplitMix64 g{7};
  const bool conv_only = argc > 3 && std::string(argv[3]) == "conv";
  auto time = [&](const char* name, const std::function<void()>& f, double cs) {
    f();
    double w = 1e30, c = 1e30;
    for (int i = 0; i < reps; ++i) {
      const double w0 = bench::now_s(), c0 = bench::cpu_s();
      f();
      c = std::min(c, bench::cpu_s() - c0);
      w = std::min(w, bench::now_s() - w0);
    }
    std::printf("%-10s wall %8.2f ms  cpu %8.2f ms  sum %.9e\n", name, 1e3 * w, 1e3 * c, cs);
  };
  if (conv_only) {  // causal_conv1d, channel-last (Mamba-2's xBC: 1536 + 2 * 128), W = 4, silu
    const int64_t D = 1792, T = 4096, W = 4;
    const Tensor x = rnd({1, T, D}, g, -1, 1), w = rnd({D, W}, g, -0.5f, 0.5f),
                 bias = rnd({D}, g, -0.5f, 0.5f), dout = rnd({1, T, D}, g, -1, 1);
    Tensor out = Tensor::empty({1, T, D}, DType::f32), dx = Tensor::empty({1, T, D}, DType::f32);
    Tensor dw = Tensor::empty({D, W}, DType::f32), db = Tensor::empty({D}, DType::f32);
    const CausalConv1dParams prm{Activation::silu, true};
    causal_conv1d_fwd(ctx, out, x, w, bias, prm);
    time(
        "conv_fwd", [&] { causal_conv1d_fwd(ctx, out, x, w, bias, prm); }, checksum(out));
    causal_conv1d_bwd(ctx, dx, dw, db, dout, x, w, bias, prm);
    time(
        "conv_bwd", [&] { causal_conv1d_bwd(ctx, dx, dw, db, dout, x, w, bias, prm); },
        checksum(dx) + checksum(dw) + checksum(db));
    return 0;
  }
  {  // selective_scan: mamba-130m widths (d_inner 1536, N = 16), T = 2048, D and z.
    const int64_t Dm = 1536, N = 16, T = 2048;
    SelectiveScanInputs in{rnd({1, Dm, T}, g, -1, 1),   rnd({1, Dm, T}, g, 0.01f, 0.2f),
                           rnd({Dm, N}, g, -2, -0.1f),  rnd({1, 1, N, T}, g, -1, 1),
                           rnd({1, 1, N, T}, g, -1, 1), rnd({Dm}, g, -1, 1),
                           rnd({1, Dm, T}, g, -1, 1)};
    Tensor out = Tensor::empty({1, Dm, T}, DType::f32),
           last = Tensor::empty({1, Dm, N}, DType::f32);
    selective_scan_fwd(ctx, out, last, in);
    time(
        "ss_fwd", [&] { selective_scan_fwd(ctx, out, last, in); }, checksum(out));
    Tensor dout = rnd({1, Dm, T}, g, -1, 1), dlast = rnd({1, Dm, N}, g, -1, 1);
    SelectiveScanGrads gr{
        Tensor::empty({1, Dm, T}, DType::f32),   Tensor::empty({1, Dm, T}, DType::f32),
        Tensor::empty({Dm, N}, DType::f32),      Tensor::empty({1, 1, N, T}, DType::f32),
        Tensor::empty({1, 1, N, T}, DType::f32), Tensor::empty({Dm}, DType::f32),
        Tensor::empty({1, Dm, T}, DType::f32)};
    selective_scan_bwd(ctx, gr, dout, dlast, in);
    time(
        "ss_bwd", [&] { selective_scan_bwd(ctx, gr, dout, dlast, in); },
        checksum(gr.du) + checksum(gr.ddelta) + checksum(gr.dA) + checksum(gr.dB) +
            checksum(gr.dC) + checksum(gr.dD) + checksum(gr.dz));
  }
  {  // ssd: mamba2-130m (24 heads of 64, N = 128, one group), chunk 64, T = 2048.
    const int64_t H = 24, P = 64, N = 128, T = 2048;
    SSDInputs in{rnd({1, T, H, P}, g, -1, 1), rnd({1, T, H}, g, 0.01f, 0.2f),
                 rnd({H}, g, -2, -0.1f), rnd({1, T, 1, N}, g, -1, 1), rnd({1, T, 1, N}, g, -1, 1)};
    Tensor out = Tensor::empty({1, T, H, P}, DType::f32),
           fin = Tensor::empty({1, H, P, N}, DType::f32);
    ssd_fwd(ctx, out, fin, in, {64});
    time(
        "ssd_fwd", [&] { ssd_fwd(ctx, out, fin, in, {64}); }, checksum(out) + checksum(fin));
    Tensor dout = rnd({1, T, H, P}, g, -1, 1), dfin = rnd({1, H, P, N}, g, -1, 1);
    SSDGrads gr{Tensor::empty({1, T, H, P}, DType::f32), Tensor::empty({1, T, H}, DType::f32),
                Tensor::empty({H}, DType::f32), Tensor::empty({1, T, 1, N}, DType::f32),
                Tensor::empty({1, T, 1, N}, DType::f32)};
    ssd_bwd(ctx, gr, dout, dfin, in, {64});
    time(
        "ssd_bwd", [&] { ssd_bwd(ctx, gr, dout, dfin, in, {64}); },
        checksum(gr.dx) + checksum(gr.ddt) + checksum(gr.dA) + checksum(gr.dB) + checksum(gr.dC));
  }
}
