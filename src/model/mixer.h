// Mixer: the residual branch of one layer, y = f(x) with x already normalised, (B, T, C) -> same.
// One implementation per LayerKind (attention_mixer.cpp, mlp_mixer.cpp, ...).
#pragma once

#include <initializer_list>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "longctx/dist/communicator.h"
#include "longctx/dist/layout.h"
#include "longctx/model/arena.h"
#include "longctx/model/config.h"
#include "longctx/ops/attention.h"
#include "longctx/ops/causal_conv1d.h"
#include "longctx/ops/gated_delta_rule.h"
#include "longctx/ops/selective_scan.h"
#include "longctx/ops/ssd.h"

namespace longctx {

// The sequences of the batch a forward() sees: a rectangular (B, T) batch, or a packed one —
// B = 1, N sequences concatenated along T (src/ops/varlen.h). Set by the Model; every sequence op
// a mixer calls takes cu_seqlens from here, so no sequence sees another.
//
// Context parallel (Model::set_context_parallel): every sequence of the batch is split along T
// over the ranks of `cp`, rank r holding its slice in `cp_layout` (the r-th contiguous slice,
// or zigzag chunks r and 2n - 1 - r of 2n); `positions` are its tokens' places in their
// sequences. The sequence ops below then pass states and halos between the ranks
// (include/longctx/dist/context_parallel.h); position-wise work (projections, norms, MLPs)
// needs nothing.
struct SequenceLayout {
  Tensor cu_seqlens;  // (N + 1) i32 on the model's device; undefined for a rectangular batch
  // Each token's position within its sequence (RoPE): (1, T) i32 when packed, (B, T) when
  // context parallel; undefined otherwise (positions 0 .. T - 1).
  Tensor positions;
  dist::Communicator* cp = nullptr;  // context parallel: the ranks sharing each sequence
  dist::CpLayout cp_layout = dist::CpLayout::contiguous;  // context parallel: how they share it
  bool packed() const { return cu_seqlens.defined(); }
  bool context_parallel() const { return cp != nullptr; }
  // The sequences whose states a layer keeps: N when packed, else the batch B.
  int64_t sequences(int64_t B) const { return packed() ? cu_seqlens.size(0) - 1 : B; }
};

// The sequence ops the mixers call, each the single-process op of include/longctx/ops over the
// layout's sequences, or its context parallel version when the layout is context parallel.
// Context parallel, the gradients of the weights an op shares over the slices (conv weight and
// bias; A, D and the dt bias of the scans) are the whole sequence's on every rank of the group;
// as every other parameter gradient a rank holds is its own slice's share, which the trainer
// sums over all ranks, the ranks after the group's first zero these, so the sum counts them
// once.
void conv1d_fwd(const Context& ctx, const SequenceLayout& layout, const Tensor& out,
                const Tensor& x, const Tensor& weight, const Tensor& bias,
                const CausalConv1dParams& params);
void conv1d_bwd(const Context& ctx, const SequenceLayout& layout, const Tensor& dx,
                const Tensor& dweight, const Tensor& dbias, const Tensor& dout, const Tensor& x,
                const Tensor& weight, const Tensor& bias, const CausalConv1dParams& params);
// linear_scan from a zero state (no h0: decode's state passing is not context parallel).
void scan_fwd(const Context& ctx, const SequenceLayout& layout, const Tensor& out,
              const Tensor& last_state, const Tensor& a, const Tensor& b);
void scan_bwd(const Context& ctx, const SequenceLayout& layout, const Tensor& da, const Tensor& db,
              const Tensor& dout, const Tensor& a, const Tensor& out);
void selective_scan_fwd(const Context& ctx, const SequenceLayout& layout, const Tensor& out,
                        const Tensor& last_state, const SelectiveScanInputs& in,
                        const SelectiveScanParams& params);
void selective_scan_bwd(const Context& ctx, const SequenceLayout& layout,
                        const SelectiveScanGrads& grads, const Tensor& dout,
                        const SelectiveScanInputs& in, const SelectiveScanParams& params);
void ssd_fwd(const Context& ctx, const SequenceLayout& layout, const Tensor& out,
             const Tensor& final_states, const SSDInputs& in, const SSDParams& params);
void ssd_bwd(const Context& ctx, const SequenceLayout& layout, const SSDGrads& grads,
             const Tensor& dout, const SSDInputs& in, const SSDParams& params);
// Context parallel: ring attention, in the layout's cp_layout.
void attention_fwd(const Context& ctx, const SequenceLayout& layout, const Tensor& out,
                   const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                   const AttentionParams& params);
void attention_bwd(const Context& ctx, const SequenceLayout& layout, const Tensor& dq,
                   const Tensor& dk, const Tensor& dv, const Tensor& dout, const Tensor& q,
                   const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                   const AttentionParams& params);
// From a zero state, no final state kept.
void gated_delta_rule_fwd(const Context& ctx, const SequenceLayout& layout, const Tensor& out,
                          const GatedDeltaRuleInputs& in, const GatedDeltaRuleParams& params);
void gated_delta_rule_bwd(const Context& ctx, const SequenceLayout& layout,
                          const GatedDeltaRuleGrads& grads, const Tensor& dout,
                          const GatedDeltaRuleInputs& in, const GatedDeltaRuleParams& params);

// Decoding state of one layer for a batch of sequences: KV cache, conv and recurrent state.
class MixerCache {
 public:
  virtual ~MixerCache() = default;
  virtual size_t bytes() const = 0;  // memory held
  // The state of sequence b alone, as a cache of one sequence sharing this one's memory.
  virtual std::unique_ptr<MixerCache> row(int64_t b) const = 0;
};

class Mixer {
 public:
  virtual ~Mixer() = default;
  // Names (under this layer's prefix) and shapes of the parameters.
  virtual void declare(ParamArena& params) const = 0;
  // Initial values, written into `host` (an f64 CPU arena of the same layout).
  virtual void init(const ParamArena& host, std::mt19937_64& rng) const = 0;
  // Keeps views of its parameters and gradients.
  virtual void bind(const ParamArena& params, const ParamArena& grads) = 0;
  // The full names of the parameters that forward() and decode() pass to `linear` as its weight
  // and to nothing else: the matrices Model::set_inference_weights may bind as bf16 copies.
  virtual std::vector<std::string> linear_weights() const = 0;
  // y = f(x); saves what backward needs in `acts`.
  virtual void forward(const Context& ctx, ActivationArena& acts, const Tensor& y,
                       const Tensor& x) = 0;
  // dx (overwritten) from dy, for the x of the last forward; writes the parameter gradients.
  virtual void backward(const Context& ctx, ActivationArena& acts, const Tensor& dx,
                        const Tensor& dy) = 0;

