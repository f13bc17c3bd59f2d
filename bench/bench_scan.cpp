// bench_scan: the recurrent ops and the RG-LRU gates (forward) over T = 1k ... 64k on the CPU (256k
// on CUDA) at Mamba-like widths; GB/s against the bytes each op must move (every input read once,
// every output written once). On the CPU side by side with a plain single-threaded sequential loop
// (its time and GB/s, up to --plain-max-t; ssd's plain loop, ~100x the work per byte, to a
// quarter of that). Each op is first checked against the plain loop at T = 1024 (on CUDA too,
// the loop run on the host). Plus the SSD target point (B=1, T=512, H=48, P=64, N=128, G=1, f32).
// Each op's time is also set against its copy floor (common.h): its bytes over the copy
// bandwidth measured at the start of the same run ("floor %" = floor time / op time).
//
//   bench_scan [--device cpu|cuda[:N]] [--json results.json] [--max-t 65536 (CUDA: 262144)]
//              [--plain-max-t 16384] [--reps 3] [--threads 0 (all)]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common.h"
#include "longctx/longctx.h"

using namespace longctx;
using bench::cpu_s;
using bench::now_s;

namespace {

// Best of `reps` runs after one warm-up, in seconds.
double time_best(const std::function<void()>& f, int reps) {
  f();
  double best = 1e30;
  for (int i = 0; i < reps; ++i) {
    const double t0 = now_s();
    f();
    best = std::min(best, now_s() - t0);
  }
  return best;
}

Tensor rand_t(const Shape& s, bench::SplitMix64& g, float lo, float hi) {
  Tensor t = Tensor::empty(s, DType::f32);
  float* p = t.data_as<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = float(g.uniform(lo, hi));
  return t;
}

float max_rel_diff(const Tensor& a, const std::vector<float>& b) {
  const float* p = a.data_as<float>();
  float m = 0, scale = 1e-6f;
  for (size_t i = 0; i < b.size(); ++i) scale = std::max(scale, std::abs(b[i]));
  for (size_t i = 0; i < b.size(); ++i) m = std::max(m, std::abs(p[i] - b[i]));
  return m / scale;
}

struct Row {
  std::string op, config;
  int64_t T;
  double bytes, ms, plain_ms;  // plain_ms < 0: not run
};

double gb_per_s(double bytes, double ms) {
  return bytes / (ms * 1e-3) / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  std::string json_path, device_arg = "cpu";
  int64_t max_t = 0, plain_max_t = 16384;  // max_t 0: 64k on the CPU, 256k on CUDA
  int reps = 3, threads = 0;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--json") && i + 1 < argc)
      json_path = argv[++i];
    else if (!std::strcmp(argv[i], "--device") && i + 1 < argc)
      device_arg = argv[++i];
    else if (!std::strcmp(argv[i], "--max-t") && i + 1 < argc)
      max_t = std::atoll(argv[++i]);
    else if (!std::strcmp(argv[i], "--plain-max-t") && i + 1 < argc)
      plain_max_t = std::atoll(argv[++i]);
    else if (!std::strcmp(argv[i], "--reps") && i + 1 < argc)
      reps = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--threads") && i + 1 < argc)
      threads = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr,
                   "usage: bench_scan [--device cpu|cuda[:N]] [--json FILE] [--max-t T] "
                   "[--plain-max-t T] [--reps N] [--threads N]\n");
      return 2;
    }
  }
  Device dev;
  std::string device_name = "cpu";
  try {
    dev = parse_device(device_arg);
    if (dev.is_cuda()) {
      const CudaStatus st = cuda_status();
      if (!st.available()) throw Error("no usable CUDA device: " + st.reason);
      if (dev.index >= int(st.devices.size())) throw Error("no device " + device_arg);
      device_name = st.devices[size_t(dev.index)].name;
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_scan: %s\n", e.what());
    return 2;
  }
  if (max_t == 0) max_t = dev.is_cpu() ? 65536 : 262144;
  // The plain loop is a CPU baseline: on CUDA it runs only for the correctness check.
  if (dev.is_cuda()) plain_max_t = 0;
  Context ctx(dev, threads);
  // 1 GiB buffers on the GPU (17x its 60 MB L2); 256 MiB on the CPU.
  const int64_t copy_bytes = dev.is_cuda() ? int64_t(1) << 30 : int64_t(256) << 20;
  const double copy_gbps = bench::copy_gb_per_s(ctx, copy_bytes, reps);
  std::printf("copy bandwidth on %s: %.1f GB/s (read + write, %lld MiB buffers)\n",
              device_name.c_str(), copy_gbps, static_cast<long long>(copy_bytes >> 20));
  // Inputs are drawn on the host and copied; outputs are read back on the host for the checks.
  auto on_dev = [&](const Tensor& host) { return dev.is_cpu() ? host : host.to(dev, &ctx); };
  auto on_host = [&](const Tensor& t) { return dev.is_cpu() ? t : t.to(Device::cpu(), &ctx); };
  auto empty = [&](const Shape& shape) { return Tensor::empty(shape, DType::f32, dev, &ctx); };
  // Best time of an op call, including the wait for the device.
  auto time_op = [&](const std::function<void()>& f) {
    return 1e3 * time_best(
                     [&] {
                       f();
                       ctx.synchronize();
                     },
                     reps);
  };
  bench::SplitMix64 gen{1};
  std::vector<Row> rows;
  bool checks_ok = true;
  auto check = [&](const char* op, float err) {
    const bool ok = err < 1e-3f;
    std::printf("check %-16s max |op - plain loop| / max |plain| = %.2e %s\n", op, err,
                ok ? "ok" : "FAILED");
    checks_ok = checks_ok && ok;
  };

  for (int64_t T = 1024; T <= max_t; T *= 4) {
    // ---- linear_scan: Griffin-2B's RG-LRU width 2560.
    {
      const int64_t D = 2560;
      const Tensor ah = rand_t({1, T, D}, gen, 0.9f, 1.f), bh = rand_t({1, T, D}, gen, -1, 1);
      const Tensor a = on_dev(ah), b = on_dev(bh);
      const Tensor out = empty({1, T, D}), last = empty({1, D});
      const bool run_plain = T <= plain_max_t || T == 1024;
      std::vector<float> ref(run_plain ? size_t(T * D) : 0), h(static_cast<size_t>(D));
      auto plain = [&, a = ah, b = bh] {
        std::fill(h.begin(), h.end(), 0.f);
        const float* ap = a.data_as<float>();
        const float* bp = b.data_as<float>();
        for (int64_t t = 0; t < T; ++t)
          for (int64_t d = 0; d < D; ++d) {
            h[size_t(d)] = ap[t * D + d] * h[size_t(d)] + bp[t * D + d];
            ref[size_t(t * D + d)] = h[size_t(d)];
          }
      };
      const double ms = time_op([&] { linear_scan_fwd(ctx, out, last, a, b); });
      const double pms = T <= plain_max_t ? 1e3 * time_best(plain, reps) : -1;
      if (T == 1024) {
        if (pms < 0) plain();
        check("linear_scan", max_rel_diff(on_host(out), ref));
      }
      rows.push_back({"linear_scan_fwd", "B=1 D=2560", T, 3.0 * T * D * 4, ms, pms});
    }
    // ---- rglru_gate: the gates feeding that recurrence, same width; elementwise.
    {
      const int64_t D = 2560;
      const Tensor xh = rand_t({1, T, D}, gen, -1, 1), gah = rand_t({1, T, D}, gen, -3, 3);
      const Tensor gxh = rand_t({1, T, D}, gen, -3, 3), lh = rand_t({D}, gen, -1, 2);
      const Tensor x = on_dev(xh), gate_a = on_dev(gah), gate_x = on_dev(gxh), lambda = on_dev(lh);
      const Tensor a = empty({1, T, D}), b = empty({1, T, D});
      const bool run_plain = T <= plain_max_t || T == 1024;
      std::vector<float> ref(run_plain ? size_t(T * D) : 0);
      auto plain = [&] {
        const float *xp = xh.data_as<float>(), *gap = gah.data_as<float>();
        const float *gxp = gxh.data_as<float>(), *lp = lh.data_as<float>();
        for (int64_t t = 0; t < T; ++t)
          for (int64_t d = 0; d < D; ++d) {
            const int64_t i = t * D + d;
            const float softplus = std::log1p(std::exp(lp[d]));
            const float log_a = -8.f / (1.f + std::exp(-gap[i])) * softplus;
            const float gate_x = 1.f / (1.f + std::exp(-gxp[i]));
            ref[size_t(i)] = std::sqrt(-std::expm1(2 * log_a)) * gate_x * xp[i];  // b
          }
      };
      const double ms = time_op([&] { rglru_gate_fwd(ctx, a, b, x, gate_a, gate_x, lambda); });
      const double pms = T <= plain_max_t ? 1e3 * time_best(plain, reps) : -1;
      if (T == 1024) {
        if (pms < 0) plain();
        check("rglru_gate", max_rel_diff(on_host(b), ref));
      }
      // Reads x, gate_a, gate_x (and D lambdas), writes a and b.
      rows.push_back({"rglru_gate_fwd", "B=1 D=2560", T, 5.0 * T * D * 4, ms, pms});
    }
    // ---- causal_conv1d: mamba-130m's d_inner 1536, width 4, silu.
    {
      const int64_t D = 1536, W = 4;
      const Tensor xh = rand_t({1, D, T}, gen, -1, 1), wh = rand_t({D, W}, gen, -1, 1);
      const Tensor biash = rand_t({D}, gen, -1, 1);
      const Tensor x = on_dev(xh), w = on_dev(wh), bias = on_dev(biash), out = empty({1, D, T});
      const bool run_plain = T <= plain_max_t || T == 1024;
      std::vector<float> ref(run_plain ? size_t(T * D) : 0);
      auto plain = [&, x = xh, w = wh, bias = biash] {
        const float* xp = x.data_as<float>();
        const float* wp = w.data_as<float>();
        const float* bp = bias.data_as<float>();
        for (int64_t d = 0; d < D; ++d)
          for (int64_t t = 0; t < T; ++t) {
            float s = bp[d];
            for (int64_t k = 0; k < W; ++k)
              if (t - (W - 1) + k >= 0) s += wp[d * W + k] * xp[d * T + t - (W - 1) + k];
            ref[size_t(d * T + t)] = s / (1.f + std::exp(-s));
          }
      };
      const double ms =
          time_op([&] { causal_conv1d_fwd(ctx, out, x, w, bias, {Activation::silu}); });
      const double pms = T <= plain_max_t ? 1e3 * time_best(plain, reps) : -1;
      if (T == 1024) {
        if (pms < 0) plain();
        check("causal_conv1d", max_rel_diff(on_host(out), ref));
      }
      rows.push_back({"causal_conv1d_fwd", "B=1 D=1536 W=4 silu", T, 2.0 * T * D * 4, ms, pms});
    }
    // ---- selective_scan: mamba-130m's N = 16, d_inner 1536 / 4 (the plain loop is slow).
    {
      const int64_t Dm = 384, N = 16;
      const Tensor uh = rand_t({1, Dm, T}, gen, -1, 1);
      const Tensor deltah = rand_t({1, Dm, T}, gen, 0.01f, 0.2f);
      const Tensor Ah = rand_t({Dm, N}, gen, -2, -0.1f), Bh = rand_t({1, 1, N, T}, gen, -1, 1);
      const Tensor Ch = rand_t({1, 1, N, T}, gen, -1, 1), Dh = rand_t({Dm}, gen, -1, 1);
      const Tensor zh = rand_t({1, Dm, T}, gen, -1, 1);
      const Tensor out = empty({1, Dm, T}), last = empty({1, Dm, N});
      const bool run_plain = T <= plain_max_t || T == 1024;
      std::vector<float> ref(run_plain ? size_t(T * Dm) : 0), h(static_cast<size_t>(N));
      auto plain = [&, u = uh, delta = deltah, A = Ah, B = Bh, C = Ch, D = Dh, z = zh] {
        const float *up = u.data_as<float>(), *dp = delta.data_as<float>(),
                    *Ap = A.data_as<float>();
        const float *Bp = B.data_as<float>(), *Cp = C.data_as<float>(), *Dp = D.data_as<float>();
        const float* zp = z.data_as<float>();
        for (int64_t d = 0; d < Dm; ++d) {
          std::fill(h.begin(), h.end(), 0.f);
          for (int64_t t = 0; t < T; ++t) {
            const float dt = dp[d * T + t], ut = up[d * T + t];
            float y = 0;
            for (int64_t n = 0; n < N; ++n) {
              h[size_t(n)] = std::exp(dt * Ap[d * N + n]) * h[size_t(n)] + dt * ut * Bp[n * T + t];
              y += Cp[n * T + t] * h[size_t(n)];
            }
            y += Dp[d] * ut;
            const float zv = zp[d * T + t];
            ref[size_t(d * T + t)] = y * zv / (1.f + std::exp(-zv));
          }
        }
      };
      const SelectiveScanInputs in{on_dev(uh), on_dev(deltah), on_dev(Ah), on_dev(Bh),
                                   on_dev(Ch), on_dev(Dh),     on_dev(zh)};
      const double ms = time_op([&] { selective_scan_fwd(ctx, out, last, in); });
      const double pms = T <= plain_max_t ? 1e3 * time_best(plain, reps) : -1;
      if (T == 1024) {
        if (pms < 0) plain();
        check("selective_scan", max_rel_diff(on_host(out), ref));
      }
      rows.push_back({"selective_scan_fwd", "B=1 Dm=384 N=16 G=1 D z", T,
                      (4.0 * Dm * T + 2.0 * N * T) * 4, ms, pms});
    }
    // ---- ssd: mamba2-130m (24 heads of 64, N = 128, one group), chunk 64.
    {
      const int64_t H = 24, P = 64, N = 128;
      const Tensor xh = rand_t({1, T, H, P}, gen, -1, 1);
      const Tensor dth = rand_t({1, T, H}, gen, 0.01f, 0.2f);
      const Tensor Ah = rand_t({H}, gen, -2, -0.1f), Bh = rand_t({1, T, 1, N}, gen, -1, 1);
      const Tensor Ch = rand_t({1, T, 1, N}, gen, -1, 1);
      const Tensor out = empty({1, T, H, P}), fin = empty({1, H, P, N});
      const int64_t plain_t = plain_max_t / 4;
      const bool run_plain = T <= plain_t || T == 1024;
      std::vector<float> ref(run_plain ? size_t(T * H * P) : 0), h(static_cast<size_t>(P * N));
      auto plain = [&, x = xh, dt = dth, A = Ah, B = Bh, C = Ch] {
        const float *xp = x.data_as<float>(), *dtp = dt.data_as<float>(), *Ap = A.data_as<float>();
        const float *Bp = B.data_as<float>(), *Cp = C.data_as<float>();
        for (int64_t hd = 0; hd < H; ++hd) {
          std::fill(h.begin(), h.end(), 0.f);
          for (int64_t t = 0; t < T; ++t) {
            const float d = dtp[t * H + hd], e = std::exp(d * Ap[hd]);
            for (int64_t p = 0; p < P; ++p) {
              const float dx = d * xp[(t * H + hd) * P + p];
              float y = 0;
              for (int64_t n = 0; n < N; ++n) {
                float& s = h[size_t(p * N + n)];
                s = e * s + dx * Bp[t * N + n];
                y += Cp[t * N + n] * s;
              }
              ref[size_t((t * H + hd) * P + p)] = y;
            }
          }
        }
      };
      const SSDInputs in{on_dev(xh), on_dev(dth), on_dev(Ah), on_dev(Bh), on_dev(Ch)};
      const double ms = time_op([&] { ssd_fwd(ctx, out, fin, in, {64}); });
      const double pms = T <= plain_t ? 1e3 * time_best(plain, 1) : -1;
      if (T == 1024) {
        if (pms < 0) plain();
        check("ssd", max_rel_diff(on_host(out), ref));
      }
      rows.push_back({"ssd_fwd", "B=1 H=24 P=64 N=128 G=1 Q=64", T,
                      (2.0 * T * H * P + T * H + 2.0 * T * N) * 4, ms, pms});
    }
  }

  // ---- The SSD target point: (B=1, T=512, H=48, P=64, N=128, G=1, f32), best chunk size.
  nlohmann::json target;
  {
    const int64_t T = 512, H = 48, P = 64, N = 128;
    const SSDInputs in{
        on_dev(rand_t({1, T, H, P}, gen, -1, 1)), on_dev(rand_t({1, T, H}, gen, 0.01f, 0.2f)),
        on_dev(rand_t({H}, gen, -2, -0.1f)), on_dev(rand_t({1, T, 1, N}, gen, -1, 1)),
        on_dev(rand_t({1, T, 1, N}, gen, -1, 1))};
    const Tensor out = empty({1, T, H, P}), fin = empty({1, H, P, N});
    std::printf("\nSSD target on %s (B=1 T=512 H=48 P=64 N=128 G=1 f32; CPU goal <= 5.8 ms):\n",
                device_name.c_str());
    for (const int64_t Q : {32, 64, 128, 256}) {
      const double ms = 1e3 * time_best(
                                  [&] {
                                    ssd_fwd(ctx, out, fin, in, {Q});
                                    ctx.synchronize();
                                  },
                                  2 * reps + 4);
      const int n = 5;
      const double c0 = cpu_s();
      for (int i = 0; i < n; ++i) ssd_fwd(ctx, out, fin, in, {Q});
      ctx.synchronize();
      const double cpu_ms = 1e3 * (cpu_s() - c0) / n;
      std::printf("  chunk %3lld: %7.2f ms wall (best of %d), %7.2f ms CPU time per call\n",
                  static_cast<long long>(Q), ms, 2 * reps + 4, cpu_ms);
      target["chunk_" + std::to_string(Q) + "_ms"] = ms;
      target["chunk_" + std::to_string(Q) + "_cpu_ms"] = cpu_ms;
    }
  }

  std::printf("\n%s, f32, GB/s = bytes the op must move / time; plain = single-threaded loop\n",
              device_name.c_str());
  std::printf("%-18s %-28s %7s %10s %8s %8s %10s %10s %8s\n", "op", "config", "T", "ms", "GB/s",
              "floor %", "plain ms", "plain GB/s", "speedup");
  nlohmann::json results = nlohmann::json::array();
  for (const Row& r : rows) {
    const double gbs = gb_per_s(r.bytes, r.ms);
    char plain[32] = "-", plain_gbs[32] = "-", speed[32] = "-";
    if (r.plain_ms >= 0) {
      std::snprintf(plain, sizeof plain, "%.2f", r.plain_ms);
      std::snprintf(plain_gbs, sizeof plain_gbs, "%.2f", gb_per_s(r.bytes, r.plain_ms));
      std::snprintf(speed, sizeof speed, "%.1fx", r.plain_ms / r.ms);
    }
    const double floor_ms = r.bytes / (copy_gbps * 1e9) * 1e3;
    std::printf("%-18s %-28s %7lld %10.2f %8.2f %8.1f %10s %10s %8s\n", r.op.c_str(),
                r.config.c_str(), static_cast<long long>(r.T), r.ms, gbs, 100 * floor_ms / r.ms,
                plain, plain_gbs, speed);
    const bool p = r.plain_ms >= 0;
    results.push_back(
        {{"op", r.op},
         {"config", r.config},
         {"T", r.T},
         {"bytes", r.bytes},
         {"ms", r.ms},
         {"gb_per_s", gbs},
         {"copy_floor_ms", floor_ms},
         {"fraction_of_copy_floor", floor_ms / r.ms},
         {"plain_loop_ms", p ? nlohmann::json(r.plain_ms) : nullptr},
         {"plain_loop_gb_per_s", p ? nlohmann::json(gb_per_s(r.bytes, r.plain_ms)) : nullptr}});
  }
  if (!json_path.empty()) {
    nlohmann::json doc = {{"device", device_name},
                          {"cpu_threads", ctx.cpu_threads()},
                          {"max_t", max_t},
                          {"copy_gb_per_s", copy_gbps},
                          {"copy_bytes", copy_bytes},
                          {"plain_max_t", plain_max_t},
                          {"commit", LONGCTX_GIT_COMMIT},
                          {"dtype", "f32"},
                          {"reps", reps},
                          {"results", results},
                          {"ssd_target", target}};
    std::FILE* f = std::fopen(json_path.c_str(), "w");
    if (!f) {
      std::fprintf(stderr, "cannot write %s\n", json_path.c_str());
      return 1;
    }
    std::fputs(doc.dump(2).c_str(), f);
    std::fclose(f);
  }
  return checks_ok ? 0 : 1;
}
