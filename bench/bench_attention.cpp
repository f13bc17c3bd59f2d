// bench_attention: attention forward and backward across sequence lengths at fixed batch·T and
// H·D (the FlashAttention sweep), causal and not; on the CPU also the naive materialised-softmax
// baseline (OpenBLAS) at the target point, in the same run. Every configuration is checked once
// against a float64 computation of sampled rows before it is timed.
//
//   bench_attention                      CPU default: T = 512..4096, batch·T = 4096, H·D = 512
//   bench_attention --full               T = 512..16384, batch·T = 16384, H·D = 2048
//   bench_attention --device cuda --full --dtype bf16
//   bench_attention --device cuda --dtype bf16 --decode     decode steps, T = 1k..128k
//
// FLOPs: forward 4·B·Tq·Tk·H·D (halved when causal), backward 2.5x the forward. On the CPU each
// point also reports GFLOP per CPU second (steadier than wall time on a loaded machine) and its
// fraction of the FMA peak per CPU second, measured by an FMA-bound loop in the same run.
// Decode (--decode): --batch sequences each add one query token against a KV cache of T keys
// (attention_decode), H = hd / D query heads over H / 4 kv heads (GQA as in Llama 3); it is
// memory-bound, so it is set against its copy floor (common.h): the bytes it must move (the
// K and V caches and q read, out and lse written) over the copy bandwidth measured in the run.
#include <cblas.h>
#include <omp.h>
#include <time.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "common.h"
#include "longctx/longctx.h"

using namespace longctx;
using json = nlohmann::json;

namespace {

struct Options {
  std::string device = "cpu", dtype = "f32", json_path = "bench_attention.json";
  int64_t tokens = 0, hd = 0, head_dim = 64, t_min = 512, t_max = 0, batch = 8;
  int reps = 3;
  bool full = false, no_bwd = false, no_naive = false, decode = false;
};

std::string cpu_name() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "cpu";
}

// A tensor of `dtype` on `device` with values uniform in [-1, 1), and its float64 host copy.
struct Input {
  Tensor t;
  std::vector<double> host;
};
Input random_input(const Shape& shape, DType dtype, Device device, const Context& ctx,
                   bench::SplitMix64& gen) {
  Tensor h = Tensor::empty(shape, DType::f64);
  for (int64_t i = 0; i < h.numel(); ++i) h.data_as<double>()[i] = gen.uniform(-1.0, 1.0);
  Tensor typed = h.to_dtype(dtype);  // round to the storage dtype; the check uses the rounded
  Input in{device.is_cpu() ? typed : typed.to(device, &ctx), {}};
  Tensor back = typed.to_dtype(DType::f64);
  in.host.assign(back.data_as<double>(), back.data_as<double>() + back.numel());
  return in;
}
std::vector<double> to_host(const Tensor& t, const Context& ctx) {
  Tensor h = t.device().is_cpu() ? t : t.to(Device::cpu(), &ctx);
  Tensor d = h.to_dtype(DType::f64);
  return {d.data_as<double>(), d.data_as<double>() + d.numel()};
}

struct Problem {
  int64_t B, T, H, D;
  bool causal;
};

// One query row (b, h, i) in float64: out row, lse, and with dO the dq row and P (for dk/dv).
struct RowRef {
  std::vector<double> out, p;
  double lse = -INFINITY;
};
RowRef row_ref(const Problem& pr, const std::vector<double>& q, const std::vector<double>& k,
               const std::vector<double>& v, int64_t b, int64_t h, int64_t i) {
  const int64_t T = pr.T, H = pr.H, D = pr.D, Tk = pr.causal ? i + 1 : T;
  const double scale = 1.0 / std::sqrt(double(D));
  RowRef r;
  r.p.assign(size_t(T), 0.0);
  r.out.assign(size_t(D), 0.0);
  double mx = -INFINITY;
  for (int64_t j = 0; j < Tk; ++j) {
    double s = 0;
    for (int64_t d = 0; d < D; ++d)
      s += q[size_t(((b * T + i) * H + h) * D + d)] * k[size_t(((b * T + j) * H + h) * D + d)];
    r.p[size_t(j)] = s * scale;
    mx = std::max(mx, s * scale);
  }
  double sum = 0;
  for (int64_t j = 0; j < Tk; ++j) sum += (r.p[size_t(j)] = std::exp(r.p[size_t(j)] - mx));
  for (int64_t j = 0; j < Tk; ++j) {
    r.p[size_t(j)] /= sum;
    for (int64_t d = 0; d < D; ++d)
      r.out[size_t(d)] += r.p[size_t(j)] * v[size_t(((b * T + j) * H + h) * D + d)];
  }
  r.lse = mx + std::log(sum);
  return r;
}

