// MLP mixer (SwiGLU, as in LLaMA): y = (silu(x Wg^T) * (x Wu^T)) Wd^T. The three projections are
// dense or Monarch matrices (mlp.kind; src/model/projection.h).
#include <cmath>

#include "longctx/ops/add.h"
#include "longctx/ops/swiglu.h"
#include "src/model/mixer.h"
#include "src/model/projection.h"

namespace longctx {

namespace {

class MLPMixer : public Mixer {
 public:
  MLPMixer(const ModelConfig& c, int layer)
      : prefix_("layers." + std::to_string(layer) + ".mlp."),
        C_(c.d_model),
        F_(c.mlp.hidden),
        n_layers_(int64_t(c.layers.size())),
        wg_(prefix_ + "wg", C_, F_, c.mlp.kind, c.mlp.nblocks),
        wu_(prefix_ + "wu", C_, F_, c.mlp.kind, c.mlp.nblocks),
        wd_(prefix_ + "wd", F_, C_, c.mlp.kind, c.mlp.nblocks) {}

  void declare(ParamArena& p) const override {
    wg_.declare(p);
    wu_.declare(p);
    wd_.declare(p);
  }

  void init(const ParamArena& host, std::mt19937_64& rng) const override {
    wg_.init(host, 0.02, rng);
    wu_.init(host, 0.02, rng);
    wd_.init(host, 0.02 / std::sqrt(2.0 * double(n_layers_)), rng);
  }

  void bind(const ParamArena& p, const ParamArena& g) override {
    wg_.bind(p, g);
    wu_.bind(p, g);
    wd_.bind(p, g);
  }

  std::vector<std::string> linear_weights() const override {
    std::vector<std::string> names;
    for (const Projection* w : {&wg_, &wu_, &wd_})
      if (!w->linear_weight().empty()) names.push_back(w->linear_weight());
    return names;
  }

  void forward(const Context& ctx, ActivationArena& acts, const Tensor& y,
               const Tensor& x) override {
    const int64_t B = x.size(0), T = x.size(1);
    x_ = x;
    gate_ = acts.take({B, T, F_}, x.dtype());
    up_ = acts.take({B, T, F_}, x.dtype());
    hidden_ = acts.take({B, T, F_}, x.dtype());
    wg_.forward(ctx, acts, gate_, x);
    wu_.forward(ctx, acts, up_, x);
    swiglu_fwd(ctx, hidden_, gate_, up_);
    wd_.forward(ctx, acts, y, hidden_);
  }

  std::unique_ptr<MixerCache> make_cache(const Context&, DType, int64_t, int64_t) const override {
    return nullptr;  // position-wise: nothing to remember
  }
  void decode(const Context& ctx, ActivationArena& acts, MixerCache*, const std::vector<int64_t>&,
              const Tensor& y, const Tensor& x) override {
    forward(ctx, acts, y, x);
  }

  void backward(const Context& ctx, ActivationArena& acts, const Tensor& dx,
                const Tensor& dy) override {
    const DType dt = x_.dtype();
    Tensor dhidden = acts.take(hidden_.shape(), dt);
    Tensor dgate = acts.take(gate_.shape(), dt), dup = acts.take(up_.shape(), dt);
    Tensor dx_part = acts.take(dx.shape(), dt);
    wd_.backward(ctx, dhidden, dy, hidden_);
    swiglu_bwd(ctx, dgate, dup, dhidden, gate_, up_);
    wg_.backward(ctx, dx, dgate, x_);
    wu_.backward(ctx, dx_part, dup, x_);
    add_fwd(ctx, dx, dx, dx_part);
  }

 private:
  std::string prefix_;
  int64_t C_, F_, n_layers_;
  Projection wg_, wu_, wd_;
  Tensor x_, gate_, up_, hidden_;  // saved by forward
};

}  // namespace

std::unique_ptr<Mixer> make_mlp_mixer(const ModelConfig& c, int layer) {
  return std::make_unique<MLPMixer>(c, layer);
}

}  // namespace longctx
