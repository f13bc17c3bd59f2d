// Attention mixer: q/k/v projections, RoPE, causal (optionally sliding-window) flash attention
// with GQA/MQA, output projection.
//
//   q = rope(x Wq^T)  (B, T, H, D)      k = rope(x Wk^T), v = x Wv^T  (B, T, Hkv, D)
//   y = attention(q, k, v; causal, window) Wo^T
#include <algorithm>
#include <cmath>
#include <tuple>

#include "longctx/ops/add.h"
#include "longctx/ops/attention.h"
#include "longctx/ops/linear.h"
#include "longctx/ops/rope.h"
#include "src/model/mixer.h"

namespace longctx {

namespace {

class AttentionMixer : public Mixer {
 public:
  AttentionMixer(const ModelConfig& c, int layer, bool sliding)
      : prefix_("layers." + std::to_string(layer) + ".attn."),
        C_(c.d_model),
        H_(c.attention.n_heads),
        Hkv_(c.attention.n_kv_heads),
        D_(c.head_dim()),
        n_layers_(int64_t(c.layers.size())),
        rope_{c.attention.rope_theta} {
    attn_.causal = true;
    if (sliding) attn_.window_left = int(c.attention.window - 1);  // sees `window` tokens
  }

  void declare(ParamArena& p) const override {
    p.declare(prefix_ + "wq", {H_ * D_, C_});
    p.declare(prefix_ + "wk", {Hkv_ * D_, C_});
    p.declare(prefix_ + "wv", {Hkv_ * D_, C_});
    p.declare(prefix_ + "wo", {C_, H_ * D_});
  }

  void init(const ParamArena& host, std::mt19937_64& rng) const override {
    for (const char* w : {"wq", "wk", "wv"}) init_normal(host.get(prefix_ + w), 0.02, rng);
    // GPT-2's scaling of residual output projections by 1/sqrt(2 * layers).
    init_normal(host.get(prefix_ + "wo"), 0.02 / std::sqrt(2.0 * double(n_layers_)), rng);
  }

  void bind(const ParamArena& p, const ParamArena& g) override {
    wq_ = p.get(prefix_ + "wq"), wk_ = p.get(prefix_ + "wk"), wv_ = p.get(prefix_ + "wv");
    wo_ = p.get(prefix_ + "wo");
    dwq_ = g.get(prefix_ + "wq"), dwk_ = g.get(prefix_ + "wk"), dwv_ = g.get(prefix_ + "wv");
    dwo_ = g.get(prefix_ + "wo");
  }

  void forward(const Context& ctx, ActivationArena& acts, const Tensor& y,
               const Tensor& x) override {
    const int64_t B = x.size(0), T = x.size(1);
    const DType dt = x.dtype();
    x_ = x;
    q_ = acts.take({B, T, H_, D_}, dt);
    k_ = acts.take({B, T, Hkv_, D_}, dt);
    v_ = acts.take({B, T, Hkv_, D_}, dt);
    o_ = acts.take({B, T, H_, D_}, dt);
    lse_ = acts.take({B, H_, T}, dt == DType::f64 ? DType::f64 : DType::f32);
    linear_fwd(ctx, flat(q_), x, wq_);
    linear_fwd(ctx, flat(k_), x, wk_);
    linear_fwd(ctx, flat(v_), x, wv_);
    rope_fwd(ctx, q_, q_, {}, rope_);
    rope_fwd(ctx, k_, k_, {}, rope_);
    attention_fwd(ctx, o_, lse_, q_, k_, v_, attn_);
    linear_fwd(ctx, y, flat(o_), wo_);
  }

  // The KV cache: k and v after RoPE, (B, max_len, Hkv, D). A sliding-window layer keeps only
  // the newest window - 1 positions, (B, window - 1, Hkv, D), right-aligned: its memory does not
  // grow with the context (nor exceed max_len, when the window is wider than the context).
  std::unique_ptr<MixerCache> make_cache(const Context& ctx, DType dtype, int64_t batch,
                                         int64_t max_len) const override {
    const int64_t len = sliding() ? std::min<int64_t>(attn_.window_left, max_len) : max_len;
    return std::make_unique<StateCache>(
        ctx, dtype, std::vector<Shape>{{batch, len, Hkv_, D_}, {batch, len, Hkv_, D_}});
  }

