// Mamba-1 mixer (mamba_ssm's Mamba block):
//
//   [x, z] = x W_in^T;   u = silu(causal_conv1d(x))
//   [dt_low, B, C] = u W_x^T;   delta = dt_low W_dt^T        (W_dt's bias is the scan's delta_bias)
//   y = selective_scan(u, delta, A = -exp(A_log), B, C, D, z, delta_bias, delta_softplus)
//   out = y W_out^T
//
// Widths: Di = expand * C inner channels, N = d_state, R = dt_rank; B and C are shared by every
// channel (one group). Activations are (B, T, ·); the scan works channel-first (B, Di, T), so its
// inputs and output are transposed around it; the conv runs channel-last on the projection's
// columns.
//
// Initialisation as mamba_ssm: A_log[d, n] = log(n + 1) (S4D-real), D = 1, W_dt uniform in
// ±R^-1/2, delta_bias = softplus^-1(dt) with dt log-uniform in [dt_min, dt_max] and at least
// 1e-4, the conv as PyTorch's Conv1d default. The projections W_in and W_x are N(0, 0.02) and
// W_out N(0, 0.02 / sqrt(2 * layers)), as the other mixers here.
#include <algorithm>
#include <cmath>
#include <map>

#include "longctx/ops/add.h"
#include "longctx/ops/causal_conv1d.h"
#include "longctx/ops/elementwise.h"
#include "longctx/ops/linear.h"
#include "longctx/ops/selective_scan.h"
#include "src/model/mixer.h"

namespace longctx {

namespace {

class MambaMixer : public Mixer {
 public:
  MambaMixer(const ModelConfig& c, int layer)
      : prefix_("layers." + std::to_string(layer) + ".mamba."),
        C_(c.d_model),
        Di_(c.mamba_inner()),
        N_(c.mamba.d_state),
        R_(c.mamba.dt_rank),
        W_(c.mamba.d_conv),
        n_layers_(int64_t(c.layers.size())),
        dt_min_(c.mamba.dt_min),
        dt_max_(c.mamba.dt_max) {
    scan_params_.delta_softplus = true;
  }

  void declare(ParamArena& p) const override {
    p.declare(prefix_ + "in_proj", {2 * Di_, C_});
    p.declare(prefix_ + "conv_weight", {Di_, W_});
    p.declare(prefix_ + "conv_bias", {Di_});
    p.declare(prefix_ + "x_proj", {R_ + 2 * N_, Di_});
    p.declare(prefix_ + "dt_proj", {Di_, R_});
    p.declare(prefix_ + "dt_bias", {Di_});
    p.declare(prefix_ + "A_log", {Di_, N_});
    p.declare(prefix_ + "D", {Di_});
    p.declare(prefix_ + "out_proj", {C_, Di_});
  }

  void init(const ParamArena& host, std::mt19937_64& rng) const override {
    init_normal(host.get(prefix_ + "in_proj"), 0.02, rng);
    // PyTorch's Conv1d default: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = W.
    init_uniform(host.get(prefix_ + "conv_weight"), 1.0 / std::sqrt(double(W_)), rng);
    init_uniform(host.get(prefix_ + "conv_bias"), 1.0 / std::sqrt(double(W_)), rng);
    init_normal(host.get(prefix_ + "x_proj"), 0.02, rng);
    init_uniform(host.get(prefix_ + "dt_proj"), 1.0 / std::sqrt(double(R_)), rng);
    std::uniform_real_distribution<double> log_dt(std::log(dt_min_), std::log(dt_max_));
    double* dt_bias = host.get(prefix_ + "dt_bias").data_as<double>();
    for (int64_t d = 0; d < Di_; ++d) {
      const double dt = std::max(std::exp(log_dt(rng)), 1e-4);
      dt_bias[d] = dt + std::log(-std::expm1(-dt));  // softplus^-1(dt)
    }
    double* A_log = host.get(prefix_ + "A_log").data_as<double>();
    for (int64_t d = 0; d < Di_; ++d)
      for (int64_t n = 0; n < N_; ++n) A_log[d * N_ + n] = std::log(double(n + 1));
    init_constant(host.get(prefix_ + "D"), 1.0);
    init_normal(host.get(prefix_ + "out_proj"), 0.02 / std::sqrt(2.0 * double(n_layers_)), rng);
  }

  void bind(const ParamArena& p, const ParamArena& g) override {
    bind_views(p, g, prefix_,
               {"in_proj", "conv_weight", "conv_bias", "x_proj", "dt_proj", "dt_bias", "A_log", "D",
                "out_proj"},
               w_, dw_);
  }

  std::vector<std::string> linear_weights() const override {
    std::vector<std::string> names;
    for (const char* w : {"in_proj", "x_proj", "dt_proj", "out_proj"}) names.push_back(prefix_ + w);
    return names;
  }

