// Mamba-2 mixer (mamba_ssm's Mamba2 block):
//
//   [z, xBC, dt] = x W_in^T;  xBC = silu(causal_conv1d(xBC));  [x, B, C] = xBC
//   y = ssd(x, dt, A = -exp(A_log), B, C, D, dt_bias, dt_softplus)
//   out = rmsnorm(y * silu(z)) W_out^T            (the gated RMSNorm, norm after the gate)
//
// Widths: Di = expand * C inner channels in H = Di / P heads; B and C have G groups of N;
// the conv runs over the Di + 2·G·N channels of xBC. Activations are (B, T, ·); the conv runs
// channel-last on xBC where the projection left it, so nothing is transposed.
#include <cmath>
#include <map>

#include "longctx/ops/add.h"
#include "longctx/ops/causal_conv1d.h"
#include "longctx/ops/elementwise.h"
#include "longctx/ops/linear.h"
#include "longctx/ops/rmsnorm.h"
#include "longctx/ops/ssd.h"
#include "longctx/ops/swiglu.h"
#include "src/model/mixer.h"

namespace longctx {

namespace {

class Mamba2Mixer : public Mixer {
 public:
  Mamba2Mixer(const ModelConfig& c, int layer)
      : prefix_("layers." + std::to_string(layer) + ".mamba2."),
        C_(c.d_model),
        Di_(c.mamba2_inner()),
        H_(c.mamba2_heads()),
        P_(c.mamba2.head_dim),
        G_(c.mamba2.n_groups),
        N_(c.mamba2.d_state),
        W_(c.mamba2.d_conv),
        n_layers_(int64_t(c.layers.size())),
        eps_(c.norm_eps) {
    ssd_params_.chunk_size = c.mamba2.chunk_size;
    ssd_params_.dt_softplus = true;
  }

  int64_t conv_channels() const { return Di_ + 2 * G_ * N_; }
  int64_t proj_width() const { return Di_ + conv_channels() + H_; }

  void declare(ParamArena& p) const override {
    p.declare(prefix_ + "in_proj", {proj_width(), C_});
    p.declare(prefix_ + "conv_weight", {conv_channels(), W_});
    p.declare(prefix_ + "conv_bias", {conv_channels()});
    p.declare(prefix_ + "dt_bias", {H_});
    p.declare(prefix_ + "A_log", {H_});
    p.declare(prefix_ + "D", {H_});
    p.declare(prefix_ + "norm", {Di_});
    p.declare(prefix_ + "out_proj", {C_, Di_});
  }

  void init(const ParamArena& host, std::mt19937_64& rng) const override {
    init_normal(host.get(prefix_ + "in_proj"), 0.02, rng);
    // PyTorch's Conv1d default: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = W.
    const double bound = 1.0 / std::sqrt(double(W_));
    init_uniform(host.get(prefix_ + "conv_weight"), bound, rng);
    init_uniform(host.get(prefix_ + "conv_bias"), bound, rng);
    // dt log-uniform in [1e-3, 1e-1], stored as its inverse softplus; A uniform in [1, 16].
    std::uniform_real_distribution<double> log_dt(std::log(1e-3), std::log(1e-1)), a(1.0, 16.0);
    for (int64_t h = 0; h < H_; ++h) {
      const double dt = std::exp(log_dt(rng));
      host.get(prefix_ + "dt_bias").data_as<double>()[h] = dt + std::log(-std::expm1(-dt));
      host.get(prefix_ + "A_log").data_as<double>()[h] = std::log(a(rng));
    }
    init_constant(host.get(prefix_ + "D"), 1.0);
    init_constant(host.get(prefix_ + "norm"), 1.0);
    init_normal(host.get(prefix_ + "out_proj"), 0.02 / std::sqrt(2.0 * double(n_layers_)), rng);
  }

  void bind(const ParamArena& p, const ParamArena& g) override {
    bind_views(p, g, prefix_,
               {"in_proj", "conv_weight", "conv_bias", "dt_bias", "A_log", "D", "norm", "out_proj"},
               w_, dw_);
  }

  std::vector<std::string> linear_weights() const override {
    std::vector<std::string> names;
    for (const char* w : {"in_proj", "out_proj"}) names.push_back(prefix_ + w);
    return names;
  }

