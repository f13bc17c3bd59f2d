// bench_gdn: the gated delta rule (gated_delta_rule_fwd / _bwd, chunked) against a plain
// token-by-token loop in the same run, and against causal flash attention at the same width
// across sequence lengths (the crossover).
//
//   bench_gdn [--device cpu|cuda[:N]] [--dtype f32|bf16|f16] [--json FILE]
//             [--batch 1] [--T 8192] [--heads 8] [--dk 128] [--dv 128] [--chunk 64] [--kda]
//             [--l2norm] [--t-min 256] [--t-max 8192] [--reps 3] [--rounds 3] [--no-plain]
//             [--no-crossover]
//
// 1. The target point (B = 1, T = 8192, H = HV = 8, K = V = 128 by default): the op's forward and
//    backward (f32 on the CPU) next to a plain loop over the tokens — the recurrence of the op's
//    header on a K x V state per (sequence, head), its backward the reverse recurrence from
//    states recomputed in segments of 64 tokens — each on the same OpenMP threads, one (sequence,
//    head) per thread at a time, as the op. Both are checked against each other first (forward
//    output, every input gradient). The forward also against the same loop in two passes over
//    the state per token instead of four (fused_step, the form of the op's decode step): the
//    stronger baseline, reported beside the plain one.
// 2. The crossover: at T = t-min .. t-max (doubling), B = 1, the op's forward + backward against
//    attention_fwd + attention_bwd with causal = true, H heads of head dim K (the same q/k width);
//    the length from which the op is faster.
// Times are the best of --reps runs, wall and process CPU time; on a shared machine the CPU time
// is the robust measure (other jobs inflate the wall time of whichever side they overlap), and
// the ratios and the crossover are decided on it. At the target point the op and the loops
// alternate --rounds times and each one's best round counts, so that a virtual machine's change of
// speed within the run (10-30% between runs, seen on the 2-core Emerald Rapids VM) falls on both
// sides; the rounds' own ratios are printed as a range and kept in the JSON. The JSON also has the
// median wall time, the figure bench/fla_gdn.py compares with fla's on a GPU
// (`--device cuda --dtype bf16 --no-plain --no-crossover`; the wall time there is the device's,
// the stream synchronised around each run).
#include <omp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common.h"
#include "longctx/longctx.h"

using namespace longctx;
using bench::cpu_s;
using bench::now_s;
using json = nlohmann::json;

namespace {

struct Options {
  std::string device = "cpu", dtype = "f32", json_path = "bench_gdn.json";
  int64_t batch = 1, T = 8192, heads = 8, dk = 128, dv = 128, chunk = 64;
  int64_t t_min = 256, t_max = 8192;
  int reps = 3, rounds = 3, threads = 0;
  bool kda = false, l2norm = false, no_plain = false, no_crossover = false;
};

std::string cpu_name() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "cpu";
}

struct Time {
  double wall, cpu;    // seconds, each the best of the timed runs
  double wall_median;  // seconds, the median of the timed runs' wall times
};

// Best (and median) of `reps` runs after one warm-up unless `warm` (synchronised: the context's
// stream).
Time time_best(const Context& ctx, const std::function<void()>& f, int reps, bool warm = false) {
  if (!warm) {
    f();
    ctx.synchronize();
  }
  Time best{1e30, 1e30, 0};
  std::vector<double> walls;
  for (int i = 0; i < reps; ++i) {
    const double t0 = now_s(), c0 = cpu_s();
    f();
    ctx.synchronize();
    walls.push_back(now_s() - t0);
    best.wall = std::min(best.wall, walls.back());
    best.cpu = std::min(best.cpu, cpu_s() - c0);
  }
  std::sort(walls.begin(), walls.end());
  const size_t n = walls.size();
  if (n > 0) best.wall_median = n % 2 ? walls[n / 2] : 0.5 * (walls[n / 2 - 1] + walls[n / 2]);
  return best;
}

// The better of two rounds' times (the median: the better round's).
Time better(const Time& a, const Time& b) {
  return b.cpu < a.cpu ? Time{std::min(a.wall, b.wall), b.cpu, b.wall_median}
                       : Time{std::min(a.wall, b.wall), a.cpu, a.wall_median};
}