  // Generation. A cache for `batch` sequences of up to `max_len` tokens (nullptr when the layer
  // keeps no state), and y = f(x) for x (B, T, C): the next T tokens of every sequence of
  // `cache`, sequence b holding lengths[b] tokens so far, which the cache then appends: equal to
  // rows [lengths[b], lengths[b] + T) of forward() over the whole sequence. Scratch comes from
  // `acts`; nothing is saved for backward.
  virtual std::unique_ptr<MixerCache> make_cache(const Context& ctx, DType dtype, int64_t batch,
                                                 int64_t max_len) const = 0;
  virtual void decode(const Context& ctx, ActivationArena& acts, MixerCache* cache,
                      const std::vector<int64_t>& lengths, const Tensor& y, const Tensor& x) = 0;

  // The layout of the batches forward() and backward() see (owned by the Model).
  void set_layout(const SequenceLayout* layout) { layout_ = layout; }

 protected:
  const SequenceLayout& layout() const { return *layout_; }

 private:
  const SequenceLayout* layout_ = nullptr;
};

// A contiguous copy of `view` from the arena (per-token slices for the decode steps).
Tensor contiguous_copy(const Context& ctx, ActivationArena& acts, const Tensor& view);

// The mixers' conv params: every mixer runs its conv channel-last, on (B, T, ·) activations
// where its projection left them (see ConvPart).
inline CausalConv1dParams channel_last_conv(Activation activation) {
  return {activation, /*channel_last=*/true};
}

// One of the consecutive parts of a depthwise conv's channels (Mamba-2's x, B and C; the delta
// rule's q, k and v): its channels [first, first + width), and t, its own (B, T, ...) activation
// or gradient. A mixer runs the conv once per part, so each part is written (forward) or read
// (backward) where it lies, not through one (B, T, channels) tensor and row copies.
struct ConvPart {
  Tensor t;
  int64_t first = 0, width = 0;
  Tensor activation() const { return t.reshape({t.size(0), t.size(1), width}); }  // (B, T, width)
  // The part's columns of a (B, T, ·) tensor whose conv channels start at column `at`.
  Tensor columns(const Tensor& bt, int64_t at) const { return bt.narrow(2, at + first, width); }
  // The part's rows of a per-channel parameter (the conv's weight or bias) or its gradient.
  Tensor channels(const Tensor& per_channel) const { return per_channel.narrow(0, first, width); }
};
// The parts, in order, of the activations or gradients `ts`, each (B, T, ...).
std::vector<ConvPart> conv_parts(std::initializer_list<Tensor> ts);

// A cache of state tensors, all zero to start with.
class StateCache : public MixerCache {
 public:
  StateCache(const Context& ctx, DType dtype, const std::vector<Shape>& shapes);
  explicit StateCache(std::vector<Tensor> states) : states_(std::move(states)) {}
  const Tensor& operator[](size_t i) const { return states_[i]; }
  size_t bytes() const override;
  // Every state's batch dimension (its first) narrowed to b.
  std::unique_ptr<MixerCache> row(int64_t b) const override;

 private:
  std::vector<Tensor> states_;
};

std::unique_ptr<Mixer> make_mixer(LayerKind kind, const ModelConfig& config, int layer);

// Initialisation helpers over f64 host tensors.
void init_normal(const Tensor& t, double stddev, std::mt19937_64& rng);
void init_constant(const Tensor& t, double value);
void init_uniform(const Tensor& t, double bound, std::mt19937_64& rng);  // in [-bound, bound]

// views[name] and grad_views[name]: the tensors `prefix + name` of params and grads, per name.
void bind_views(const ParamArena& params, const ParamArena& grads, const std::string& prefix,
                std::initializer_list<const char*> names, std::map<std::string, Tensor>& views,
                std::map<std::string, Tensor>& grad_views);

}  // namespace longctx