// Largest |got − want| over sampled rows, relative to max(1, max |want|).
struct Check {
  double err = 0, scale = 1;
  void add(double got, double want) {
    err = std::max(err, std::isnan(got) ? INFINITY : std::abs(got - want));
    scale = std::max(scale, std::abs(want));
  }
  double rel() const { return err / scale; }
};

double tolerance(DType dt) {
  return dt == DType::f32 ? 1e-4 : dt == DType::bf16 ? 3e-2 : 5e-3;
}

// Checks the forward on 6 sampled rows, and the backward's dq on those rows. Returns the
// relative errors.
std::pair<double, double> check(const Problem& pr, const Context& ctx, DType dt, bool with_bwd,
                                bench::SplitMix64& gen) {
  const Device dev = ctx.device();
  const Shape shape = {pr.B, pr.T, pr.H, pr.D};
  Input q = random_input(shape, dt, dev, ctx, gen), k = random_input(shape, dt, dev, ctx, gen);
  Input v = random_input(shape, dt, dev, ctx, gen), dout = random_input(shape, dt, dev, ctx, gen);
  const DType lse_dt = stat_dtype(dt);
  Tensor out = Tensor::empty(shape, dt, dev, &ctx),
         lse = Tensor::empty({pr.B, pr.H, pr.T}, lse_dt, dev, &ctx);
  AttentionParams params;
  params.causal = pr.causal;
  attention_fwd(ctx, out, lse, q.t, k.t, v.t, params);
  Tensor dq = Tensor::empty(shape, dt, dev, &ctx), dk = Tensor::empty(shape, dt, dev, &ctx);
  Tensor dv = Tensor::empty(shape, dt, dev, &ctx);
  if (with_bwd) attention_bwd(ctx, dq, dk, dv, dout.t, q.t, k.t, v.t, out, lse, params);
  ctx.synchronize();
  const auto o = to_host(out, ctx), l = to_host(lse, ctx);
  const auto g = with_bwd ? to_host(dq, ctx) : std::vector<double>();
  Check fwd, bwd;
  std::uniform_int_distribution<int64_t> pick(0, pr.B * pr.H * pr.T - 1);
  std::vector<int64_t> rows = {0, pr.B * pr.H * pr.T - 1};
  while (rows.size() < 6) rows.push_back(pick(gen));
  const double scale = 1.0 / std::sqrt(double(pr.D));
  for (int64_t row : rows) {
    const int64_t i = row % pr.T, h = row / pr.T % pr.H, b = row / pr.T / pr.H;
    const RowRef r = row_ref(pr, q.host, k.host, v.host, b, h, i);
    const int64_t base = ((b * pr.T + i) * pr.H + h) * pr.D;
    for (int64_t d = 0; d < pr.D; ++d) fwd.add(o[size_t(base + d)], r.out[size_t(d)]);
    fwd.add(l[size_t(row)], r.lse);
    if (!with_bwd) continue;
    // dq_i = scale · Σ_j P_ij (dO_i·v_j − dO_i·o_i) k_j
    double di = 0;
    for (int64_t d = 0; d < pr.D; ++d) di += dout.host[size_t(base + d)] * r.out[size_t(d)];
    std::vector<double> dqi(size_t(pr.D), 0.0);
    for (int64_t j = 0; j < pr.T; ++j) {
      if (r.p[size_t(j)] == 0) continue;
      const int64_t kv = ((b * pr.T + j) * pr.H + h) * pr.D;
      double dp = 0;
      for (int64_t d = 0; d < pr.D; ++d) dp += dout.host[size_t(base + d)] * v.host[size_t(kv + d)];
      const double ds = r.p[size_t(j)] * (dp - di);
      for (int64_t d = 0; d < pr.D; ++d) dqi[size_t(d)] += ds * k.host[size_t(kv + d)] * scale;
    }
    for (int64_t d = 0; d < pr.D; ++d) bwd.add(g[size_t(base + d)], dqi[size_t(d)]);
  }
  return {fwd.rel(), bwd.rel()};
}

