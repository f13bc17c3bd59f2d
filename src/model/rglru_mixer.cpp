// RG-LRU mixer: Griffin's / Hawk's recurrent block.
//
//   g = x W_gate^T                       (gate branch)
//   c = causal_conv1d(x W_in^T)          (recurrent branch; depthwise, width d_conv, bias)
//   r = sigmoid(c W_a^T + b_a),  i = sigmoid(c W_i^T + b_i)
//   log a = -8 r softplus(lambda),  h_t = a_t h_{t-1} + sqrt(1 - a_t^2) (i_t c_t)
//   y = (silu(g) * h) W_out^T
//
// The gates come from rglru_gate, the recurrence from linear_scan (width Dr = rglru.width). Two
// departures from Griffin, both to reuse ops: the gate weights W_a, W_i are dense Dr x Dr
// (Griffin's are block-diagonal) and the gate branch uses SiLU (Griffin's GeLU).
// Initialisation: lambda so that a = exp(-8 softplus(lambda)) at r = 1 is uniform in
// [0.9, 0.999] (Griffin's range); projections N(0, 0.02), W_out N(0, 0.02 / sqrt(2 layers)),
// gate biases 0, the conv as PyTorch's Conv1d default.
#include <cmath>
#include <map>

#include "longctx/ops/add.h"
#include "longctx/ops/causal_conv1d.h"
#include "longctx/ops/linear.h"
#include "longctx/ops/linear_scan.h"
#include "longctx/ops/rglru_gate.h"
#include "longctx/ops/swiglu.h"
#include "src/model/mixer.h"

namespace longctx {

namespace {

class RGLRUMixer : public Mixer {
 public:
  RGLRUMixer(const ModelConfig& c, int layer)
      : prefix_("layers." + std::to_string(layer) + ".rglru."),
        C_(c.d_model),
        Dr_(c.rglru.width),
        W_(c.rglru.d_conv),
        n_layers_(int64_t(c.layers.size())) {}

  void declare(ParamArena& p) const override {
    p.declare(prefix_ + "in_proj", {Dr_, C_});
    p.declare(prefix_ + "gate_proj", {Dr_, C_});
    p.declare(prefix_ + "conv_weight", {Dr_, W_});
    p.declare(prefix_ + "conv_bias", {Dr_});
    p.declare(prefix_ + "w_a", {Dr_, Dr_});
    p.declare(prefix_ + "b_a", {Dr_});
    p.declare(prefix_ + "w_i", {Dr_, Dr_});
    p.declare(prefix_ + "b_i", {Dr_});
    p.declare(prefix_ + "lambda", {Dr_});
    p.declare(prefix_ + "out_proj", {C_, Dr_});
  }

  void init(const ParamArena& host, std::mt19937_64& rng) const override {
    for (const char* name : {"in_proj", "gate_proj", "w_a", "w_i"})
      init_normal(host.get(prefix_ + name), 0.02, rng);
    const double bound = 1.0 / std::sqrt(double(W_));
    init_uniform(host.get(prefix_ + "conv_weight"), bound, rng);
    init_uniform(host.get(prefix_ + "conv_bias"), bound, rng);
    init_constant(host.get(prefix_ + "b_a"), 0.0);
    init_constant(host.get(prefix_ + "b_i"), 0.0);
    std::uniform_real_distribution<double> a(0.9, 0.999);
    double* lambda = host.get(prefix_ + "lambda").data_as<double>();
    for (int64_t d = 0; d < Dr_; ++d) {
      const double s = -std::log(a(rng)) / 8;  // softplus(lambda)
      lambda[d] = s + std::log(-std::expm1(-s));
    }
    init_normal(host.get(prefix_ + "out_proj"), 0.02 / std::sqrt(2.0 * double(n_layers_)), rng);
  }

  void bind(const ParamArena& p, const ParamArena& g) override {
    bind_views(p, g, prefix_,
               {"in_proj", "gate_proj", "conv_weight", "conv_bias", "w_a", "b_a", "w_i", "b_i",
                "lambda", "out_proj"},
               w_, dw_);
  }

  std::vector<std::string> linear_weights() const override {
    std::vector<std::string> names;
    for (const char* w : {"in_proj", "gate_proj", "w_a", "w_i", "out_proj"})
      names.push_back(prefix_ + w);
    return names;
  }

  void forward(const Context& ctx, ActivationArena& acts, const Tensor& y,
               const Tensor& x) override {
    const int64_t B = x.size(0), T = x.size(1);
    const DType dt = x.dtype();
    x_ = x;
    g_ = acts.take({B, T, Dr_}, dt);
    linear_fwd(ctx, g_, x, w_["gate_proj"]);
    conv_in_ = acts.take({B, T, Dr_}, dt);
    linear_fwd(ctx, conv_in_, x, w_["in_proj"]);
    // The conv channel-last, where the projection left its input. Before, channel-first with a
    // transpose on either side (and two in backward); one hawk training step at T = 1024 (4096
    // tokens, --profile, two runs each): CPU time outside ops 17-19 -> 1-2 ms, the conv's
    // backward (channel-last: blocked over steps) 10-11 -> 3.4-3.7 ms, the step 419-443 -> 362-381
    // ms CPU; prefill outside ops 9.2 -> 0.5 ms (bench/results/2026-12-06-cpu-mamba2-conv-parts).
    c_ = acts.take({B, T, Dr_}, dt);
    conv1d_fwd(ctx, layout(), c_, conv_in_, w_["conv_weight"], w_["conv_bias"],
               channel_last_conv(Activation::none));
    recurrence(ctx, acts, c_, {});
    gated_ = acts.take({B, T, Dr_}, dt);
    swiglu_fwd(ctx, gated_, g_, h_);
    linear_fwd(ctx, y, gated_, w_["out_proj"]);
  }

