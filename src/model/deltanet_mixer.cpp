// Gated DeltaNet ('G', as fla's GatedDeltaNet and Qwen3-Next build it) and Kimi Delta Attention
// ('K', as fla's KimiDeltaAttention and Kimi Linear build it): one mixer, the gates differing.
//
//   [qkv, b, ...] = x W_in^T;  [q, k, v] = silu(causal_conv1d(qkv))   (q, k: H heads of K; v: HV
//   heads of V, each q/k head serving HV / H of them)
//   beta = sigmoid(b)                                                  (B, T, HV)
//   G:  g = -exp(A_log) * softplus(a + dt_bias),  a = x W_a^T          (B, T, HV): per head
//   K:  g = -exp(A_log) * softplus(f + dt_bias),  f = (x W_fd^T) W_fu^T (B, T, HV, K): per key
//       channel, through a rank-V projection (Kimi's f_proj)
//   o = gated_delta_rule(q, k, v, g, beta; use_qk_l2norm, scale 1/sqrt(K))   (B, T, HV, V)
//   G:  out = (rmsnorm(o) * silu(z)) W_out^T,  z = x W_z^T               (norm per head over V)
//   K:  out = (rmsnorm(o) * sigmoid(z)) W_out^T,  z = (x W_gd^T) W_gu^T + b_gu   (Kimi's g_proj)
//
// One input projection W_in holds the rows of q, k, v, b and then, for G, z and a; for K, the
// rank-V down-projections of f and z. The conv is depthwise, so one conv over the q, k and v
// channels is fla's three separate ones; like fla's and Qwen3-Next's, it has no bias.
// Activations are (B, T, ·); the conv runs channel-last on the projection's columns, once for each
// of q, k and v, and writes them (or, backward, their gradients' share of the projection's)
// where they go, so nothing is transposed or copied around it.
#include <cmath>
#include <map>

#include "longctx/ops/causal_conv1d.h"
#include "longctx/ops/elementwise.h"
#include "longctx/ops/gated_delta_rule.h"
#include "longctx/ops/gdn_gate.h"
#include "longctx/ops/linear.h"
#include "longctx/ops/rmsnorm.h"
#include "longctx/ops/swiglu.h"
#include "src/model/mixer.h"

namespace longctx {

namespace {

class DeltaNetMixer : public Mixer {
 public:
  DeltaNetMixer(const ModelConfig& c, int layer, bool kda)
      : prefix_("layers." + std::to_string(layer) + (kda ? ".kda." : ".deltanet.")),
        kda_(kda),
        C_(c.d_model),
        H_(c.deltanet.n_heads),
        HV_(c.deltanet.n_v_heads),
        K_(c.deltanet.head_k_dim),
        V_(c.deltanet.head_v_dim),
        W_(c.deltanet.d_conv),
        n_layers_(int64_t(c.layers.size())),
        eps_(c.norm_eps) {
    gdr_params_.use_qk_l2norm = true;
    gdr_params_.chunk_size = c.deltanet.chunk_size;
  }

  // Widths: q and k H·K each, v and z HV·V; the gate HV (G) or HV·K (K) channels.
  int64_t key_width() const { return H_ * K_; }
  int64_t value_width() const { return HV_ * V_; }
  int64_t gate_width() const { return kda_ ? HV_ * K_ : HV_; }
  int64_t conv_channels() const { return 2 * key_width() + value_width(); }
  // W_in's rows: [qkv | b | z | a] for G, [qkv | b | f_down | z_down] for K.
  int64_t b_at() const { return conv_channels(); }
  int64_t third_at() const { return b_at() + HV_; }  // z (G) or f_down (K)
  int64_t fourth_at() const { return third_at() + (kda_ ? V_ : value_width()); }  // a or z_down
  int64_t proj_width() const { return fourth_at() + (kda_ ? V_ : HV_); }