  void forward(const Context& ctx, ActivationArena& acts, const Tensor& y,
               const Tensor& x) override {
    const int64_t B = x.size(0), T = x.size(1), K = conv_channels();
    const DType dt = x.dtype();
    x_ = x;
    proj_ = acts.take({B, T, proj_width()}, dt);
    linear_fwd(ctx, proj_, x, w_["in_proj"]);
    // The conv reads xBC straight out of the projection (channel-last, rows proj_width apart).
    // Before, xBC was transposed into (B, K, T) for a channel-first conv and back: the prefill's
    // CPU time outside ops (these copies) was 24-42 ms per 4096 tokens, then 8-11; prefill CPU
    // time mamba2 -15 to -22 %, hybrid -6 % (bench/results/2026-12-05-cpu-mamba2-layout, load
    // 12-24); the training step, once the channel-last conv backward was blocked over steps
    // (cheaper than the channel-first one: 2.9-3.6 against 4.6-6.8 ms a call), mamba2 1.06x,
    // hybrid 1.03x (load ~3.7, the same folder's addendum). The conv is depthwise, so it runs once
    // per part of xBC and writes x, B and C as the contiguous tensors the SSD takes, instead of
    // writing a (B, T, K) xBC that three row copies then split (ConvPart): the prefill's
    // CPU time outside ops 7.1-7.5 -> 3.2-3.3 ms per 4096 tokens (mamba2), the training memory
    // at T = 256 354 -> 306 MiB, the same bits (bench/results/2026-12-06-cpu-mamba2-conv-parts).
    ssd_in_.x = acts.take({B, T, H_, P_}, dt);
    ssd_in_.B = acts.take({B, T, G_, N_}, dt);
    ssd_in_.C = acts.take({B, T, G_, N_}, dt);
    for (const ConvPart& part : conv_parts({ssd_in_.x, ssd_in_.B, ssd_in_.C}))
      conv1d_fwd(ctx, layout(), part.activation(), part.columns(proj_, Di_),
                 part.channels(w_["conv_weight"]), part.channels(w_["conv_bias"]),
                 channel_last_conv(Activation::silu));
    ssd_in_.dt = contiguous(ctx, acts, proj_.narrow(2, Di_ + K, H_));
    ssd_in_.A = acts.take({H_}, dt);
    neg_exp_fwd(ctx, ssd_in_.A, w_["A_log"]);
    ssd_in_.D = w_["D"];
    ssd_in_.dt_bias = w_["dt_bias"];
    ssd_in_.cu_seqlens = layout().cu_seqlens;
    ssd_out_ = acts.take({B, T, H_, P_}, dt);
    Tensor final_states = acts.take({layout().sequences(B), H_, P_, N_}, dt);
    ssd_fwd(ctx, layout(), ssd_out_, final_states, ssd_in_, ssd_params_);
    // Gate, then norm, then project.
    z_ = contiguous(ctx, acts, proj_.narrow(2, 0, Di_));
    gated_ = acts.take({B, T, Di_}, dt);
    swiglu_fwd(ctx, gated_, z_, ssd_out_.reshape({B, T, Di_}));
    normed_ = acts.take({B, T, Di_}, dt);
    rstd_ = acts.take({B * T}, dt);
    rmsnorm_fwd(ctx, normed_, rstd_, gated_, w_["norm"], {eps_});
    linear_fwd(ctx, y, normed_, w_["out_proj"]);
  }

  // Conv state (B, K, W - 1) and SSD state (B, H, P, N). The projections, the gate and the norm
  // run over all new tokens at once; the conv and the SSD advance token by token.
  std::unique_ptr<MixerCache> make_cache(const Context& ctx, DType dtype, int64_t batch,
                                         int64_t) const override {
    return std::make_unique<StateCache>(
        ctx, dtype, std::vector<Shape>{{batch, conv_channels(), W_ - 1}, {batch, H_, P_, N_}});
  }