  void forward(const Context& ctx, ActivationArena& acts, const Tensor& y,
               const Tensor& x) override {
    const int64_t B = x.size(0), T = x.size(1);
    const DType dt = x.dtype();
    x_ = x;
    xz_ = acts.take({B, T, 2 * Di_}, dt);
    linear_fwd(ctx, xz_, x, w_["in_proj"]);
    // The conv, channel-last on x's columns of the projection: u, which x_proj reads as it is
    // and the scan transposed. Before, channel-first, x was transposed into it and u out of it
    // (and backward likewise). Mamba preset, T = 1024, 4096 tokens, two alternating runs: the
    // training step's CPU time outside ops 90-102 -> 75-82 ms and the conv's backward 25-31 ->
    // 19-20 ms (its forward 5.5 -> 6.5-7.1), the prefill's outside ops 46-47 -> 37-39 ms, training
    // memory 390 -> 358 MiB (bench/results/2026-12-06-cpu-mamba2-conv-parts, ab-4.txt).
    u_ = acts.take({B, T, Di_}, dt);
    conv1d_fwd(ctx, layout(), u_, xz_.narrow(2, 0, Di_), w_["conv_weight"], w_["conv_bias"],
               channel_last_conv(Activation::silu));
    scan_in_.u = transposed(ctx, acts, u_);
    // dt_low, B and C from u, then the full-rank delta (its bias is added inside the scan).
    x_dbl_ = acts.take({B, T, R_ + 2 * N_}, dt);
    linear_fwd(ctx, x_dbl_, u_, w_["x_proj"]);
    dt_low_ = acts.take({B, T, R_}, dt);
    dt_low_.copy_from(x_dbl_.narrow(2, 0, R_), &ctx);
    Tensor delta = acts.take({B, T, Di_}, dt);
    linear_fwd(ctx, delta, dt_low_, w_["dt_proj"]);
    scan_in_.delta = transposed(ctx, acts, delta);
    scan_in_.B = transposed(ctx, acts, x_dbl_.narrow(2, R_, N_)).reshape({B, 1, N_, T});
    scan_in_.C = transposed(ctx, acts, x_dbl_.narrow(2, R_ + N_, N_)).reshape({B, 1, N_, T});
    scan_in_.z = transposed(ctx, acts, xz_.narrow(2, Di_, Di_));
    scan_in_.A = acts.take({Di_, N_}, dt);
    neg_exp_fwd(ctx, scan_in_.A, w_["A_log"]);
    scan_in_.D = w_["D"];
    scan_in_.delta_bias = w_["dt_bias"];
    scan_in_.cu_seqlens = layout().cu_seqlens;
    Tensor scan_out = acts.take({B, Di_, T}, dt);
    Tensor last_state = acts.take({layout().sequences(B), Di_, N_}, dt);
    selective_scan_fwd(ctx, layout(), scan_out, last_state, scan_in_, scan_params_);
    scan_out_ = transposed(ctx, acts, scan_out);
    linear_fwd(ctx, y, scan_out_, w_["out_proj"]);
  }

  // Conv state (B, Di, W - 1) and scan state (B, Di, N). The conv advances token by token, the
  // projections run over all new tokens at once, then the scan advances token by token.
  std::unique_ptr<MixerCache> make_cache(const Context& ctx, DType dtype, int64_t batch,
                                         int64_t) const override {
    return std::make_unique<StateCache>(ctx, dtype,
                                        std::vector<Shape>{{batch, Di_, W_ - 1}, {batch, Di_, N_}});
  }

  void decode(const Context& ctx, ActivationArena& acts, MixerCache* cache,
              const std::vector<int64_t>&, const Tensor& y, const Tensor& x) override {
    const StateCache& state = *static_cast<StateCache*>(cache);
    const int64_t B = x.size(0), T = x.size(1);
    const DType dt = x.dtype();
    Tensor xz = acts.take({B, T, 2 * Di_}, dt), u = acts.take({B, T, Di_}, dt);
    linear_fwd(ctx, xz, x, w_["in_proj"]);
    Tensor step = acts.take({B, Di_}, dt);
    for (int64_t t = 0; t < T; ++t) {
      const Tensor conv_in = contiguous_copy(ctx, acts, xz.select(1, t).narrow(1, 0, Di_));
      causal_conv1d_update(ctx, step, state[0], conv_in, w_["conv_weight"], w_["conv_bias"],
                           {Activation::silu});
      u.select(1, t).copy_from(step, &ctx);
    }
    Tensor x_dbl = acts.take({B, T, R_ + 2 * N_}, dt), delta = acts.take({B, T, Di_}, dt);
    linear_fwd(ctx, x_dbl, u, w_["x_proj"]);
    linear_fwd(ctx, delta, contiguous_copy(ctx, acts, x_dbl.narrow(2, 0, R_)), w_["dt_proj"]);
    Tensor A = acts.take({Di_, N_}, dt), out = acts.take({B, T, Di_}, dt);
    neg_exp_fwd(ctx, A, w_["A_log"]);
    for (int64_t t = 0; t < T; ++t) {
      auto at = [&](const Tensor& v, int64_t start, int64_t n) {
        return contiguous_copy(ctx, acts, v.select(1, t).narrow(1, start, n));
      };
      selective_state_update(ctx, step, state[1], at(u, 0, Di_), at(delta, 0, Di_), A,
                             at(x_dbl, R_, N_).reshape({B, 1, N_}),
                             at(x_dbl, R_ + N_, N_).reshape({B, 1, N_}), w_["D"], at(xz, Di_, Di_),
                             w_["dt_bias"], scan_params_);
      out.select(1, t).copy_from(step, &ctx);
    }
    linear_fwd(ctx, y, out, w_["out_proj"]);
  }