  void decode(const Context& ctx, ActivationArena& acts, MixerCache* cache, int64_t pos,
              const Tensor& y, const Tensor& x) override {
    const StateCache& kv = *static_cast<StateCache*>(cache);
    const int64_t B = x.size(0), T = x.size(1);
    const DType dt = x.dtype();
    Tensor q = acts.take({B, T, H_, D_}, dt), k = acts.take({B, T, Hkv_, D_}, dt);
    Tensor v = acts.take({B, T, Hkv_, D_}, dt), o = acts.take({B, T, H_, D_}, dt);
    Tensor lse = acts.take({B, H_, T}, dt == DType::f64 ? DType::f64 : DType::f32);
    linear_fwd(ctx, flat(q), x, wq_);
    linear_fwd(ctx, flat(k), x, wk_);
    linear_fwd(ctx, flat(v), x, wv_);
    // A sliding layer attends over its kept keys followed by the new ones (a full layer's cache
    // takes the new keys in place).
    const int64_t keep = sliding() ? kv[0].size(1) : 0, have = std::min(pos, keep);
    // RoPE at positions pos .. pos + T - 1; the attention's key count per sequence.
    Tensor positions = Tensor::empty({B, T}, DType::i32), seqlens = Tensor::empty({B}, DType::i32);
    for (int64_t b = 0; b < B; ++b) {
      seqlens.data_as<int32_t>()[b] = int32_t(sliding() ? have + T : pos);
      for (int64_t t = 0; t < T; ++t) positions.data_as<int32_t>()[b * T + t] = int32_t(pos + t);
    }
    if (!ctx.device().is_cpu()) {
      positions = positions.to(ctx.device(), &ctx);
      seqlens = seqlens.to(ctx.device(), &ctx);
    }
    rope_fwd(ctx, q, q, positions, rope_);
    rope_fwd(ctx, k, k, positions, rope_);
    if (!sliding()) {
      attention_decode(ctx, o, lse, q, kv[0], kv[1], seqlens, k, v, attn_);
    } else {
      Tensor keys = acts.take({B, have + T, Hkv_, D_}, dt);
      Tensor values = acts.take({B, have + T, Hkv_, D_}, dt);
      for (auto [all, kept, fresh] : {std::tuple{&keys, &kv[0], &k}, {&values, &kv[1], &v}}) {
        all->narrow(1, 0, have).copy_from(kept->narrow(1, keep - have, have), &ctx);
        all->narrow(1, have, T).copy_from(*fresh, &ctx);
      }
      attention_decode(ctx, o, lse, q, keys, values, seqlens, {}, {}, attn_);
      const int64_t now = std::min(have + T, keep);  // the newest keys, right-aligned
      kv[0].narrow(1, keep - now, now).copy_from(keys.narrow(1, have + T - now, now), &ctx);
      kv[1].narrow(1, keep - now, now).copy_from(values.narrow(1, have + T - now, now), &ctx);
    }
    linear_fwd(ctx, y, flat(o), wo_);
  }

  void backward(const Context& ctx, ActivationArena& acts, const Tensor& dx,
                const Tensor& dy) override {
    const DType dt = x_.dtype();
    Tensor d_o = acts.take(o_.shape(), dt);
    Tensor dq = acts.take(q_.shape(), dt), dk = acts.take(k_.shape(), dt);
    Tensor dv = acts.take(v_.shape(), dt), dx_part = acts.take(dx.shape(), dt);
    linear_bwd(ctx, flat(d_o), dwo_, {}, dy, flat(o_), wo_);
    attention_bwd(ctx, dq, dk, dv, d_o, q_, k_, v_, o_, lse_, attn_);
    rope_bwd(ctx, dq, dq, {}, rope_);
    rope_bwd(ctx, dk, dk, {}, rope_);
    linear_bwd(ctx, dx, dwq_, {}, flat(dq), x_, wq_);
    linear_bwd(ctx, dx_part, dwk_, {}, flat(dk), x_, wk_);
    add_fwd(ctx, dx, dx, dx_part);
    linear_bwd(ctx, dx_part, dwv_, {}, flat(dv), x_, wv_);
    add_fwd(ctx, dx, dx, dx_part);
  }

 private:
  // (B, T, heads, D) viewed as (B, T, heads * D) for the projections.
  bool sliding() const { return attn_.window_left >= 0; }

  static Tensor flat(const Tensor& t) {
    return t.reshape({t.size(0), t.size(1), t.size(2) * t.size(3)});
  }

  std::string prefix_;
  int64_t C_, H_, Hkv_, D_, n_layers_;
  RopeParams rope_;
  AttentionParams attn_;
  Tensor wq_, wk_, wv_, wo_, dwq_, dwk_, dwv_, dwo_;
  Tensor x_, q_, k_, v_, o_, lse_;  // saved by forward
};

}  // namespace

std::unique_ptr<Mixer> make_attention_mixer(const ModelConfig& c, int layer, bool sliding) {
  return std::make_unique<AttentionMixer>(c, layer, sliding);
}

}  // namespace longctx