  void decode(const Context& ctx, ActivationArena& acts, MixerCache* cache,
              const std::vector<int64_t>&, const Tensor& y, const Tensor& x) override {
    const StateCache& state = *static_cast<StateCache*>(cache);
    const int64_t B = x.size(0), T = x.size(1), K = conv_channels();
    const DType dt = x.dtype();
    Tensor proj = acts.take({B, T, proj_width()}, dt);
    linear_fwd(ctx, proj, x, w_["in_proj"]);
    Tensor A = acts.take({H_}, dt), out = acts.take({B, T, H_, P_}, dt);
    neg_exp_fwd(ctx, A, w_["A_log"]);
    Tensor xbc = acts.take({B, K}, dt), xbc_in, step_out = acts.take({B, H_, P_}, dt);
    for (int64_t t = 0; t < T; ++t) {
      const Tensor row = proj.select(1, t);  // (B, proj_width)
      xbc_in = contiguous_copy(ctx, acts, row.narrow(1, Di_, K));
      causal_conv1d_update(ctx, xbc, state[0], xbc_in, w_["conv_weight"], w_["conv_bias"],
                           {Activation::silu});
      const Tensor xs = contiguous_copy(ctx, acts, xbc.narrow(1, 0, Di_)).reshape({B, H_, P_});
      const Tensor Bs =
          contiguous_copy(ctx, acts, xbc.narrow(1, Di_, G_ * N_)).reshape({B, G_, N_});
      const Tensor Cs =
          contiguous_copy(ctx, acts, xbc.narrow(1, Di_ + G_ * N_, G_ * N_)).reshape({B, G_, N_});
      const Tensor dts = contiguous_copy(ctx, acts, row.narrow(1, Di_ + K, H_));
      ssd_state_update(ctx, step_out, state[1], xs, dts, A, Bs, Cs, w_["D"], {}, w_["dt_bias"],
                       ssd_params_);
      out.select(1, t).copy_from(step_out, &ctx);
    }
    const Tensor z = contiguous_copy(ctx, acts, proj.narrow(2, 0, Di_));
    Tensor gated = acts.take({B, T, Di_}, dt), normed = acts.take({B, T, Di_}, dt);
    Tensor rstd = acts.take({B * T}, dt);
    swiglu_fwd(ctx, gated, z, out.reshape({B, T, Di_}));
    rmsnorm_fwd(ctx, normed, rstd, gated, w_["norm"], {eps_});
    linear_fwd(ctx, y, normed, w_["out_proj"]);
  }

  void backward(const Context& ctx, ActivationArena& acts, const Tensor& dx,
                const Tensor& dy) override {
    const int64_t B = x_.size(0), T = x_.size(1), K = conv_channels();
    const DType dt = x_.dtype();
    Tensor dnormed = acts.take(normed_.shape(), dt), dgated = acts.take(gated_.shape(), dt);
    linear_bwd(ctx, dnormed, dw_["out_proj"], {}, dy, normed_, w_["out_proj"]);
    rmsnorm_bwd(ctx, dgated, dw_["norm"], dnormed, gated_, w_["norm"], rstd_, {eps_});
    Tensor dz = acts.take(z_.shape(), dt), dssd_out = acts.take(ssd_out_.shape(), dt);
    swiglu_bwd(ctx, dz, dssd_out.reshape({B, T, Di_}), dgated, z_, ssd_out_.reshape({B, T, Di_}));

    SSDGrads g;
    g.dx = acts.take(ssd_in_.x.shape(), dt);
    g.ddt = acts.take(ssd_in_.dt.shape(), dt);
    g.dA = acts.take({H_}, dt);
    g.dB = acts.take(ssd_in_.B.shape(), dt);
    g.dC = acts.take(ssd_in_.C.shape(), dt);
    g.dD = dw_["D"];
    g.ddt_bias = dw_["dt_bias"];
    ssd_bwd(ctx, layout(), g, dssd_out, ssd_in_, ssd_params_);
    neg_exp_bwd(ctx, dw_["A_log"], g.dA, ssd_in_.A);

    // Gradient of xBC (through the silu conv, part by part as in forward), then of the whole
    // projection. The conv's input gradient goes straight into its columns of the projection's.
    Tensor dproj = acts.take(proj_.shape(), dt);
    for (const ConvPart& part : conv_parts({g.dx, g.dB, g.dC}))
      conv1d_bwd(ctx, layout(), part.columns(dproj, Di_), part.channels(dw_["conv_weight"]),
                 part.channels(dw_["conv_bias"]), part.activation(), part.columns(proj_, Di_),
                 part.channels(w_["conv_weight"]), part.channels(w_["conv_bias"]),
                 channel_last_conv(Activation::silu));
    dproj.narrow(2, 0, Di_).copy_from(dz, &ctx);
    dproj.narrow(2, Di_ + K, H_).copy_from(g.ddt, &ctx);
    linear_bwd(ctx, dx, dw_["in_proj"], {}, dproj, x_, w_["in_proj"]);
  }

 private:
  static Tensor contiguous(const Context& ctx, ActivationArena& acts, const Tensor& view) {
    return contiguous_copy(ctx, acts, view);
  }

  std::string prefix_;
  int64_t C_, Di_, H_, P_, G_, N_, W_, n_layers_;
  double eps_;
  SSDParams ssd_params_;
  std::map<std::string, Tensor> w_, dw_;
  // Saved by forward.
  Tensor x_, proj_, ssd_out_, z_, gated_, normed_, rstd_;
  SSDInputs ssd_in_;
};

}  // namespace

std::unique_ptr<Mixer> make_mamba2_mixer(const ModelConfig& c, int layer) {
  return std::make_unique<Mamba2Mixer>(c, layer);
}

}  // namespace longctx