  void declare(ParamArena& p) const override {
    p.declare(prefix_ + "in_proj", {proj_width(), C_});
    p.declare(prefix_ + "conv_weight", {conv_channels(), W_});
    if (kda_) {
      p.declare(prefix_ + "f_up", {gate_width(), V_});
      p.declare(prefix_ + "z_up", {value_width(), V_});
      p.declare(prefix_ + "z_up_bias", {value_width()});
    }
    p.declare(prefix_ + "A_log", {HV_});
    p.declare(prefix_ + "dt_bias", {gate_width()});
    p.declare(prefix_ + "norm", {V_});
    p.declare(prefix_ + "out_proj", {C_, value_width()});
  }

  // fla's initialisation: projections normal(0, 0.02) (its initializer_range), biases zero;
  // PyTorch's Conv1d default for the conv, uniform(-1/sqrt(W), 1/sqrt(W)); A = exp(A_log)
  // uniform in [0, 16] (GatedDeltaNet; KimiDeltaAttention: [1, 16]); dt log-uniform in
  // [1e-3, 1e-1], floored at 1e-4, stored as its inverse softplus in dt_bias (one per head for G,
  // per key channel for K); the output norm's weight 1. out_proj as the other mixers' output
  // projections: 0.02 / sqrt(2 * layers), GPT-2's residual scaling.
  void init(const ParamArena& host, std::mt19937_64& rng) const override {
    init_normal(host.get(prefix_ + "in_proj"), 0.02, rng);
    init_uniform(host.get(prefix_ + "conv_weight"), 1.0 / std::sqrt(double(W_)), rng);
    if (kda_) {
      init_normal(host.get(prefix_ + "f_up"), 0.02, rng);
      init_normal(host.get(prefix_ + "z_up"), 0.02, rng);
      init_constant(host.get(prefix_ + "z_up_bias"), 0.0);
    }
    std::uniform_real_distribution<double> a(kda_ ? 1.0 : 0.0, 16.0);
    for (int64_t h = 0; h < HV_; ++h)
      host.get(prefix_ + "A_log").data_as<double>()[h] = std::log(a(rng));
    std::uniform_real_distribution<double> log_dt(std::log(1e-3), std::log(1e-1));
    for (int64_t c = 0; c < gate_width(); ++c) {
      const double dt = std::max(std::exp(log_dt(rng)), 1e-4);
      host.get(prefix_ + "dt_bias").data_as<double>()[c] = dt + std::log(-std::expm1(-dt));
    }
    init_constant(host.get(prefix_ + "norm"), 1.0);
    init_normal(host.get(prefix_ + "out_proj"), 0.02 / std::sqrt(2.0 * double(n_layers_)), rng);
  }

  void bind(const ParamArena& p, const ParamArena& g) override {
    bind_views(p, g, prefix_, {"in_proj", "conv_weight", "A_log", "dt_bias", "norm", "out_proj"},
               w_, dw_);
    if (kda_) bind_views(p, g, prefix_, {"f_up", "z_up", "z_up_bias"}, w_, dw_);
  }

  std::vector<std::string> linear_weights() const override {
    std::vector<std::string> names = {prefix_ + "in_proj", prefix_ + "out_proj"};
    if (kda_)
      for (const char* w : {"f_up", "z_up"}) names.push_back(prefix_ + w);
    return names;
  }

