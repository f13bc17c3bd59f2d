// Model: a language model over a stack of pre-norm residual layers (see config.h).
//
//   h_0 = embed(tokens);  h_{l+1} = h_l + mixer_l(rmsnorm_l(h_l));
//   logits = rmsnorm_f(h_L) @ head^T  (head = the embedding table when tie_embeddings)
//
// Parameters and gradients each live in one ParamArena (named views, llm.c style); what the
// backward needs is saved in one ActivationArena during forward(). CPU models compute in f32 (or
// f64, e.g. for gradient checks); CUDA models in f32.
#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <vector>

#include "longctx/context.h"
#include "longctx/dist/layout.h"
#include "longctx/model/arena.h"
#include "longctx/model/config.h"

namespace longctx {

namespace dist {
class Communicator;
}
class Mixer;
class MixerCache;
struct SequenceLayout;

// Per-layer decoding state (KV caches, conv and recurrent states) of `batch` sequences of up to
// `max_len` tokens each; made by Model::make_cache, advanced by Model::decode (every sequence)
// and Model::decode_one (one sequence: prompts of different lengths).
class ModelCache {
 public:
  ModelCache();
  ~ModelCache();
  ModelCache(ModelCache&&) noexcept;
  ModelCache& operator=(ModelCache&&) noexcept;

  int64_t batch() const { return batch_; }
  int64_t max_len() const { return max_len_; }
  int64_t length(int64_t b) const {  // tokens sequence b holds
    LONGCTX_CHECK(b >= 0 && b < batch_, "ModelCache::length: b must be in [0, ", batch_, "), got ",
                  b);
    return lengths_[size_t(b)];
  }
  const std::vector<int64_t>& lengths() const { return lengths_; }
  size_t bytes() const;                // held by every layer
  size_t bytes(LayerKind kind) const;  // held by the layers of one kind

 private:
  friend class Model;
  uint64_t owner_ = 0;  // the id of the model that made it (Model::Identity); 0: none
  int64_t batch_ = 0, max_len_ = 0;
  std::vector<int64_t> lengths_;
  std::vector<LayerKind> kinds_;
  std::vector<std::unique_ptr<MixerCache>> layers_;
};

class Model {
 public:
  // Parameters initialised from `seed` as the reference implementations do (see each layer).
  Model(ModelConfig config, const Context& ctx, DType dtype = DType::f32, uint64_t seed = 1234);
  ~Model();
  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;

  // The parameters a model of `config` holds, declared and not allocated: their names and shapes
  // without their memory (a checkpoint's tensors are checked against them before a model is
  // built from its config). Throws Error for an invalid config.
  static ParamArena declared_parameters(ModelConfig config);

  const ModelConfig& config() const { return config_; }
  const Context& context() const { return *ctx_; }
  DType dtype() const { return dtype_; }
  ParamArena& params() { return params_; }
  const ParamArena& params() const { return params_; }
  const ParamArena& grads() const { return grads_; }
  int64_t parameter_count() const { return params_.numel(); }

  // tokens, targets: (B, T) i32 on the model's device; targets of -100 are ignored. Returns the
  // mean cross-entropy over labelled targets (NaN when targets is not given) and keeps the
  // activations backward() needs. logits() are valid until the next forward(). A forward()
  // that throws on its arguments changes nothing; one that throws later (a token or target
  // outside the vocabulary, found as it is read) leaves backward() refused until a forward()
  // succeeds.
  // A packed batch: B = 1 and cu_seqlens (N + 1) i32 on the model's device (0 first,
  // nondecreasing, T last) puts N sequences back to back; each is computed as if alone (attention
  // within it, convs and scans restarting at its start, RoPE positions from its start), so a
  // sequence's logits and its share of the gradients do not depend on the others.
  double forward(const Tensor& tokens, const Tensor& targets = {}, const Tensor& cu_seqlens = {});
  const Tensor& logits() const { return logits_; }  // (B, T, vocab_size)

