// Probe (not part of the build): causal_conv1d forward and backward over the Mamba-2 preset's
// xBC (K = 384 channels, W = 4, silu; 4096 tokens as B x T), channel-first on contiguous
// (B, K, T) tensors against channel-last reading x and dout as rows of a (B, T, 648) projection
// and writing dx into one: median process CPU time of `reps` calls each, alternating, 2 threads.
//   g++ -O2 -std=c++17 -I include conv_layout_probe.cpp -L<lib dir> -l:liblongctx.so.0 -o probe
//   LD_LIBRARY_PATH=<lib dir> OMP_WAIT_POLICY=passive ./probe 15
#include <algorithm>
#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

#include "longctx/longctx.h"
#include "longctx/ops/causal_conv1d.h"

using namespace longctx;

static Tensor full(const Shape& shape, double value) {
  Tensor t = Tensor::empty(shape, DType::f32);
  t.fill(value);
  return t;
}

template <class F>
static double median_cpu_us(int reps, F&& f) {
  std::vector<double> cpu;
  for (int r = 0; r < reps; ++r) {
    const std::clock_t c0 = std::clock();
    f();
    cpu.push_back(double(std::clock() - c0) / CLOCKS_PER_SEC * 1e6);
  }
  std::sort(cpu.begin(), cpu.end());
  return cpu[size_t(reps / 2)];
}

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 15;
  Context ctx(Device::cpu(), 2);
  const int64_t K = 384, R = 648, W = 4;
  const Tensor w = full({K, W}, 0.1), bias = full({K}, 0.01);
  const Tensor dw = Tensor::empty({K, W}, DType::f32), db = Tensor::empty({K}, DType::f32);
  for (const int64_t T : {256, 1024, 4096}) {
    const int64_t B = 4096 / T;
    const Tensor x_first = full({B, K, T}, 0.5);
    const Tensor out_first = Tensor::empty({B, K, T}, DType::f32);
    const Tensor dx_first = Tensor::empty({B, K, T}, DType::f32);
    const Tensor proj = full({B, T, R}, 0.5);
    const Tensor dproj = Tensor::empty({B, T, R}, DType::f32);
    const Tensor out_last = Tensor::empty({B, T, K}, DType::f32);
    const Tensor dout_last = full({B, T, K}, 0.2);
    CausalConv1dParams first{Activation::silu}, last{Activation::silu};
    last.channel_last = true;
    double f1 = 0, f2 = 0, b1 = 0, b2 = 0;
    for (int round = 0; round < 2; ++round) {  // A, B, A, B: the second pair is reported
      f1 = median_cpu_us(reps, [&] { causal_conv1d_fwd(ctx, out_first, x_first, w, bias, first); });
      f2 = median_cpu_us(
          reps, [&] { causal_conv1d_fwd(ctx, out_last, proj.narrow(2, 256, K), w, bias, last); });
      b1 = median_cpu_us(reps, [&] {
        causal_conv1d_bwd(ctx, dx_first, dw, db, out_first, x_first, w, bias, first);
      });
      b2 = median_cpu_us(reps, [&] {
        causal_conv1d_bwd(ctx, dproj.narrow(2, 256, K), dw, db, dout_last, proj.narrow(2, 256, K),
                          w, bias, last);
      });
    }
    std::printf(
        "T=%lld B=%lld conv fwd: channel-first %.0f us CPU, channel-last %.0f | bwd: "
        "channel-first %.0f, channel-last %.0f\n",
        (long long)T, (long long)B, f1, f2, b1, b2);
  }
}
