// Attention mixer: q/k/v projections, RoPE, causal (optionally sliding-window) flash attention
// with GQA/MQA, output projection; optionally Qwen3-Next's output gate.
//
//   q = rope(x Wq^T)  (B, T, H, D)      k = rope(x Wk^T), v = x Wv^T  (B, T, Hkv, D)
//   o = attention(q, k, v; causal, window)
//   y = o Wo^T,  or gated: y = (o * sigmoid(x Wgate^T)) Wo^T, one gate per channel of o
//
// Qwen3-Next draws the gate from the same projection as q (its q_proj is twice as wide); a
// separate Wgate is the same function with the rows apart.
#include <algorithm>
#include <cmath>
#include <tuple>
#include <utility>
#include <vector>

#include "longctx/ops/add.h"
#include "longctx/ops/attention.h"
#include "longctx/ops/elementwise.h"
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
        gated_(c.attention.gated),
        rope_{c.attention.rope_theta} {
    attn_.causal = true;
    if (sliding) attn_.window_left = int(c.attention.window - 1);  // sees `window` tokens
  }

  void declare(ParamArena& p) const override {
    p.declare(prefix_ + "wq", {H_ * D_, C_});
    p.declare(prefix_ + "wk", {Hkv_ * D_, C_});
    p.declare(prefix_ + "wv", {Hkv_ * D_, C_});
    p.declare(prefix_ + "wo", {C_, H_ * D_});
    if (gated_) p.declare(prefix_ + "wgate", {H_ * D_, C_});
  }

  void init(const ParamArena& host, std::mt19937_64& rng) const override {
    for (const char* w : {"wq", "wk", "wv"}) init_normal(host.get(prefix_ + w), 0.02, rng);
    // GPT-2's scaling of residual output projections by 1/sqrt(2 * layers).
    init_normal(host.get(prefix_ + "wo"), 0.02 / std::sqrt(2.0 * double(n_layers_)), rng);
    // The gate's rows are q_proj's in Qwen3-Next, initialised with them: normal(0, 0.02).
    if (gated_) init_normal(host.get(prefix_ + "wgate"), 0.02, rng);
  }

  void bind(const ParamArena& p, const ParamArena& g) override {
    wq_ = p.get(prefix_ + "wq"), wk_ = p.get(prefix_ + "wk"), wv_ = p.get(prefix_ + "wv");
    wo_ = p.get(prefix_ + "wo");
    dwq_ = g.get(prefix_ + "wq"), dwk_ = g.get(prefix_ + "wk"), dwv_ = g.get(prefix_ + "wv");
    dwo_ = g.get(prefix_ + "wo");
    if (gated_) wgate_ = p.get(prefix_ + "wgate"), dwgate_ = g.get(prefix_ + "wgate");
  }

  std::vector<std::string> linear_weights() const override {
    std::vector<std::string> names;
    for (const char* w : {"wq", "wk", "wv", "wo", "wgate"})
      if (gated_ || std::string(w) != "wgate") names.push_back(prefix_ + w);
    return names;
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
    lse_ = acts.take({B, H_, T}, stat_dtype(dt));
    linear_fwd(ctx, flat(q_), x, wq_);
    linear_fwd(ctx, flat(k_), x, wk_);
    linear_fwd(ctx, flat(v_), x, wv_);
    rope_fwd(ctx, q_, q_, layout().positions, rope_);
    rope_fwd(ctx, k_, k_, layout().positions, rope_);
    attention_fwd(ctx, layout(), o_, lse_, q_, k_, v_, attn_);
    if (gated_) {
      gate_ = acts.take({B, T, H_ * D_}, dt);
      gated_o_ = acts.take({B, T, H_ * D_}, dt);
      output_gate(ctx, gated_o_, gate_, x, o_);
    }
    linear_fwd(ctx, y, gated_ ? gated_o_ : flat(o_), wo_);
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

  void decode(const Context& ctx, ActivationArena& acts, MixerCache* cache,
              const std::vector<int64_t>& lengths, const Tensor& y, const Tensor& x) override {
    const StateCache& kv = *static_cast<StateCache*>(cache);
    const int64_t B = x.size(0), T = x.size(1);
    const DType dt = x.dtype();
    Tensor q = acts.take({B, T, H_, D_}, dt), k = acts.take({B, T, Hkv_, D_}, dt);
    Tensor v = acts.take({B, T, Hkv_, D_}, dt), o = acts.take({B, T, H_, D_}, dt);
    Tensor lse = acts.take({B, H_, T}, stat_dtype(dt));
    linear_fwd(ctx, flat(q), x, wq_);
    linear_fwd(ctx, flat(k), x, wk_);
    linear_fwd(ctx, flat(v), x, wv_);
    // A sliding layer attends over its kept keys followed by the new ones (a full layer's cache
    // takes the new keys in place): sequence b keeps have[b] of them.
    const int64_t keep = sliding() ? kv[0].size(1) : 0;
    std::vector<int64_t> have(static_cast<size_t>(B));
    int64_t most = 0;
    for (int64_t b = 0; b < B; ++b)
      most = std::max(most, have[size_t(b)] = std::min(lengths[size_t(b)], keep));
    // RoPE at each sequence's positions lengths[b] .. lengths[b] + T - 1; its key count. On the
    // CPU from the arena: two allocations a layer less in a decode step.
    const bool cpu = ctx.device().is_cpu();
    Tensor positions = cpu ? acts.take({B, T}, DType::i32) : Tensor::empty({B, T}, DType::i32);
    Tensor seqlens = cpu ? acts.take({B}, DType::i32) : Tensor::empty({B}, DType::i32);
    for (int64_t b = 0; b < B; ++b) {
      seqlens.data_as<int32_t>()[b] = int32_t(sliding() ? have[size_t(b)] + T : lengths[size_t(b)]);
      for (int64_t t = 0; t < T; ++t)
        positions.data_as<int32_t>()[b * T + t] = int32_t(lengths[size_t(b)] + t);
    }
    if (!cpu) {
      positions = positions.to(ctx.device(), &ctx);
      seqlens = seqlens.to(ctx.device(), &ctx);
    }
    rope_fwd(ctx, q, q, positions, rope_);
    rope_fwd(ctx, k, k, positions, rope_);
    if (!sliding()) {
      attention_decode(ctx, o, lse, q, kv[0], kv[1], seqlens, k, v, attn_);
    } else {
      // Row b: its kept keys, then the new ones; the rows past have[b] + T are not read.
      Tensor keys = acts.take({B, most + T, Hkv_, D_}, dt);
      Tensor values = acts.take({B, most + T, Hkv_, D_}, dt);
      for (int64_t b = 0; b < B; ++b) {
        const int64_t hb = have[size_t(b)];
        for (auto [all, kept, fresh] : {std::tuple{&keys, &kv[0], &k}, {&values, &kv[1], &v}}) {
          Tensor row = all->narrow(0, b, 1);
          row.narrow(1, 0, hb).copy_from(kept->narrow(0, b, 1).narrow(1, keep - hb, hb), &ctx);
          row.narrow(1, hb, T).copy_from(fresh->narrow(0, b, 1), &ctx);
        }
      }
      attention_decode(ctx, o, lse, q, keys, values, seqlens, {}, {}, attn_);
      for (int64_t b = 0; b < B; ++b) {  // the newest keys, right-aligned
        const int64_t hb = have[size_t(b)], now = std::min(hb + T, keep);
        for (auto [kept, all] : {std::pair{&kv[0], &keys}, {&kv[1], &values}})
          kept->narrow(0, b, 1)
              .narrow(1, keep - now, now)
              .copy_from(all->narrow(0, b, 1).narrow(1, hb + T - now, now), &ctx);
      }
    }
    if (gated_) {
      Tensor gate = acts.take({B, T, H_ * D_}, dt), gated_o = acts.take({B, T, H_ * D_}, dt);
      output_gate(ctx, gated_o, gate, x, o);
      o = gated_o.reshape(o.shape());
    }
    linear_fwd(ctx, y, flat(o), wo_);
  }

  void backward(const Context& ctx, ActivationArena& acts, const Tensor& dx,
                const Tensor& dy) override {
    const DType dt = x_.dtype();
    Tensor d_o = acts.take(o_.shape(), dt);
    Tensor dq = acts.take(q_.shape(), dt), dk = acts.take(k_.shape(), dt);
    Tensor dv = acts.take(v_.shape(), dt), dx_part = acts.take(dx.shape(), dt);
    Tensor dgate;
    if (gated_) {
      Tensor dgated_o = acts.take(gated_o_.shape(), dt);
      dgate = acts.take(gate_.shape(), dt);
      linear_bwd(ctx, dgated_o, dwo_, {}, dy, gated_o_, wo_);
      sigmoid_gate_bwd(ctx, dgate, flat(d_o), dgated_o, gate_, flat(o_));
    } else {
      linear_bwd(ctx, flat(d_o), dwo_, {}, dy, flat(o_), wo_);
    }
    attention_bwd(ctx, layout(), dq, dk, dv, d_o, q_, k_, v_, o_, lse_, attn_);
    rope_bwd(ctx, dq, dq, layout().positions, rope_);
    rope_bwd(ctx, dk, dk, layout().positions, rope_);
    linear_bwd(ctx, dx, dwq_, {}, flat(dq), x_, wq_);
    linear_bwd(ctx, dx_part, dwk_, {}, flat(dk), x_, wk_);
    add_fwd(ctx, dx, dx, dx_part);
    linear_bwd(ctx, dx_part, dwv_, {}, flat(dv), x_, wv_);
    add_fwd(ctx, dx, dx, dx_part);
    if (gated_) {
      linear_bwd(ctx, dx_part, dwgate_, {}, dgate, x_, wgate_);
      add_fwd(ctx, dx, dx, dx_part);
    }
  }

 private:
  // (B, T, heads, D) viewed as (B, T, heads * D) for the projections.
  bool sliding() const { return attn_.window_left >= 0; }

  // gated_o = o * sigmoid(gate), gate = x Wgate^T; (B, T, H * D).
  void output_gate(const Context& ctx, const Tensor& gated_o, const Tensor& gate, const Tensor& x,
                   const Tensor& o) const {
    linear_fwd(ctx, gate, x, wgate_);
    sigmoid_gate_fwd(ctx, gated_o, gate, flat(o));
  }

  static Tensor flat(const Tensor& t) {
    return t.reshape({t.size(0), t.size(1), t.size(2) * t.size(3)});
  }

  std::string prefix_;
  int64_t C_, H_, Hkv_, D_, n_layers_;
  bool gated_;
  RopeParams rope_;
  AttentionParams attn_;
  Tensor wq_, wk_, wv_, wo_, wgate_, dwq_, dwk_, dwv_, dwo_, dwgate_;
  Tensor x_, q_, k_, v_, o_, lse_, gate_, gated_o_;  // saved by forward
};

}  // namespace

std::unique_ptr<Mixer> make_attention_mixer(const ModelConfig& c, int layer, bool sliding) {
  return std::make_unique<AttentionMixer>(c, layer, sliding);
}

}  // namespace longctx