  // Gradients of the last forward()'s loss times `scale` with respect to every parameter, into
  // grads() (overwritten). Needs a forward() with targets. A data-parallel rank scales by its share
  // of the global batch's labelled targets, so the ranks' gradients add up to the whole batch's.
  // `ready`, if given, is called as the backward walks back through the layers with `begin`,
  // decreasing, each time the elements [begin, end) of grads().flat() are final (the parameters
  // lie in the arena embedding first, then layer by layer, the final norm and head last): after
  // the head and final norm, after each layer from the last, and with 0 at the end. A data
  // parallel trainer starts summing a bucket of gradients over the ranks there, while the
  // backward goes on with the earlier layers.
  void backward(double scale = 1.0, const std::function<void(int64_t begin)>& ready = {});

  // Generation: an empty cache, and the logits (B, T, vocab_size) of the next T tokens (B, T) i32
  // of every sequence in `cache`, which then holds them too. Equal to the last T rows of
  // forward() over the whole sequence so far. Attention layers cache k and v (2 * Hkv * D values
  // per token), recurrent ones a constant-size state. decode() reuses the activation memory:
  // what the last forward() saved for backward() is gone. make_cache takes batch and max_len in
  // [1, kMaxSequenceLength]; a cache is tied to the model that made it (through moves of either).
  ModelCache make_cache(int64_t batch, int64_t max_len) const;
  const Tensor& decode(ModelCache& cache, const Tensor& tokens);
  // The same for sequence b of the cache alone: tokens (1, T), logits (1, T, vocab_size). Prompts
  // of different lengths are prefilled this way, one sequence at a time, then decoded together.
  const Tensor& decode_one(ModelCache& cache, int64_t b, const Tensor& tokens);

  // Inference weights: f32 (the default: the parameters themselves) or bf16 (a CPU f32 model).
  // With bf16, forward() and decode() read bf16 copies of the weight matrices that go through
  // `linear` (every mixer's projections and the LM head; the embedding lookup, norms, convs and
  // recurrent parameters stay f32) with f32 activations, KV cache and sums: a batch-1 decode
  // step reads half the bytes. The copies are made from the parameters at this call (call it
  // after loading a checkpoint) and take half the parameters' memory; backward() is refused
  // until set back to f32 and a forward() has run with the f32 weights (a call that changes
  // nothing, f32 to f32, keeps the last forward for backward()). Each output then equals the
  // f32 model's with the matrices rounded to bf16 (relative error 2^-9 per weight).
  void set_inference_weights(DType dtype);
  DType inference_weights() const { return inference_dtype_; }
  // The bf16 copies by parameter name (no tensors when the inference weights are f32).
  const ParamArena& inference_weight_copies() const { return bf16_weights_; }

  // Context parallel: with `cp` of C > 1 ranks, every sequence of the batches forward() sees is
  // split along T over them, each rank calling forward() and backward() with its slice of
  // tokens and targets in `layout` (include/longctx/dist/layout.h) — contiguous: rank r the r-th
  // contiguous slice, any lengths of at least min_context_slice(); zigzag: rank r chunks r and
  // 2n - 1 - r of 2n (dist::slice_ranges), each of at least min_context_slice(), which balances
  // causal attention — the same B everywhere. The layers pass states and halos between the
  // ranks and RoPE takes the global positions, so each rank's logits are its slice of the whole
  // sequence's, and forward() returns the mean loss over the slice's labelled targets. grads()
  // are then this rank's share: their sum over the ranks (with each rank's backward(scale)
  // weighted by its share of the labelled targets, as data parallel ranks are) is the whole
  // batch's gradient. Null or one rank: off. CPU models (the CP ops are the CPU's), every layer
  // kind (attention by ring attention), rectangular batches in either layout, packed ones in the
  // contiguous layout. The communicator must outlive its use; decode() and decode_one() are
  // never context parallel.
  void set_context_parallel(dist::Communicator* cp,
                            dist::CpLayout layout = dist::CpLayout::contiguous);
  dist::Communicator* context_parallel() const { return cp_; }
  dist::CpLayout context_parallel_layout() const { return cp_layout_; }
  // The fewest tokens a context parallel slice may hold: the widest conv's halo (d_conv - 1) of
  // any layer, and at least 1.
  int64_t min_context_slice() const;