  void forward(const Context& ctx, ActivationArena& acts, const Tensor& y,
               const Tensor& x) override {
    const int64_t B = x.size(0), T = x.size(1);
    const DType dt = x.dtype();
    x_ = x;
    proj_ = acts.take({B, T, proj_width()}, dt);
    linear_fwd(ctx, proj_, x, w_["in_proj"]);
    // The conv over q, k and v, one part at a time (it is depthwise), reading the projection's
    // columns and writing the delta rule's inputs. Before, qkv was transposed into (B, Cc, T) for
    // a channel-first conv and back, and copied apart (backward likewise): per 4096-token prefill
    // at T = 1024 the CPU time outside ops was 58 ms (gdn), 30 (kimi), 42 (qwen3next),
    // now 5.3, 1.5, 4.1; medians of 6 alternating rounds: prefill gdn 1.36x, qwen3next 1.12x,
    // training gdn 1.17x, kimi 1.18x, qwen3next 1.10x; training memory gdn 531 -> 339 MiB
    // (bench/results/2026-12-06-cpu-mamba2-conv-parts, second part).
    in_.q = acts.take({B, T, H_, K_}, dt);
    in_.k = acts.take({B, T, H_, K_}, dt);
    in_.v = acts.take({B, T, HV_, V_}, dt);
    for (const ConvPart& part : conv_parts({in_.q, in_.k, in_.v}))
      conv1d_fwd(ctx, layout(), part.activation(), part.columns(proj_, 0),
                 part.channels(w_["conv_weight"]), {}, channel_last_conv(Activation::silu));
    gates(ctx, acts, proj_, in_.beta, in_.g, a_, f_down_);
    in_.cu_seqlens = layout().cu_seqlens;
    o_ = acts.take({B, T, HV_, V_}, dt);
    gated_delta_rule_fwd(ctx, layout(), o_, in_, gdr_params_);
    normed_ = acts.take({B, T, HV_, V_}, dt);
    rstd_ = acts.take({B * T * HV_}, dt);
    z_ = output_gate(ctx, acts, proj_, z_down_);
    gated_ = acts.take({B, T, value_width()}, dt);
    norm_and_gate(ctx, gated_, normed_, rstd_, o_, z_);
    linear_fwd(ctx, y, gated_, w_["out_proj"]);
  }

  // Conv state (B, conv channels, W - 1) and the delta rule's state S (B, HV, K, V): constant in
  // the context length. The projections, gates, norm and output run over all new tokens at once;
  // the conv and the recurrence advance token by token.
  std::unique_ptr<MixerCache> make_cache(const Context& ctx, DType dtype, int64_t batch,
                                         int64_t) const override {
    return std::make_unique<StateCache>(
        ctx, dtype, std::vector<Shape>{{batch, conv_channels(), W_ - 1}, {batch, HV_, K_, V_}});
  }

  void decode(const Context& ctx, ActivationArena& acts, MixerCache* cache,
              const std::vector<int64_t>&, const Tensor& y, const Tensor& x) override {
    const StateCache& state = *static_cast<StateCache*>(cache);
    const int64_t B = x.size(0), T = x.size(1), Cc = conv_channels();
    const DType dt = x.dtype();
    Tensor proj = acts.take({B, T, proj_width()}, dt);
    linear_fwd(ctx, proj, x, w_["in_proj"]);
    Tensor beta, g, a, f_down;
    gates(ctx, acts, proj, beta, g, a, f_down);
    Tensor o = acts.take({B, T, HV_, V_}, dt), step_out = acts.take({B, HV_, V_}, dt);
    Tensor qkv = acts.take({B, Cc}, dt);
    const Shape g_step = kda_ ? Shape{B, HV_, K_} : Shape{B, HV_};
    for (int64_t t = 0; t < T; ++t) {
      const Tensor qkv_in = copy(ctx, acts, proj.select(1, t).narrow(1, 0, Cc));
      causal_conv1d_update(ctx, qkv, state[0], qkv_in, w_["conv_weight"], {}, {Activation::silu});
      const Tensor q = copy(ctx, acts, qkv.narrow(1, 0, key_width())).reshape({B, H_, K_});
      const Tensor k =
          copy(ctx, acts, qkv.narrow(1, key_width(), key_width())).reshape({B, H_, K_});
      const Tensor v =
          copy(ctx, acts, qkv.narrow(1, 2 * key_width(), value_width())).reshape({B, HV_, V_});
      const Tensor gs = copy(ctx, acts, g.select(1, t)).reshape(g_step);
      const Tensor bs = copy(ctx, acts, beta.select(1, t));
      gated_delta_rule_update(ctx, step_out, state[1], q, k, v, gs, bs, gdr_params_);
      o.select(1, t).copy_from(step_out, &ctx);
    }
    Tensor z_down;
    const Tensor z = output_gate(ctx, acts, proj, z_down);
    Tensor normed = acts.take({B, T, HV_, V_}, dt), rstd = acts.take({B * T * HV_}, dt);
    Tensor gated = acts.take({B, T, value_width()}, dt);
    norm_and_gate(ctx, gated, normed, rstd, o, z);
    linear_fwd(ctx, y, gated, w_["out_proj"]);
  }

