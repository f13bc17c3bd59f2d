// MLP mixer (SwiGLU, as in LLaMA): y = (silu(x Wg^T) * (x Wu^T)) Wd^T.
#include <cmath>

#include "longctx/ops/add.h"
#include "longctx/ops/linear.h"
#include "longctx/ops/swiglu.h"
#include "src/model/mixer.h"

namespace longctx {

namespace {

class MLPMixer : public Mixer {
 public:
  MLPMixer(const ModelConfig& c, int layer)
      : prefix_("layers." + std::to_string(layer) + ".mlp."),
        C_(c.d_model),
        F_(c.mlp.hidden),
        n_layers_(int64_t(c.layers.size())) {}

  void declare(ParamArena& p) const override {
    p.declare(prefix_ + "wg", {F_, C_});
    p.declare(prefix_ + "wu", {F_, C_});
    p.declare(prefix_ + "wd", {C_, F_});
  }

  void init(const ParamArena& host, std::mt19937_64& rng) const override {
    init_normal(host.get(prefix_ + "wg"), 0.02, rng);
    init_normal(host.get(prefix_ + "wu"), 0.02, rng);
    init_normal(host.get(prefix_ + "wd"), 0.02 / std::sqrt(2.0 * double(n_layers_)), rng);
  }

  void bind(const ParamArena& p, const ParamArena& g) override {
    wg_ = p.get(prefix_ + "wg"), wu_ = p.get(prefix_ + "wu"), wd_ = p.get(prefix_ + "wd");
    dwg_ = g.get(prefix_ + "wg"), dwu_ = g.get(prefix_ + "wu"), dwd_ = g.get(prefix_ + "wd");
  }

  void forward(const Context& ctx, ActivationArena& acts, const Tensor& y,
               const Tensor& x) override {
    const int64_t B = x.size(0), T = x.size(1);
    x_ = x;
    gate_ = acts.take({B, T, F_}, x.dtype());
    up_ = acts.take({B, T, F_}, x.dtype());
    hidden_ = acts.take({B, T, F_}, x.dtype());
    linear_fwd(ctx, gate_, x, wg_);
    linear_fwd(ctx, up_, x, wu_);
    swiglu_fwd(ctx, hidden_, gate_, up_);
    linear_fwd(ctx, y, hidden_, wd_);
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
    linear_bwd(ctx, dhidden, dwd_, {}, dy, hidden_, wd_);
    swiglu_bwd(ctx, dgate, dup, dhidden, gate_, up_);
    linear_bwd(ctx, dx, dwg_, {}, dgate, x_, wg_);
    linear_bwd(ctx, dx_part, dwu_, {}, dup, x_, wu_);
    add_fwd(ctx, dx, dx, dx_part);
  }

 private:
  std::string prefix_;
  int64_t C_, F_, n_layers_;
  Tensor wg_, wu_, wd_, dwg_, dwu_, dwd_;
  Tensor x_, gate_, up_, hidden_;  // saved by forward
};

}  // namespace

std::unique_ptr<Mixer> make_mlp_mixer(const ModelConfig& c, int layer) {
  return std::make_unique<MLPMixer>(c, layer);
}

}  // namespace longctx