// Seconds of CPU time the whole process has used (all its threads).
double cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

// Best of `reps` runs of f (after one warm-up): wall seconds, and CPU seconds of all threads. On
// the shared dev machine the wall time measures the load as much as the code; CPU time counts
// the cycles the threads ran (OMP_WAIT_POLICY=passive: a waiting thread costs none), so it is
// the steadier measure there (it does not see load imbalance between the threads).
struct Timing {
  double wall = INFINITY, cpu = INFINITY;
};
template <class F>
Timing time_best2(const Context& ctx, int reps, F&& f) {
  f();
  ctx.synchronize();
  Timing best;
  for (int r = 0; r < reps; ++r) {
    const double c0 = cpu_seconds();
    const auto t0 = std::chrono::steady_clock::now();
    f();
    ctx.synchronize();
    best.wall = std::min(
        best.wall, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    best.cpu = std::min(best.cpu, cpu_seconds() - c0);
  }
  return best;
}
template <class F>
double time_best(const Context& ctx, int reps, F&& f) {
  return time_best2(ctx, reps, std::forward<F>(f)).wall;
}

// ---- The machine's FMA peak, measured in the run -----------------------------------------------
//
// Twelve independent chains of vector FMAs per thread (more than latency x ports: 4 x 2), the
// widest vector ISA the library's kernels use (AVX-512 unless LONGCTX_CPU_ISA=avx2 or the CPU
// lacks it). Measured rather than computed from cores x units x lanes x 2 x clock because the
// clock under KVM is unknown and the load on a shared machine takes its share of both.
#define LONGCTX_CHAINS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f"))) float fma_chains_avx512(int64_t iters, float seed) {
#define DECL(i) __m512 a##i = _mm512_set1_ps(seed + float(i));
  LONGCTX_CHAINS(DECL)
#undef DECL
  const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it) {
#define STEP(i) a##i = _mm512_fmadd_ps(a##i, m, c);
    LONGCTX_CHAINS(STEP)
#undef STEP
  }
  float sum = 0;
  alignas(64) float buf[16];
#define SUM(i)                \
  _mm512_store_ps(buf, a##i); \
  for (float x : buf) sum += x;
  LONGCTX_CHAINS(SUM)
#undef SUM
  return sum;
}
__attribute__((target("avx2,fma"))) float fma_chains_avx2(int64_t iters, float seed) {
#define DECL(i) __m256 a##i = _mm256_set1_ps(seed + float(i));
  LONGCTX_CHAINS(DECL)
#undef DECL
  const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it) {
#define STEP(i) a##i = _mm256_fmadd_ps(a##i, m, c);
    LONGCTX_CHAINS(STEP)
#undef STEP
  }
  alignas(32) float buf[8];
  float sum = 0;
#define SUM(i)                \
  _mm256_store_ps(buf, a##i); \
  for (float x : buf) sum += x;
  LONGCTX_CHAINS(SUM)
#undef SUM
  return sum;
}
#endif
#undef LONGCTX_CHAINS