  void backward(const Context& ctx, ActivationArena& acts, const Tensor& dx,
                const Tensor& dy) override {
    const int64_t B = x_.size(0), T = x_.size(1);
    const DType dt = x_.dtype();
    // Output projection, gate, norm.
    Tensor dgated = acts.take(gated_.shape(), dt);
    linear_bwd(ctx, dgated, dw_["out_proj"], {}, dy, gated_, w_["out_proj"]);
    Tensor dz = acts.take(z_.shape(), dt), dnormed = acts.take(normed_.shape(), dt);
    const Tensor normed_flat = normed_.reshape({B, T, value_width()});
    const Tensor dnormed_flat = dnormed.reshape({B, T, value_width()});
    if (kda_)
      sigmoid_gate_bwd(ctx, dz, dnormed_flat, dgated, z_, normed_flat);
    else
      swiglu_bwd(ctx, dz, dnormed_flat, dgated, z_, normed_flat);
    Tensor d_o = acts.take(o_.shape(), dt);
    rmsnorm_bwd(ctx, d_o, dw_["norm"], dnormed, o_, w_["norm"], rstd_, {eps_});
    // The delta rule.
    GatedDeltaRuleGrads g;
    g.dq = acts.take(in_.q.shape(), dt);
    g.dk = acts.take(in_.k.shape(), dt);
    g.dv = acts.take(in_.v.shape(), dt);
    g.dg = acts.take(in_.g.shape(), dt);
    g.dbeta = acts.take(in_.beta.shape(), dt);
    gated_delta_rule_bwd(ctx, layout(), g, d_o, in_, gdr_params_);

    Tensor dproj = acts.take(proj_.shape(), dt);
    // beta = sigmoid(b).
    Tensor db = acts.take(in_.beta.shape(), dt);
    sigmoid_bwd(ctx, db, g.dbeta, in_.beta);
    dproj.narrow(2, b_at(), HV_).copy_from(db, &ctx);
    // The decay: dA_log, ddt_bias and the gate pre-activation's gradient.
    Tensor da = acts.take(a_.shape(), dt);
    gdn_gate_bwd(ctx, da, dw_["A_log"], dw_["dt_bias"], g.dg.reshape(a_.shape()), a_, w_["A_log"],
                 w_["dt_bias"]);
    if (kda_) {
      Tensor df_down = acts.take(f_down_.shape(), dt), dz_down = acts.take(z_down_.shape(), dt);
      linear_bwd(ctx, df_down, dw_["f_up"], {}, da, f_down_, w_["f_up"]);
      linear_bwd(ctx, dz_down, dw_["z_up"], dw_["z_up_bias"], dz, z_down_, w_["z_up"]);
      dproj.narrow(2, third_at(), V_).copy_from(df_down, &ctx);
      dproj.narrow(2, fourth_at(), V_).copy_from(dz_down, &ctx);
    } else {
      dproj.narrow(2, third_at(), value_width()).copy_from(dz, &ctx);
      dproj.narrow(2, fourth_at(), HV_).copy_from(da, &ctx);
    }
    // q, k, v through the silu conv, part by part as in forward: each part's input gradient
    // goes straight into its columns of the projection's gradient.
    for (const ConvPart& part : conv_parts({g.dq, g.dk, g.dv}))
      conv1d_bwd(ctx, layout(), part.columns(dproj, 0), part.channels(dw_["conv_weight"]), {},
                 part.activation(), part.columns(proj_, 0), part.channels(w_["conv_weight"]), {},
                 channel_last_conv(Activation::silu));
    linear_bwd(ctx, dx, dw_["in_proj"], {}, dproj, x_, w_["in_proj"]);
  }