  // Activation recompute: when on, forward() keeps only each layer's input (and what the final
  // norm and the loss need) and backward() runs each layer's forward again just before its
  // backward, so activation memory holds one layer's intermediates instead of every layer's.
  // Gradients are the same, bitwise on the CPU.
  void set_activation_recompute(bool on) { recompute_ = on; }
  bool activation_recompute() const { return recompute_; }

  // Activation bytes the last forward (and backward, if run) needed at their high-water mark.
  size_t activation_bytes() const {
    return acts_.pass_bytes() + (recompute_ ? layer_acts_.pass_bytes() : 0);
  }

 private:
  ModelConfig config_;
  const Context* ctx_;
  DType dtype_;
  ParamArena params_, grads_;
  ActivationArena acts_;
  ActivationArena layer_acts_;  // one layer's intermediates, under activation recompute
  bool recompute_ = false;
  dist::Communicator* cp_ = nullptr;  // context parallel over these ranks; null: off
  dist::CpLayout cp_layout_ = dist::CpLayout::contiguous;
  std::vector<std::unique_ptr<Mixer>> mixers_;
  // set_inference_weights: the dtype, the bf16 copies (one arena of the linear matrices) and
  // the arena of views the mixers are bound to (params_ with those matrices replaced).
  DType inference_dtype_ = DType::f32;
  ParamArena bf16_weights_, inference_views_;
  const Tensor& head_weight() const;
  // The layout of the last forward's batch, shared with every mixer (a stable address: the Model
  // moves, the layout does not).
  std::unique_ptr<SequenceLayout> layout_;
  // forward()'s checks of its tokens and targets (under context parallelism their ids too).
  void check_batch(const char* op, const Tensor& tokens, const Tensor& targets) const;
  // `refused`: what check_batch threw on this rank under context parallelism, else null.
  void set_layout(const char* op, const Tensor& tokens, const Tensor& cu_seqlens,
                  const std::exception_ptr& refused);
  void set_packed_layout(const char* op, const Tensor& tokens, const Tensor& cu_seqlens,
                         SequenceLayout& layout) const;
  void set_context_parallel_layout(const char* op, const Tensor& tokens, const Tensor& cu_seqlens,
                                   const std::exception_ptr& refused, SequenceLayout& layout) const;
  // Where the gradient `name` starts in grads().flat(), in elements.
  int64_t grad_offset(const std::string& name) const;
  // Embedding, the layers' decode over `layers` (the cache's, or one sequence's views of them)
  // with the sequences' `lengths`, head; the logits.
  const Tensor& decode_layers(const std::vector<MixerCache*>& layers,
                              const std::vector<int64_t>& lengths, const Tensor& tokens);

  // Which caches are this model's: an id no other model has. A move hands it to the model moved
  // to (its caches go on working there) and gives the one moved from a new one; the address
  // would not do, for a model assigned over another keeps its address but not its layers.
  struct Identity {
    uint64_t value;
    Identity();
    Identity(Identity&& other) noexcept;
    Identity& operator=(Identity&& other) noexcept;
  };
  Identity id_;
  // Throws for a model moved from (it has no layers or layout left).
  void check_usable(const char* op) const;

  // Saved by forward() for backward().
  Tensor tokens_, targets_, logits_, lse_;
  std::vector<Tensor> h_, normed_, rstd_;  // per layer: input, normalised input, 1/rms
  Tensor final_normed_, final_rstd_;
  bool have_loss_ = false;
};

}  // namespace longctx