struct FmaPeak {
  std::string isa;
  double wall_gflops = 0, cpu_gflops = 0;  // per wall second (all threads), per CPU second
};
// Best of 5 runs of ~0.1 s on ctx's threads.
FmaPeak fma_peak(const Context& ctx) {
  FmaPeak peak;
#if defined(__x86_64__) && defined(__GNUC__)
  const char* cap = std::getenv("LONGCTX_CPU_ISA");
  const bool avx512 = __builtin_cpu_supports("avx512f") && !(cap && std::string(cap) == "avx2");
  peak.isa = avx512 ? "avx512" : "avx2";
  const int64_t iters = 2000000;
  const double flops_per_thread = double(iters) * 12 * (avx512 ? 16 : 8) * 2;
  const int threads = ctx.cpu_threads();
  volatile float sink = 0;
  const Timing t = time_best2(ctx, 5, [&] {
#pragma omp parallel num_threads(threads)
    {
      const float seed = float(omp_get_thread_num());
      const float r = avx512 ? fma_chains_avx512(iters, seed) : fma_chains_avx2(iters, seed);
#pragma omp critical
      sink = sink + r;
    }
  });
  peak.wall_gflops = flops_per_thread * threads / t.wall * 1e-9;
  peak.cpu_gflops = flops_per_thread * threads / t.cpu * 1e-9;
#endif
  return peak;
}

// The naive f32 attention a user writes with a BLAS: S = scale·Q·Kᵀ (T x T per head), row
// softmax, O = P·V. OpenBLAS uses every thread (called outside a parallel region).
void naive_attention(const Problem& pr, const float* q, const float* k, const float* v, float* out,
                     std::vector<float>& S) {
  const int64_t T = pr.T, H = pr.H, D = pr.D, ld = H * D;
  const float scale = 1.f / std::sqrt(float(D));
  S.resize(size_t(T * T));
  for (int64_t b = 0; b < pr.B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t off = b * T * ld + h * D;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(T), int(T), int(D), scale, q + off,
                  int(ld), k + off, int(ld), 0.f, S.data(), int(T));
#pragma omp parallel for
      for (int64_t i = 0; i < T; ++i) {
        float* s = S.data() + i * T;
        const int64_t n = pr.causal ? i + 1 : T;
        float mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j < n; ++j) mx = std::max(mx, s[j]);
        for (int64_t j = 0; j < n; ++j) sum += (s[j] = std::exp(s[j] - mx));
        for (int64_t j = 0; j < n; ++j) s[j] /= sum;
        for (int64_t j = n; j < T; ++j) s[j] = 0;
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(T), int(D), int(T), 1.f, S.data(),
                  int(T), v + off, int(ld), 0.f, out + off, int(ld));
    }
}