 private:
  static Tensor copy(const Context& ctx, ActivationArena& acts, const Tensor& view) {
    return contiguous_copy(ctx, acts, view);
  }

  // From the projection (B, T, ·): beta (B, T, HV) and the log decay g, (B, T, HV) or
  // (B, T, HV, K); `a` is the gate's pre-activation (B, T, gate width) and, for KDA, `f_down`
  // its rank-V input (B, T, V).
  void gates(const Context& ctx, ActivationArena& acts, const Tensor& proj, Tensor& beta, Tensor& g,
             Tensor& a, Tensor& f_down) {
    const int64_t B = proj.size(0), T = proj.size(1);
    const DType dt = proj.dtype();
    beta = acts.take({B, T, HV_}, dt);
    sigmoid_fwd(ctx, beta, copy(ctx, acts, proj.narrow(2, b_at(), HV_)));
    if (kda_) {
      f_down = copy(ctx, acts, proj.narrow(2, third_at(), V_));
      a = acts.take({B, T, gate_width()}, dt);
      linear_fwd(ctx, a, f_down, w_["f_up"]);
    } else {
      a = copy(ctx, acts, proj.narrow(2, fourth_at(), HV_));
    }
    g = acts.take(a.shape(), dt);
    gdn_gate_fwd(ctx, g, a, w_["A_log"], w_["dt_bias"]);
    if (kda_) g = g.reshape({B, T, HV_, K_});
  }

  // The output gate's pre-activation z (B, T, HV·V); for KDA also its rank-V input z_down.
  Tensor output_gate(const Context& ctx, ActivationArena& acts, const Tensor& proj,
                     Tensor& z_down) {
    if (!kda_) return copy(ctx, acts, proj.narrow(2, third_at(), value_width()));
    const int64_t B = proj.size(0), T = proj.size(1);
    z_down = copy(ctx, acts, proj.narrow(2, fourth_at(), V_));
    Tensor z = acts.take({B, T, value_width()}, proj.dtype());
    linear_fwd(ctx, z, z_down, w_["z_up"], w_["z_up_bias"]);
    return z;
  }

  // gated = rmsnorm(o) * silu(z) (G) or * sigmoid(z) (K), the norm per value head.
  void norm_and_gate(const Context& ctx, const Tensor& gated, const Tensor& normed,
                     const Tensor& rstd, const Tensor& o, const Tensor& z) {
    rmsnorm_fwd(ctx, normed, rstd, o, w_["norm"], {eps_});
    const Tensor flat = normed.reshape(gated.shape());
    if (kda_)
      sigmoid_gate_fwd(ctx, gated, z, flat);
    else
      swiglu_fwd(ctx, gated, z, flat);
  }

  std::string prefix_;
  bool kda_;
  int64_t C_, H_, HV_, K_, V_, W_, n_layers_;
  double eps_;
  GatedDeltaRuleParams gdr_params_;
  std::map<std::string, Tensor> w_, dw_;
  // Saved by forward.
  Tensor x_, proj_, a_, f_down_, z_down_, o_, normed_, rstd_, z_, gated_;
  GatedDeltaRuleInputs in_;
};

}  // namespace

std::unique_ptr<Mixer> make_deltanet_mixer(const ModelConfig& c, int layer, bool kda) {
  return std::make_unique<DeltaNetMixer>(c, layer, kda);
}

}  // namespace longctx
