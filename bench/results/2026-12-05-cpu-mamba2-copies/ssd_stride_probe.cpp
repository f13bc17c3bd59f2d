// Probe (not part of the build): ssd_fwd and ssd_bwd at the mamba2 preset's mixer shapes (H = 8,
// P = 32, G = 1, N = 64, chunk 64, dt_softplus, D and dt_bias), batch·T = 4096, on contiguous
// x, dt, B, C (and gradients) against the same values read from (written into) the mixer's rows:
// x, B, C columns of a (B, T, 384) xBC, dt columns of a (B, T, 648) projection. Alternates the
// two `reps` times; prints the median CPU and wall ms of each. 2 threads.
//   g++ -O2 -std=c++17 -I include ssd_stride_probe.cpp -L<lib dir> -l:liblongctx.so.0 -o probe
//   LD_LIBRARY_PATH=<lib dir> OMP_WAIT_POLICY=passive ./probe 256,4096 7
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "longctx/longctx.h"
#include "longctx/ops/ssd.h"

using namespace longctx;

static Tensor filled(const Shape& shape, std::mt19937_64& rng, double lo, double hi) {
  Tensor t = Tensor::empty(shape, DType::f32);
  std::uniform_real_distribution<float> u{float(lo), float(hi)};
  for (int64_t i = 0; i < t.numel(); ++i) t.data_as<float>()[i] = u(rng);
  return t;
}

// Columns [at, at + prod(inner)) of a (B, T, R) tensor as (B, T, inner...).
static Tensor cols(const Tensor& t, int64_t at, const Shape& inner) {
  Shape shape = {t.size(0), t.size(1)}, strides = {t.stride(0), t.stride(1)};
  int64_t s = 1;
  for (const int64_t n : inner) s *= n;
  for (const int64_t n : inner) shape.push_back(n), strides.push_back(s /= n);
  return Tensor(t.data_as<float>() + at, DType::f32, Device::cpu(), shape, strides);
}

static std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(item);
  return out;
}

int main(int argc, char** argv) {
  const auto lengths = split(argc > 1 ? argv[1] : "256,4096");
  const int reps = argc > 2 ? std::atoi(argv[2]) : 7;
  Context ctx(Device::cpu(), 2);
  const int64_t H = 8, P = 32, G = 1, N = 64, Di = H * P, K = Di + 2 * G * N, W = Di + K + H;
  std::mt19937_64 rng(7);
  for (const auto& Ts : lengths) {
    const int64_t T = std::stoll(Ts), B = std::max<int64_t>(1, 4096 / T);
    const Tensor proj = filled({B, T, W}, rng, -3, 0.5), xbc = filled({B, T, K}, rng, -1, 1);
    SSDInputs strided;
    strided.x = cols(xbc, 0, {H, P});
    strided.B = cols(xbc, Di, {G, N});
    strided.C = cols(xbc, Di + G * N, {G, N});
    strided.dt = cols(proj, Di + K, {H});
    strided.A = filled({H}, rng, -2, -0.1);
    strided.D = filled({H}, rng, -1, 1);
    strided.dt_bias = filled({H}, rng, 0, 0.3);
    SSDInputs dense = strided;
    for (Tensor* t : {&dense.x, &dense.B, &dense.C, &dense.dt}) {
      Tensor c = Tensor::empty(t->shape(), DType::f32);
      c.copy_from(*t);
      *t = c;
    }
    const SSDParams params{64, true};
    const Tensor out = Tensor::empty({B, T, H, P}, DType::f32);
    const Tensor fin = Tensor::empty({B, H, P, N}, DType::f32);
    const Tensor dout = filled({B, T, H, P}, rng, -1, 1);
    const Tensor dxbc = Tensor::empty({B, T, K}, DType::f32);
    const Tensor dproj = Tensor::empty({B, T, W}, DType::f32);
    SSDGrads gs{cols(dxbc, 0, {H, P}),
                cols(dproj, Di + K, {H}),
                Tensor::empty({H}, DType::f32),
                cols(dxbc, Di, {G, N}),
                cols(dxbc, Di + G * N, {G, N}),
                Tensor::empty({H}, DType::f32),
                Tensor(),
                Tensor::empty({H}, DType::f32)};
    SSDGrads gd = gs;
    for (Tensor* t : {&gd.dx, &gd.ddt, &gd.dB, &gd.dC}) *t = Tensor::empty(t->shape(), DType::f32);
    // One input strided at a time, the others dense: which view costs what.
    SSDInputs only_x = dense, only_bc = dense, only_dt = dense;
    only_x.x = strided.x;
    only_bc.B = strided.B;
    only_bc.C = strided.C;
    only_dt.dt = strided.dt;
    SSDGrads g_x = gd, g_bc = gd, g_dt = gd;
    g_x.dx = gs.dx;
    g_bc.dB = gs.dB;
    g_bc.dC = gs.dC;
    g_dt.ddt = gs.ddt;
    constexpr int kinds = 10;
    std::vector<double> cpu[kinds], wall[kinds];
    for (int r = 0; r < reps; ++r)
      for (int k = 0; k < kinds; ++k) {
        const auto t0 = std::chrono::steady_clock::now();
        const std::clock_t c0 = std::clock();
        if (k == 0) ssd_fwd(ctx, out, fin, dense, params);
        if (k == 1) ssd_fwd(ctx, out, fin, strided, params);
        if (k == 2) ssd_bwd(ctx, gd, dout, Tensor(), dense, params);
        if (k == 3) ssd_bwd(ctx, gs, dout, Tensor(), strided, params);
        if (k == 4) ssd_fwd(ctx, out, fin, only_x, params);
        if (k == 5) ssd_fwd(ctx, out, fin, only_bc, params);
        if (k == 6) ssd_fwd(ctx, out, fin, only_dt, params);
        if (k == 7) ssd_bwd(ctx, g_x, dout, Tensor(), only_x, params);
        if (k == 8) ssd_bwd(ctx, g_bc, dout, Tensor(), only_bc, params);
        if (k == 9) ssd_bwd(ctx, g_dt, dout, Tensor(), only_dt, params);
        cpu[k].push_back(double(std::clock() - c0) / CLOCKS_PER_SEC * 1e3);
        wall[k].push_back(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() * 1e3);
      }
    const char* names[kinds] = {
        "fwd dense",    "fwd strided", "bwd dense",     "bwd strided",        "fwd x only",
        "fwd B,C only", "fwd dt only", "bwd x,dx only", "bwd B,C,dB,dC only", "bwd dt,ddt only"};
    for (int k = 0; k < kinds; ++k) {
      std::sort(cpu[k].begin(), cpu[k].end());
      std::sort(wall[k].begin(), wall[k].end());
      std::printf("T=%lld B=%lld %-18s %7.2f ms CPU %7.2f ms wall (median of %d)\n", (long long)T,
                  (long long)B, names[k], cpu[k][size_t(reps / 2)], wall[k][size_t(reps / 2)],
                  reps);
    }
  }
}