// The decode sweep (see the header). Each timed run launches one decode step on each of `sets`
// separate caches (so that at small T the caches, together over 4x the H200's 60 MB L2, are not
// served from L2), then synchronises; the time per step is the best run over `sets`.
json decode_sweep(const Options& opt, const Context& ctx, DType dt, int64_t H, int64_t D) {
  const Device dev = ctx.device();
  const int64_t B = opt.batch, Hkv = std::max<int64_t>(1, H / 4);
  const double copy_gbps =
      bench::copy_gb_per_s(ctx, dev.is_cuda() ? int64_t(1) << 30 : int64_t(256) << 20, opt.reps);
  std::printf("decode, B = %ld, H = %ld, Hkv = %ld, D = %ld; copy bandwidth %.1f GB/s\n", long(B),
              long(H), long(Hkv), long(D), copy_gbps);
  std::printf("%7s %5s %11s %9s %8s %8s\n", "T", "sets", "step us", "GB/s", "floor %", "check");
  json points = json::array();
  for (int64_t T = opt.t_min; T <= opt.t_max; T *= 2) {
    const double elt = double(dtype_size(dt));
    const double cache_bytes = 2.0 * B * T * Hkv * D * elt;
    const double bytes = cache_bytes + 2.0 * B * H * D * elt + 4.0 * B * H;  // + q, out; lse
    const int sets = int(std::clamp<double>(std::ceil(256e6 / cache_bytes), 1, 16));
    struct Set {
      Tensor q, k, v, out, lse, lens;
    };
    std::vector<Set> s(static_cast<size_t>(sets));
    Tensor lens_host = Tensor::empty({B}, DType::i32);
    for (int64_t b = 0; b < B; ++b) lens_host.data_as<int32_t>()[b] = int32_t(T);
    for (Set& x : s) {
      // Constant q and k make the weights uniform and v = 0.5 makes every output 0.5: a check
      // that every element was written, at no host cost at 128k keys.
      x.q = Tensor::empty({B, 1, H, D}, dt, dev, &ctx);
      x.k = Tensor::empty({B, T, Hkv, D}, dt, dev, &ctx);
      x.v = Tensor::empty({B, T, Hkv, D}, dt, dev, &ctx);
      x.q.fill(0.25, &ctx);
      x.k.fill(0.75, &ctx);
      x.v.fill(0.5, &ctx);
      x.out = Tensor::empty({B, 1, H, D}, dt, dev, &ctx);
      x.out.fill(std::nan(""), &ctx);
      x.lse = Tensor::empty({B, H, 1}, DType::f32, dev, &ctx);
      x.lens = dev.is_cpu() ? lens_host : lens_host.to(dev, &ctx);
    }
    const double s_per_set = time_best(ctx, opt.reps, [&] {
      for (const Set& x : s) attention_decode(ctx, x.out, x.lse, x.q, x.k, x.v, x.lens);
    });
    const double step_s = s_per_set / sets;
    const std::vector<double> o = to_host(s[0].out, ctx);
    double err = 0;
    for (double x : o) err = std::max(err, std::isnan(x) ? INFINITY : std::abs(x - 0.5));
    const bool ok = err <= tolerance(dt);
    const double gbps = bytes / step_s * 1e-9, floor_s = bytes / (copy_gbps * 1e9);
    std::printf("%7ld %5d %11.2f %9.1f %8.1f %8s\n", long(T), sets, step_s * 1e6, gbps,
                100 * floor_s / step_s, ok ? "ok" : "FAIL");
    std::fflush(stdout);
    points.push_back({{"T", T},
                      {"B", B},
                      {"H", H},
                      {"Hkv", Hkv},
                      {"D", D},
                      {"bytes", bytes},
                      {"step_s", step_s},
                      {"gb_per_s", gbps},
                      {"copy_floor_s", floor_s},
                      {"fraction_of_copy_floor", floor_s / step_s},
                      {"cache_sets", sets},
                      {"check_ok", ok},
                      {"check_max_abs_err", err}});
  }
  return {{"copy_gb_per_s", copy_gbps}, {"points", points}};
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  CLI::App app{"attention forward/backward across sequence lengths"};
  app.add_option("--device", opt.device, "cpu or cuda[:N]");
  app.add_option("--dtype", opt.dtype, "f32 (CPU, CUDA), bf16, f16 (CUDA)");
  app.add_flag("--full", opt.full, "the full sweep: T = 512..16384, batch·T = 16384, H·D = 2048");
  app.add_option("--tokens", opt.tokens, "batch·T (default 4096 on the CPU, 16384 with --full)");
  app.add_option("--hd", opt.hd, "H·D (default 512 on the CPU, 2048 with --full)");
  app.add_option("--head-dim", opt.head_dim, "D");
  app.add_option("--t-min", opt.t_min, "smallest T");
  app.add_option("--t-max", opt.t_max, "largest T (default: batch·T)");
  app.add_option("--reps", opt.reps, "timed runs per point (best is reported)");
  app.add_flag("--no-bwd", opt.no_bwd, "forward only");
  app.add_flag("--no-naive", opt.no_naive, "skip the naive baseline (CPU)");
  app.add_flag("--decode", opt.decode,
               "decode steps against a KV cache of T keys instead (T = 1k..128k on CUDA)");
  app.add_option("--batch", opt.batch, "sequences per decode step");
  app.add_option("--json", opt.json_path, "where to write the results");
  CLI11_PARSE(app, argc, argv);

  try {
    const Device dev = parse_device(opt.device);
    const DType dt = parse_dtype(opt.dtype);
    const bool small = dev.is_cpu() && !opt.full;
    if (!opt.tokens) opt.tokens = small ? 4096 : 16384;
    if (!opt.hd) opt.hd = small ? 512 : 2048;
    if (!opt.t_max) opt.t_max = opt.decode ? (dev.is_cuda() ? 131072 : 8192) : opt.tokens;
    const int64_t D = opt.head_dim, H = opt.hd / D;
    Context ctx(dev);
    std::string device_name =
        dev.is_cpu() ? cpu_name() + " (" + std::to_string(ctx.cpu_threads()) + " threads)" : "cuda";
    if (dev.is_cuda()) {
      const CudaStatus st = cuda_status();
      if (!st.available()) throw Error("bench_attention: no usable CUDA device: " + st.reason);
      device_name = st.devices.at(size_t(dev.index)).name;
    }
    if (opt.decode) {
      std::printf("attention decode, %s, %s, commit %s\n", device_name.c_str(), dtype_name(dt),
                  LONGCTX_GIT_COMMIT);
      json result = decode_sweep(opt, ctx, dt, H, D);
      result["bench"] = "attention_decode";
      result["device"] = device_name;
      result["commit"] = LONGCTX_GIT_COMMIT;
      result["config"] = {{"dtype", dtype_name(dt)}, {"reps", opt.reps}};
      std::ofstream(opt.json_path) << result.dump(2) << "\n";
      std::printf("wrote %s\n", opt.json_path.c_str());
      for (const auto& p : result["points"])
        if (!p["check_ok"].get<bool>()) return 1;
      return 0;
    }
    std::printf("attention, %s, %s, batch·T = %ld, H = %ld, D = %ld, commit %s\n",
                device_name.c_str(), dtype_name(dt), long(opt.tokens), long(H), long(D),
                LONGCTX_GIT_COMMIT);
    // The FMA peak (CPU only), measured once before the sweep: the last columns are GFLOP per
    // CPU second (all threads) and their fraction of the peak per CPU second.
    FmaPeak peak;
    double first_peak_cpu_gflops = NAN;  // before the sweep (peak: the higher, after it)
    if (dev.is_cpu()) {
      peak = fma_peak(ctx);
      first_peak_cpu_gflops = peak.cpu_gflops;
      std::printf(
          "FMA peak (%s, %d threads, measured): %.1f GFLOP/s wall, %.1f GFLOP per CPU "
          "second\n",
          peak.isa.c_str(), ctx.cpu_threads(), peak.wall_gflops, peak.cpu_gflops);
      std::printf("BLAS kernels (the naive baseline's): %s\n", build_info().blas_kernels.c_str());
    }
    std::printf("%7s %4s %7s %6s %11s %9s %11s %9s %9s %8s %8s %8s %8s\n", "T", "B", "causal",
                "check", "fwd ms", "TFLOP/s", "bwd ms", "TFLOP/s", "err", "fwd GF/c", "of peak",
                "bwd GF/c", "of peak");
    json points = json::array();
    bench::SplitMix64 gen{42};
    for (int64_t T = opt.t_min; T <= opt.t_max; T *= 2) {
      const int64_t B = std::max<int64_t>(1, opt.tokens / T);
      for (bool causal : {false, true}) {
        const Problem pr{B, T, H, D, causal};
        const auto [err_fwd, err_bwd] = check(pr, ctx, dt, !opt.no_bwd, gen);
        const bool ok = err_fwd <= tolerance(dt) && err_bwd <= tolerance(dt);
        // Timing inputs (values do not matter for speed).
        const Shape shape = {B, T, H, D};
        const DType lse_dt = stat_dtype(dt);
        auto make = [&] {
          Tensor t = Tensor::empty(shape, dt, dev, &ctx);
          t.fill(0.5, &ctx);
          return t;
        };
        Tensor q = make(), k = make(), v = make(), out = make(), dout = make();
        Tensor dq = make(), dk = make(), dv = make();
        Tensor lse = Tensor::empty({B, H, T}, lse_dt, dev, &ctx);
        AttentionParams params;
        params.causal = causal;
        const double flops = 4.0 * B * T * T * H * D * (causal ? 0.5 : 1.0);
        const Timing fwd_t =
            time_best2(ctx, opt.reps, [&] { attention_fwd(ctx, out, lse, q, k, v, params); });
        const double fwd_s = fwd_t.wall;
        Timing bwd_t{NAN, NAN};
        if (!opt.no_bwd)
          bwd_t = time_best2(ctx, opt.reps, [&] {
            attention_bwd(ctx, dq, dk, dv, dout, q, k, v, out, lse, params);
          });
        const double bwd_s = bwd_t.wall;
        const double fwd_tf = flops / fwd_s * 1e-12, bwd_tf = 2.5 * flops / bwd_s * 1e-12;
        // GFLOP per CPU second (all threads' seconds), and its fraction of the FMA loop's.
        const double fwd_cpu_gf = flops / fwd_t.cpu * 1e-9;
        const double bwd_cpu_gf = 2.5 * flops / bwd_t.cpu * 1e-9;
        const double fwd_peak = dev.is_cpu() ? fwd_cpu_gf / peak.cpu_gflops : NAN;
        const double bwd_peak = dev.is_cpu() ? bwd_cpu_gf / peak.cpu_gflops : NAN;
        std::printf(
            "%7ld %4ld %7s %6s %11.2f %9.4f %11.2f %9.4f %9.1e %8.1f %7.1f%% %8.1f %7.1f%%\n",
            long(T), long(B), causal ? "yes" : "no", ok ? "ok" : "FAIL", fwd_s * 1e3, fwd_tf,
            bwd_s * 1e3, bwd_tf, std::max(err_fwd, err_bwd), fwd_cpu_gf, 100 * fwd_peak, bwd_cpu_gf,
            100 * bwd_peak);
        std::fflush(stdout);
        points.push_back(
            {{"T", T},
             {"B", B},
             {"H", H},
             {"D", D},
             {"causal", causal},
             {"check_ok", ok},
             {"check_rel_err_fwd", err_fwd},
             {"check_rel_err_bwd", err_bwd},
             {"fwd_s", fwd_s},
             {"fwd_tflops", fwd_tf},
             {"bwd_s", opt.no_bwd ? json() : json(bwd_s)},
             {"bwd_tflops", opt.no_bwd ? json() : json(bwd_tf)},
             {"fwd_cpu_s", fwd_t.cpu},
             {"fwd_gflops_per_cpu_s", fwd_cpu_gf},
             {"fwd_fma_peak_fraction", dev.is_cpu() ? json(fwd_peak) : json()},
             {"bwd_cpu_s", opt.no_bwd ? json() : json(bwd_t.cpu)},
             {"bwd_gflops_per_cpu_s", opt.no_bwd ? json() : json(bwd_cpu_gf)},
             {"bwd_fma_peak_fraction", dev.is_cpu() && !opt.no_bwd ? json(bwd_peak) : json()}});
      }
    }

    // The peak again after the sweep: on a VM whose speed moves, the first measurement can fall in
    // a slow spell (the Zen 4 VM of 2026-12-07: 116.8 GFLOP/s wall once, 233 in the two runs
    // after it, the rows then at "160%" of it). The higher of the two is the peak: the JSON's
    // fractions are against it, and the note says when the rows above used the lower one.
    if (dev.is_cpu()) {
      const FmaPeak after = fma_peak(ctx);
      std::printf("FMA peak after the sweep: %.1f GFLOP/s wall, %.1f GFLOP per CPU second\n",
                  after.wall_gflops, after.cpu_gflops);
      if (after.cpu_gflops > peak.cpu_gflops) {
        if (after.cpu_gflops > 1.05 * peak.cpu_gflops)
          std::printf(
              "note: the first measurement was %.0f%% lower: the 'of peak' columns above "
              "are against it, the JSON's against the higher\n",
              100 * (1 - peak.cpu_gflops / after.cpu_gflops));
        peak = after;
        for (auto& p : points) {
          p["fwd_fma_peak_fraction"] = p["fwd_gflops_per_cpu_s"].get<double>() / peak.cpu_gflops;
          if (!opt.no_bwd)
            p["bwd_fma_peak_fraction"] = p["bwd_gflops_per_cpu_s"].get<double>() / peak.cpu_gflops;
        }
      }
    }

    json naive;
    if (dev.is_cpu() && dt == DType::f32 && !opt.no_naive) {
      // The target point: B = 1, T = 4096, H = 8, D = 64, non-causal forward.
      const Problem pr{1, 4096, 8, 64, false};
      bench::SplitMix64 g2{7};
      const Shape shape = {pr.B, pr.T, pr.H, pr.D};
      Input q = random_input(shape, dt, dev, ctx, g2), k = random_input(shape, dt, dev, ctx, g2);
      Input v = random_input(shape, dt, dev, ctx, g2);
      Tensor out = Tensor::empty(shape, dt), lse = Tensor::empty({pr.B, pr.H, pr.T}, dt);
      Tensor ref = Tensor::empty(shape, dt);
      std::vector<float> S;
      const double flash_s =
          time_best(ctx, opt.reps, [&] { attention_fwd(ctx, out, lse, q.t, k.t, v.t, {}); });
      const double naive_s = time_best(ctx, opt.reps, [&] {
        naive_attention(pr, q.t.data_as<float>(), k.t.data_as<float>(), v.t.data_as<float>(),
                        ref.data_as<float>(), S);
      });
      double diff = 0;
      for (int64_t i = 0; i < out.numel(); ++i)
        diff = std::max(diff, double(std::abs(out.data_as<float>()[i] - ref.data_as<float>()[i])));
      const double flops = 4.0 * pr.T * pr.T * pr.H * pr.D;
      std::printf(
          "\ntarget point B=1 T=4096 H=8 D=64 f32 non-causal fwd: tiled %.1f ms = %.1f GFLOP/s; "
          "naive (OpenBLAS, T x T scores) %.1f ms = %.1f GFLOP/s; speedup %.2fx; max |diff| %.1e\n",
          flash_s * 1e3, flops / flash_s * 1e-9, naive_s * 1e3, flops / naive_s * 1e-9,
          naive_s / flash_s, diff);
      naive = {{"B", pr.B},
               {"T", pr.T},
               {"H", pr.H},
               {"D", pr.D},
               {"causal", false},
               {"tiled_s", flash_s},
               {"tiled_gflops", flops / flash_s * 1e-9},
               {"naive_s", naive_s},
               {"naive_gflops", flops / naive_s * 1e-9},
               {"speedup", naive_s / flash_s},
               {"max_abs_diff", diff}};
    }

    const BuildInfo build = build_info();
    const json result = {
        {"bench", "attention"},
        {"device", device_name},
        {"commit", LONGCTX_GIT_COMMIT},
        {"config",
         {{"dtype", dtype_name(dt)},
          {"tokens", opt.tokens},
          {"H", H},
          {"D", D},
          {"reps", opt.reps},
          {"flops", "fwd 4*B*T*T*H*D (x0.5 causal), bwd 2.5x fwd"}}},
        {"fma_peak", dev.is_cpu() ? json{{"isa", peak.isa},
                                         {"threads", ctx.cpu_threads()},
                                         {"wall_gflops", peak.wall_gflops},
                                         {"gflops_per_cpu_s", peak.cpu_gflops},
                                         {"before_sweep_gflops_per_cpu_s", first_peak_cpu_gflops}}
                                  : json()},
        {"points", points},
        {"naive_baseline", naive},
        {"blas_kernels", build.blas_kernels},
        {"blas_kernels_replaced", build.blas_kernels_replaced}};
    std::ofstream(opt.json_path) << result.dump(2) << "\n";
    std::printf("wrote %s\n", opt.json_path.c_str());
    for (const auto& p : points)
      if (!p["check_ok"].get<bool>()) return 1;
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
}