// f32 host inputs of the op, as the models feed it: q, k, v uniform; k L2-normalised over K (so
// the recurrence contracts); g = log of decays in [0.9, 0.999]; beta in (0, 1).
struct HostInputs {
  int64_t B, T, H, K, V, Kg;
  std::vector<float> q, k, v, g, beta, dout;
};
HostInputs make_inputs(int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, bool kda) {
  bench::SplitMix64 gen{2026};
  HostInputs in{B, T, H, K, V, kda ? K : 1, {}, {}, {}, {}, {}, {}};
  auto fill = [&](std::vector<float>& x, int64_t n, double lo, double hi) {
    x.resize(static_cast<size_t>(n));
    for (float& e : x) e = float(gen.uniform(lo, hi));
  };
  fill(in.q, B * T * H * K, -1, 1);
  fill(in.k, B * T * H * K, -1, 1);
  for (int64_t r = 0; r < B * T * H; ++r) {
    float* row = in.k.data() + r * K;
    double ss = 0;
    for (int64_t c = 0; c < K; ++c) ss += double(row[c]) * row[c];
    for (int64_t c = 0; c < K; ++c) row[c] = float(row[c] / std::sqrt(ss));
  }
  fill(in.v, B * T * H * V, -1, 1);
  fill(in.g, B * T * H * in.Kg, std::log(0.9), std::log(0.999));
  fill(in.beta, B * T * H, 0.05, 1);
  fill(in.dout, B * T * H * V, -1, 1);
  return in;
}

Tensor to_device(const std::vector<float>& x, const Shape& shape, DType dtype, Device dev,
                 const Context& ctx) {
  Tensor host(const_cast<float*>(x.data()), DType::f32, Device::cpu(), shape);
  Tensor t = dtype == DType::f32 ? host : host.to_dtype(dtype);
  return dev.is_cpu() ? t.to(dev) : t.to(dev, &ctx);
}

// ---- The plain token-by-token loop (f32, the state K x V row-major per (sequence, head)) ------

struct PlainGrads {
  std::vector<float> dq, dk, dv, dg, dbeta;
};

// One step on S: S ← diag(a) S; u = β (v − Sᵀ k); S ← S + k uᵀ; o = Sᵀ (scale q). Writes u.
// (One exp per token for the per-head gate, K for KDA's.)
void plain_step(float* S, const float* q, const float* k, const float* v, const float* g,
                float beta, float scale, int64_t K, int64_t V, int64_t Kg, float* u, float* o) {
  const float a0 = std::exp(g[0]);
  for (int64_t c = 0; c < K; ++c) {
    const float a = Kg == 1 ? a0 : std::exp(g[c]);
    for (int64_t j = 0; j < V; ++j) S[c * V + j] *= a;
  }
  for (int64_t j = 0; j < V; ++j) u[j] = 0;
  for (int64_t c = 0; c < K; ++c)
    for (int64_t j = 0; j < V; ++j) u[j] += k[c] * S[c * V + j];
  for (int64_t j = 0; j < V; ++j) u[j] = beta * (v[j] - u[j]);
  for (int64_t c = 0; c < K; ++c)
    for (int64_t j = 0; j < V; ++j) S[c * V + j] += k[c] * u[j];
  if (!o) return;
  for (int64_t j = 0; j < V; ++j) o[j] = 0;
  for (int64_t c = 0; c < K; ++c)
    for (int64_t j = 0; j < V; ++j) o[j] += scale * q[c] * S[c * V + j];
}

// The same step in two passes over S instead of four (decay and Sᵀ k together, then the update
// and Sᵀ q together), as the op's decode step gated_delta_rule_update does it: the loop at its
// best on a state that does not fit the L1 cache, which is what bounds it (64 KB at K = V = 128).
void fused_step(float* S, const float* q, const float* k, const float* v, const float* g,
                float beta, float scale, int64_t K, int64_t V, int64_t Kg, float* u, float* o) {
  const float a0 = std::exp(g[0]);
  for (int64_t j = 0; j < V; ++j) u[j] = 0;
  for (int64_t c = 0; c < K; ++c) {
    const float a = Kg == 1 ? a0 : std::exp(g[c]), kc = k[c];
    float* row = S + c * V;
    for (int64_t j = 0; j < V; ++j) {
      row[j] *= a;
      u[j] += kc * row[j];
    }
  }
  for (int64_t j = 0; j < V; ++j) {
    u[j] = beta * (v[j] - u[j]);
    o[j] = 0;
  }
  for (int64_t c = 0; c < K; ++c) {
    const float kc = k[c], qc = scale * q[c];
    float* row = S + c * V;
    for (int64_t j = 0; j < V; ++j) {
      row[j] += kc * u[j];
      o[j] += qc * row[j];
    }
  }
}