  void backward(const Context& ctx, ActivationArena& acts, const Tensor& dx,
                const Tensor& dy) override {
    const DType dt = x_.dtype();
    const Shape shape = c_.shape();
    Tensor dgated = acts.take(shape, dt), dg = acts.take(shape, dt), dh = acts.take(shape, dt);
    linear_bwd(ctx, dgated, dw_["out_proj"], {}, dy, gated_, w_["out_proj"]);
    swiglu_bwd(ctx, dg, dh, dgated, g_, h_);
    Tensor da = acts.take(shape, dt), db = acts.take(shape, dt);
    scan_bwd(ctx, layout(), da, db, dh, a_, h_);
    Tensor dc = acts.take(shape, dt), dga = acts.take(shape, dt), dgx = acts.take(shape, dt);
    rglru_gate_bwd(ctx, dc, dga, dgx, dw_["lambda"], da, db, c_, ga_, gx_, w_["lambda"]);
    Tensor dc_part = acts.take(shape, dt);
    linear_bwd(ctx, dc_part, dw_["w_a"], dw_["b_a"], dga, c_, w_["w_a"]);
    add_fwd(ctx, dc, dc, dc_part);
    linear_bwd(ctx, dc_part, dw_["w_i"], dw_["b_i"], dgx, c_, w_["w_i"]);
    add_fwd(ctx, dc, dc, dc_part);
    Tensor dconv_in = acts.take(conv_in_.shape(), dt);
    conv1d_bwd(ctx, layout(), dconv_in, dw_["conv_weight"], dw_["conv_bias"], dc, conv_in_,
               w_["conv_weight"], w_["conv_bias"], channel_last_conv(Activation::none));
    Tensor dx_part = acts.take(dx.shape(), dt);
    linear_bwd(ctx, dx, dw_["in_proj"], {}, dconv_in, x_, w_["in_proj"]);
    linear_bwd(ctx, dx_part, dw_["gate_proj"], {}, dg, x_, w_["gate_proj"]);
    add_fwd(ctx, dx, dx, dx_part);
  }

  // Conv state (B, Dr, W - 1) and the recurrence's state (B, Dr). The conv advances token by
  // token; the gates and the scan (from the cached state) run over all new tokens at once.
  std::unique_ptr<MixerCache> make_cache(const Context& ctx, DType dtype, int64_t batch,
                                         int64_t) const override {
    return std::make_unique<StateCache>(ctx, dtype,
                                        std::vector<Shape>{{batch, Dr_, W_ - 1}, {batch, Dr_}});
  }

  void decode(const Context& ctx, ActivationArena& acts, MixerCache* cache,
              const std::vector<int64_t>&, const Tensor& y, const Tensor& x) override {
    const StateCache& state = *static_cast<StateCache*>(cache);
    const int64_t B = x.size(0), T = x.size(1);
    const DType dt = x.dtype();
    Tensor g = acts.take({B, T, Dr_}, dt), xr = acts.take({B, T, Dr_}, dt);
    linear_fwd(ctx, g, x, w_["gate_proj"]);
    linear_fwd(ctx, xr, x, w_["in_proj"]);
    Tensor c = acts.take({B, T, Dr_}, dt), step = acts.take({B, Dr_}, dt);
    for (int64_t t = 0; t < T; ++t) {
      causal_conv1d_update(ctx, step, state[0], contiguous_copy(ctx, acts, xr.select(1, t)),
                           w_["conv_weight"], w_["conv_bias"], {Activation::none});
      c.select(1, t).copy_from(step, &ctx);
    }
    recurrence(ctx, acts, c, state[1]);
    state[1].copy_from(last_, &ctx);
    Tensor gated = acts.take({B, T, Dr_}, dt);
    swiglu_fwd(ctx, gated, g, h_);
    linear_fwd(ctx, y, gated, w_["out_proj"]);
  }

 private:
  // The gates and the scan over c (B, T, Dr) from the state h0 (zeros when undefined): sets
  // ga_, gx_, a_, h_ and last_.
  void recurrence(const Context& ctx, ActivationArena& acts, const Tensor& c, const Tensor& h0) {
    const Shape shape = c.shape();
    const DType dt = c.dtype();
    ga_ = acts.take(shape, dt), gx_ = acts.take(shape, dt);
    linear_fwd(ctx, ga_, c, w_["w_a"], w_["b_a"]);
    linear_fwd(ctx, gx_, c, w_["w_i"], w_["b_i"]);
    a_ = acts.take(shape, dt);
    Tensor b = acts.take(shape, dt);
    rglru_gate_fwd(ctx, a_, b, c, ga_, gx_, w_["lambda"]);
    h_ = acts.take(shape, dt), last_ = acts.take({layout().sequences(shape[0]), Dr_}, dt);
    if (h0.defined())  // decode, from the cached state
      linear_scan_fwd(ctx, h_, last_, a_, b, h0, layout().cu_seqlens);
    else
      scan_fwd(ctx, layout(), h_, last_, a_, b);
  }

  std::string prefix_;
  int64_t C_, Dr_, W_, n_layers_;
  std::map<std::string, Tensor> w_, dw_;
  // Saved by forward: the block input, the gate branch, the conv input and output c (B, T, Dr),
  // the gate pre-activations, a, the states h, the gated product; last_ for decode.
  Tensor x_, g_, conv_in_, c_, ga_, gx_, a_, h_, last_, gated_;
};

}  // namespace

std::unique_ptr<Mixer> make_rglru_mixer(const ModelConfig& c, int layer) {
  return std::make_unique<RGLRUMixer>(c, layer);
}

}  // namespace longctx