  void backward(const Context& ctx, ActivationArena& acts, const Tensor& dx,
                const Tensor& dy) override {
    const int64_t B = x_.size(0), T = x_.size(1);
    const DType dt = x_.dtype();
    Tensor dscan_out = acts.take(scan_out_.shape(), dt);
    linear_bwd(ctx, dscan_out, dw_["out_proj"], {}, dy, scan_out_, w_["out_proj"]);

    SelectiveScanGrads g;
    g.du = acts.take({B, Di_, T}, dt);
    g.ddelta = acts.take({B, Di_, T}, dt);
    g.dA = acts.take({Di_, N_}, dt);
    g.dB = acts.take({B, 1, N_, T}, dt);
    g.dC = acts.take({B, 1, N_, T}, dt);
    g.dD = dw_["D"];
    g.dz = acts.take({B, Di_, T}, dt);
    g.ddelta_bias = dw_["dt_bias"];
    selective_scan_bwd(ctx, layout(), g, transposed(ctx, acts, dscan_out), scan_in_, scan_params_);
    neg_exp_bwd(ctx, dw_["A_log"], g.dA, scan_in_.A);

    // Back through delta = dt_low W_dt^T and [dt_low, B, C] = u W_x^T.
    Tensor ddt_low = acts.take(dt_low_.shape(), dt);
    linear_bwd(ctx, ddt_low, dw_["dt_proj"], {}, transposed(ctx, acts, g.ddelta), dt_low_,
               w_["dt_proj"]);
    Tensor dx_dbl = acts.take(x_dbl_.shape(), dt);
    dx_dbl.narrow(2, 0, R_).copy_from(ddt_low, &ctx);
    dx_dbl.narrow(2, R_, N_).copy_from(g.dB.reshape({B, N_, T}).transpose(1, 2), &ctx);
    dx_dbl.narrow(2, R_ + N_, N_).copy_from(g.dC.reshape({B, N_, T}).transpose(1, 2), &ctx);
    Tensor du = acts.take(u_.shape(), dt);
    linear_bwd(ctx, du, dw_["x_proj"], {}, dx_dbl, u_, w_["x_proj"]);
    // u feeds both the scan and x_proj.
    add_fwd(ctx, du, du, transposed(ctx, acts, g.du));

    Tensor dxz = acts.take(xz_.shape(), dt);
    conv1d_bwd(ctx, layout(), dxz.narrow(2, 0, Di_), dw_["conv_weight"], dw_["conv_bias"], du,
               xz_.narrow(2, 0, Di_), w_["conv_weight"], w_["conv_bias"],
               channel_last_conv(Activation::silu));
    dxz.narrow(2, Di_, Di_).copy_from(g.dz.transpose(1, 2), &ctx);
    linear_bwd(ctx, dx, dw_["in_proj"], {}, dxz, x_, w_["in_proj"]);
  }

 private:
  // A contiguous copy of `t` (B, P, Q) as (B, Q, P).
  static Tensor transposed(const Context& ctx, ActivationArena& acts, const Tensor& t) {
    Tensor out = acts.take({t.size(0), t.size(2), t.size(1)}, t.dtype());
    out.copy_from(t.transpose(1, 2), &ctx);
    return out;
  }

  std::string prefix_;
  int64_t C_, Di_, N_, R_, W_, n_layers_;
  double dt_min_, dt_max_;
  SelectiveScanParams scan_params_;
  std::map<std::string, Tensor> w_, dw_;
  // Saved by forward: the block input, the in_proj output (x's columns: the conv's input), u as
  // (B, T, Di), the x_proj output and its dt_low part, the scan's inputs and its output.
  Tensor x_, xz_, u_, x_dbl_, dt_low_, scan_out_;
  SelectiveScanInputs scan_in_;
};

}  // namespace

std::unique_ptr<Mixer> make_mamba_mixer(const ModelConfig& c, int layer) {
  return std::make_unique<MambaMixer>(c, layer);
}

}  // namespace longctx