template <class Step>
void loop_fwd(const HostInputs& in, std::vector<float>& out, Step step) {
  const int64_t K = in.K, V = in.V, H = in.H, Kg = in.Kg, T = in.T;
  const float scale = 1.f / std::sqrt(float(K));
  out.resize(in.v.size());
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t item = 0; item < in.B * H; ++item) {
    const int64_t b = item / H, h = item % H;
    std::vector<float> S(size_t(K * V), 0.f), u(static_cast<size_t>(V));
    for (int64_t t = 0; t < T; ++t) {
      const int64_t r = (b * T + t) * H + h;
      step(S.data(), &in.q[size_t(r * K)], &in.k[size_t(r * K)], &in.v[size_t(r * V)],
           &in.g[size_t(r * Kg)], in.beta[size_t(r)], scale, K, V, Kg, u.data(),
           &out[size_t(r * V)]);
    }
  }
}

// The reverse recurrence, one segment of kSeg tokens at a time from the states saved every kSeg
// tokens by a first pass; dS is the gradient of the state after the current token.
void plain_bwd(const HostInputs& in, PlainGrads& gr) {
  constexpr int64_t kSeg = 64;
  const int64_t K = in.K, V = in.V, H = in.H, Kg = in.Kg, T = in.T, KV = K * V;
  const float scale = 1.f / std::sqrt(float(K));
  gr.dq.assign(in.q.size(), 0.f);
  gr.dk.assign(in.k.size(), 0.f);
  gr.dv.resize(in.v.size());
  gr.dg.resize(in.g.size());
  gr.dbeta.resize(in.beta.size());
  const int64_t nseg = (T + kSeg - 1) / kSeg;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t item = 0; item < in.B * H; ++item) {
    const int64_t b = item / H, h = item % H;
    std::vector<float> ck(size_t((nseg + 1) * KV), 0.f), states(size_t((kSeg + 1) * KV));
    std::vector<float> u(static_cast<size_t>(V)), dS(size_t(KV), 0.f), Sp(static_cast<size_t>(KV)),
        du(static_cast<size_t>(V)), vm(static_cast<size_t>(V));
    auto row = [&](int64_t t) { return (b * T + t) * H + h; };
    for (int64_t s = 0; s < nseg; ++s) {
      std::copy(ck.begin() + s * KV, ck.begin() + (s + 1) * KV, ck.begin() + (s + 1) * KV);
      for (int64_t t = s * kSeg; t < std::min(T, (s + 1) * kSeg); ++t) {
        const int64_t r = row(t);
        plain_step(&ck[size_t((s + 1) * KV)], nullptr, &in.k[size_t(r * K)], &in.v[size_t(r * V)],
                   &in.g[size_t(r * Kg)], in.beta[size_t(r)], scale, K, V, Kg, u.data(), nullptr);
      }
    }
    for (int64_t s = nseg - 1; s >= 0; --s) {
      const int64_t t0 = s * kSeg, n = std::min(T, t0 + kSeg) - t0;
      std::copy(ck.begin() + s * KV, ck.begin() + (s + 1) * KV, states.begin());
      for (int64_t i = 0; i < n; ++i) {
        const int64_t r = row(t0 + i);
        std::copy(states.begin() + i * KV, states.begin() + (i + 1) * KV,
                  states.begin() + (i + 1) * KV);
        plain_step(&states[size_t((i + 1) * KV)], nullptr, &in.k[size_t(r * K)],
                   &in.v[size_t(r * V)], &in.g[size_t(r * Kg)], in.beta[size_t(r)], scale, K, V, Kg,
                   u.data(), nullptr);
      }
      for (int64_t i = n - 1; i >= 0; --i) {
        const int64_t r = row(t0 + i);
        const float* Sprev = &states[size_t(i * KV)];
        const float* Scur = &states[size_t((i + 1) * KV)];
        const float* q = &in.q[size_t(r * K)];
        const float* k = &in.k[size_t(r * K)];
        const float* v = &in.v[size_t(r * V)];
        const float* g = &in.g[size_t(r * Kg)];
        const float* dy = &in.dout[size_t(r * V)];
        const float beta = in.beta[size_t(r)];
        float* dq = &gr.dq[size_t(r * K)];
        float* dk = &gr.dk[size_t(r * K)];
        const float a0 = std::exp(g[0]);
        for (int64_t c = 0; c < K; ++c) {
          const float a = Kg == 1 ? a0 : std::exp(g[c]);
          for (int64_t j = 0; j < V; ++j) Sp[size_t(c * V + j)] = a * Sprev[c * V + j];
        }
        for (int64_t j = 0; j < V; ++j) vm[size_t(j)] = v[j];
        for (int64_t c = 0; c < K; ++c)
          for (int64_t j = 0; j < V; ++j) vm[size_t(j)] -= k[c] * Sp[size_t(c * V + j)];
        for (int64_t j = 0; j < V; ++j) du[size_t(j)] = 0;
        for (int64_t c = 0; c < K; ++c) {
          float dqc = 0;
          for (int64_t j = 0; j < V; ++j) {
            dS[size_t(c * V + j)] += scale * q[c] * dy[j];
            dqc += Scur[c * V + j] * dy[j];
            du[size_t(j)] += dS[size_t(c * V + j)] * k[c];
          }
          dq[c] = scale * dqc;
        }
        float db = 0;
        for (int64_t j = 0; j < V; ++j) {
          db += du[size_t(j)] * vm[size_t(j)];
          gr.dv[size_t(r * V + j)] = beta * du[size_t(j)];
        }
        gr.dbeta[size_t(r)] = db;
        float dgs = 0;
        for (int64_t c = 0; c < K; ++c) {
          const float a = Kg == 1 ? a0 : std::exp(g[c]);
          float dkc = 0, da = 0;
          for (int64_t j = 0; j < V; ++j) {
            const size_t e = size_t(c * V + j);
            const float w = -beta * du[size_t(j)];
            dkc += dS[e] * (beta * vm[size_t(j)]) + Sp[e] * w;
            const float dsp = dS[e] + k[c] * w;
            da += Sprev[c * V + j] * dsp;
            dS[e] = a * dsp;
          }
          dk[c] = dkc;
          if (Kg == 1)
            dgs += a * da;
          else
            gr.dg[size_t(r * K + c)] = a * da;
        }
        if (Kg == 1) gr.dg[size_t(r)] = dgs;
      }
    }
  }
}

double max_rel_diff(const Context& ctx, const Tensor& got, const std::vector<float>& want) {
  const Tensor host = got.to(Device::cpu(), &ctx).to_dtype(DType::f32);
  const float* p = host.data_as<float>();
  double m = 0, scale = 1e-30;
  for (size_t i = 0; i < want.size(); ++i) {
    scale = std::max(scale, double(std::abs(want[i])));
    m = std::max(m, double(std::abs(p[i] - want[i])));
  }
  return m / scale;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  CLI::App app{"bench_gdn: the gated delta rule, chunked, against a token loop and attention"};
  app.add_option("--device", opt.device, "cpu or cuda[:N]");
  app.add_option("--dtype", opt.dtype, "f32, bf16 or f16 (CUDA)");
  app.add_option("--json", opt.json_path, "where to write the results");
  app.add_option("--batch", opt.batch, "B at the target point");
  app.add_option("--T", opt.T, "T at the target point");
  app.add_option("--heads", opt.heads, "H = HV");
  app.add_option("--dk", opt.dk, "key head dim K (and attention's head dim)");
  app.add_option("--dv", opt.dv, "value head dim V");
  app.add_option("--chunk", opt.chunk, "chunk_size");
  app.add_option("--t-min", opt.t_min, "shortest T of the crossover sweep");
  app.add_option("--t-max", opt.t_max, "longest T of the crossover sweep");
  app.add_option("--reps", opt.reps, "timed runs per point (best of)")->check(CLI::PositiveNumber);
  app.add_option("--rounds", opt.rounds,
                 "alternations of the op and the token loops at the target point (best round)")
      ->check(CLI::PositiveNumber);
  app.add_option("--threads", opt.threads, "CPU threads of the op and the loop (0: all)");
  app.add_flag("--kda", opt.kda, "one decay per key channel (KDA) instead of per head");
  app.add_flag("--l2norm", opt.l2norm, "use_qk_l2norm: the op L2-normalises q and k itself");
  app.add_flag("--no-plain", opt.no_plain, "skip the token loop");
  app.add_flag("--no-crossover", opt.no_crossover, "skip the attention sweep");
  CLI11_PARSE(app, argc, argv);
  if (opt.l2norm && !opt.no_plain) {
    // The token loop normalises nothing: it would disagree with the op on q.
    std::fprintf(stderr, "bench_gdn: --l2norm needs --no-plain (the token loop has no l2norm)\n");
    return 2;
  }

  try {
    const Device dev = parse_device(opt.device);
    const DType dt = parse_dtype(opt.dtype);
    const Context ctx(dev, opt.threads);
    const std::string device_name =
        dev.is_cpu() ? cpu_name() : cuda_status().devices.at(size_t(dev.index)).name;
    const int threads = dev.is_cpu() ? ctx.cpu_threads() : 0;
    omp_set_num_threads(std::max(threads, 1));
    const int64_t B = opt.batch, H = opt.heads, K = opt.dk, V = opt.dv;
    const GatedDeltaRuleParams params{0.0, opt.l2norm, opt.chunk};
    std::printf("gated_delta_rule (%s%s), %s, %s, %d threads, commit %s\n",
                opt.kda ? "KDA gate" : "per-head gate", opt.l2norm ? ", l2norm" : "",
                device_name.c_str(), dtype_name(dt), threads, LONGCTX_GIT_COMMIT);

    // The op on host inputs of length T: forward and backward times, the results, and the calls
    // (on the same device inputs) for later rounds.
    struct OpRun {
      Time fwd, bwd;
      Tensor out, dq, dk, dv, dg, dbeta;
      std::function<void()> fwd_call, bwd_call;
    };
    auto run_op = [&](const HostInputs& in, int reps) {
      const int64_t T = in.T, Kg = in.Kg;
      const DType sdt = dt == DType::f64 ? DType::f64 : DType::f32;
      GatedDeltaRuleInputs x;
      x.q = to_device(in.q, {B, T, H, K}, dt, dev, ctx);
      x.k = to_device(in.k, {B, T, H, K}, dt, dev, ctx);
      x.v = to_device(in.v, {B, T, H, V}, dt, dev, ctx);
      x.g = to_device(in.g, Kg == 1 ? Shape{B, T, H} : Shape{B, T, H, K}, sdt, dev, ctx);
      x.beta = to_device(in.beta, {B, T, H}, dt, dev, ctx);
      const Tensor dout = to_device(in.dout, {B, T, H, V}, dt, dev, ctx);
      OpRun r;
      r.out = Tensor::empty({B, T, H, V}, dt, dev, &ctx);
      const GatedDeltaRuleGrads gr = {
          Tensor::empty(x.q.shape(), dt, dev, &ctx),    Tensor::empty(x.k.shape(), dt, dev, &ctx),
          Tensor::empty(x.v.shape(), dt, dev, &ctx),    Tensor::empty(x.g.shape(), sdt, dev, &ctx),
          Tensor::empty(x.beta.shape(), dt, dev, &ctx), Tensor()};
      const Tensor out = r.out;
      r.fwd_call = [&ctx, out, x, params] { gated_delta_rule_fwd(ctx, out, Tensor(), x, params); };
      r.bwd_call = [&ctx, gr, dout, x, params] {
        gated_delta_rule_bwd(ctx, gr, dout, Tensor(), x, params);
      };
      r.fwd = time_best(ctx, r.fwd_call, reps);
      r.bwd = time_best(ctx, r.bwd_call, reps);
      r.dq = gr.dq, r.dk = gr.dk, r.dv = gr.dv, r.dg = gr.dg, r.dbeta = gr.dbeta;
      return r;
    };

    // 1. The target point.
    auto ms = [](const Time& t) {
      return json{{"wall_ms", t.wall * 1e3},
                  {"wall_median_ms", t.wall_median * 1e3},
                  {"cpu_ms", t.cpu * 1e3}};
    };
    const HostInputs in = make_inputs(B, opt.T, H, K, V, opt.kda);
    OpRun op = run_op(in, opt.reps);
    auto print_op = [&] {
      std::printf(
          "B=%ld T=%ld H=%ld K=%ld V=%ld chunk %ld: chunked forward %.2f ms (median %.2f, %.1f ms "
          "CPU), backward %.2f ms (median %.2f, %.1f ms CPU)\n",
          B, opt.T, H, K, V, opt.chunk, op.fwd.wall * 1e3, op.fwd.wall_median * 1e3,
          op.fwd.cpu * 1e3, op.bwd.wall * 1e3, op.bwd.wall_median * 1e3, op.bwd.cpu * 1e3);
    };
    json target = {{"B", B},
                   {"T", opt.T},
                   {"H", H},
                   {"K", K},
                   {"V", V},
                   {"chunk_size", opt.chunk},
                   {"gate", opt.kda ? "channel" : "head"},
                   {"use_qk_l2norm", opt.l2norm},
                   {"reps", opt.reps}};
    if (opt.no_plain) {
      print_op();
    } else {
      // Rounds: the op (the first round's times are run_op's), then the loops; each one's best.
      std::vector<float> out, fused_out;
      PlainGrads pg;
      Time pf{}, ff{}, pb{};
      json per_round = json::array();
      double lo[3] = {1e30, 1e30, 1e30}, hi[3] = {0, 0, 0};  // CPU-time ratios: fwd, bwd, two-pass
      for (int r = 0; r < opt.rounds; ++r) {
        const bool warm = r > 0;
        Time rf = op.fwd, rb = op.bwd;
        if (warm) {
          rf = time_best(ctx, op.fwd_call, opt.reps, warm);
          rb = time_best(ctx, op.bwd_call, opt.reps, warm);
          op.fwd = better(op.fwd, rf), op.bwd = better(op.bwd, rb);
        }
        const Time rpf = time_best(
            ctx, [&] { loop_fwd(in, out, plain_step); }, std::min(opt.reps, 2), warm);
        const Time rff = time_best(
            ctx, [&] { loop_fwd(in, fused_out, fused_step); }, std::min(opt.reps, 2), warm);
        const Time rpb = time_best(
            ctx, [&] { plain_bwd(in, pg); }, 1, warm);
        pf = warm ? better(pf, rpf) : rpf;
        ff = warm ? better(ff, rff) : rff;
        pb = warm ? better(pb, rpb) : rpb;
        const double ratio[3] = {rpf.cpu / rf.cpu, rpb.cpu / rb.cpu, rff.cpu / rf.cpu};
        for (int i = 0; i < 3; ++i)
          lo[i] = std::min(lo[i], ratio[i]), hi[i] = std::max(hi[i], ratio[i]);
        per_round.push_back({{"fwd_cpu_ratio", ratio[0]},
                             {"bwd_cpu_ratio", ratio[1]},
                             {"two_pass_fwd_cpu_ratio", ratio[2]}});
      }
      print_op();
      const double err[] = {
          max_rel_diff(ctx, op.out, out),      max_rel_diff(ctx, op.dq, pg.dq),
          max_rel_diff(ctx, op.dk, pg.dk),     max_rel_diff(ctx, op.dv, pg.dv),
          max_rel_diff(ctx, op.dg, pg.dg),     max_rel_diff(ctx, op.dbeta, pg.dbeta),
          max_rel_diff(ctx, op.out, fused_out)};
      const char* names[] = {"out", "dq", "dk", "dv", "dg", "dbeta", "out_fused_loop"};
      json check = json::object();
      bool ok = true;
      for (int i = 0; i < 7; ++i) {
        check[names[i]] = err[i];
        // The two agree to the rounding of a long f32 recurrence; a wrong term is O(1).
        ok = ok && err[i] < 1e-3;
      }
      std::printf("token loop: forward %.1f ms (%.1f ms CPU), backward %.1f ms (%.1f ms CPU)\n",
                  pf.wall * 1e3, pf.cpu * 1e3, pb.wall * 1e3, pb.cpu * 1e3);
      std::printf(
          "speedup of the chunked op: forward %.1fx wall, %.1fx CPU; backward %.1fx wall, "
          "%.1fx CPU; forward + backward %.1fx wall, %.1fx CPU\n",
          pf.wall / op.fwd.wall, pf.cpu / op.fwd.cpu, pb.wall / op.bwd.wall, pb.cpu / op.bwd.cpu,
          (pf.wall + pb.wall) / (op.fwd.wall + op.bwd.wall),
          (pf.cpu + pb.cpu) / (op.fwd.cpu + op.bwd.cpu));
      std::printf(
          "two-pass token loop (the decode step's form): forward %.1f ms (%.1f ms CPU); the "
          "chunked forward %.1fx wall, %.1fx CPU faster\n",
          ff.wall * 1e3, ff.cpu * 1e3, ff.wall / op.fwd.wall, ff.cpu / op.fwd.cpu);
      std::printf(
          "each of %d rounds (CPU time): forward %.1f-%.1fx, backward %.1f-%.1fx the token loop; "
          "forward %.1f-%.1fx the two-pass loop\n",
          opt.rounds, lo[0], hi[0], lo[1], hi[1], lo[2], hi[2]);
      std::printf(
          "max |op - loop| / max |loop|: out %.1e dq %.1e dk %.1e dv %.1e dg %.1e dbeta "
          "%.1e (two-pass loop's out %.1e)%s\n",
          err[0], err[1], err[2], err[3], err[4], err[5], err[6], ok ? "" : "  CHECK FAILED");
      target["rounds"] = opt.rounds;
      target["per_round"] = per_round;
      target["plain_fwd"] = ms(pf);
      target["fused_loop_fwd"] = ms(ff);
      target["plain_bwd"] = ms(pb);
      target["check"] = check;
      if (!ok) throw Error("bench_gdn: the op and the token loop disagree");
    }
    target["fwd"] = ms(op.fwd);
    target["bwd"] = ms(op.bwd);
    op.fwd_call = op.bwd_call = nullptr;  // they hold the target's inputs (~160 MB at the defaults)

    // 2. The crossover against causal attention of H heads of dim K.
    json sweep = json::array();
    if (!opt.no_crossover) {
      std::printf("%8s %16s %16s %14s %14s\n", "T", "gdn fwd+bwd ms", "attn fwd+bwd ms",
                  "attn/gdn wall", "attn/gdn CPU");
      AttentionParams ap;
      ap.causal = true;
      int64_t crossover = -1;
      for (int64_t T = opt.t_min; T <= opt.t_max; T *= 2) {
        const HostInputs x = make_inputs(1, T, H, K, K, opt.kda);
        const OpRun g = run_op(x, opt.reps);
        bench::SplitMix64 gen{uint64_t(T)};
        std::vector<float> buf(size_t(T * H * K));
        auto rnd = [&] {
          for (float& e : buf) e = float(gen.uniform(-1, 1));
          return to_device(buf, {1, T, H, K}, dt, dev, ctx);
        };
        const Tensor q = rnd(), k = rnd(), v = rnd(), dout = rnd();
        const Tensor out = Tensor::empty({1, T, H, K}, dt, dev, &ctx);
        const Tensor lse = Tensor::empty({1, H, T}, DType::f32, dev, &ctx);
        const Tensor dq = Tensor::empty(q.shape(), dt, dev, &ctx),
                     dk = Tensor::empty(q.shape(), dt, dev, &ctx),
                     dv = Tensor::empty(q.shape(), dt, dev, &ctx);
        const Time af = time_best(
            ctx, [&] { attention_fwd(ctx, out, lse, q, k, v, ap); }, opt.reps);
        const Time ab = time_best(
            ctx, [&] { attention_bwd(ctx, dq, dk, dv, dout, q, k, v, out, lse, ap); }, opt.reps);
        const double gdn_ms = (g.fwd.wall + g.bwd.wall) * 1e3, attn_ms = (af.wall + ab.wall) * 1e3;
        const double cpu_ratio = (af.cpu + ab.cpu) / (g.fwd.cpu + g.bwd.cpu);
        // Decided on CPU time, which the other jobs of a shared machine do not inflate.
        if (crossover < 0 && cpu_ratio > 1) crossover = T;
        std::printf("%8ld %16.2f %16.2f %14.2f %14.2f\n", T, gdn_ms, attn_ms, attn_ms / gdn_ms,
                    cpu_ratio);
        sweep.push_back({{"T", T},
                         {"gdn_fwd", ms(g.fwd)},
                         {"gdn_bwd", ms(g.bwd)},
                         {"attn_fwd", ms(af)},
                         {"attn_bwd", ms(ab)}});
      }
      if (crossover > 0)
        std::printf("the op takes less CPU time than causal attention from T = %ld on\n",
                    crossover);
      else
        std::printf("causal attention takes less CPU time over the whole sweep\n");
    }

    const json result = {{"bench", "gated_delta_rule"},  {"device", device_name},
                         {"dtype", dtype_name(dt)},      {"threads", threads},
                         {"commit", LONGCTX_GIT_COMMIT}, {"target", target},
                         {"crossover_sweep", sweep}};
    std::ofstream(opt.json_path) << result.dump(2) << "\n";
    std::printf("wrote %s\n", opt.json_path.c_str());
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_gdn: %s\n", e.what());
    return 1;
  }
  return 0;
}
