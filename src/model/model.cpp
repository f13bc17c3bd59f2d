// Model: embedding -> pre-norm residual layers -> final norm -> LM head -> cross-entropy, and the
// backward through the same steps in reverse (see include/longctx/model/model.h).
#include "longctx/model/model.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <utility>

#include "longctx/ops/add.h"
#include "longctx/ops/cross_entropy.h"
#include "longctx/ops/embedding.h"
#include "longctx/ops/linear.h"
#include "longctx/ops/rmsnorm.h"
#include "src/core/checks.h"
#include "src/model/mixer.h"
#include "src/ops/index_errors.h"
#include "src/ops/varlen.h"

namespace longctx {

std::unique_ptr<Mixer> make_attention_mixer(const ModelConfig& c, int layer, bool sliding);
std::unique_ptr<Mixer> make_mlp_mixer(const ModelConfig& c, int layer);
std::unique_ptr<Mixer> make_mamba_mixer(const ModelConfig& c, int layer);
std::unique_ptr<Mixer> make_mamba2_mixer(const ModelConfig& c, int layer);
std::unique_ptr<Mixer> make_rglru_mixer(const ModelConfig& c, int layer);
std::unique_ptr<Mixer> make_deltanet_mixer(const ModelConfig& c, int layer, bool kda);

std::unique_ptr<Mixer> make_mixer(LayerKind kind, const ModelConfig& config, int layer) {
  switch (kind) {
    case LayerKind::attention:
      return make_attention_mixer(config, layer, /*sliding=*/false);
    case LayerKind::sliding_attention:
      return make_attention_mixer(config, layer, /*sliding=*/true);
    case LayerKind::mlp:
      return make_mlp_mixer(config, layer);
    case LayerKind::mamba:
      return make_mamba_mixer(config, layer);
    case LayerKind::mamba2:
      return make_mamba2_mixer(config, layer);
    case LayerKind::rglru:
      return make_rglru_mixer(config, layer);
    case LayerKind::gated_deltanet:
      return make_deltanet_mixer(config, layer, /*kda=*/false);
    case LayerKind::kda:
      return make_deltanet_mixer(config, layer, /*kda=*/true);
  }
  throw Error(detail::concat("Model: layer ", layer, " has an unknown kind"));
}

void init_normal(const Tensor& t, double stddev, std::mt19937_64& rng) {
  std::normal_distribution<double> normal(0.0, stddev);
  double* p = t.data_as<double>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = normal(rng);
}

void init_constant(const Tensor& t, double value) {
  t.fill(value);
}

void init_uniform(const Tensor& t, double bound, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> uniform(-bound, bound);
  double* p = t.data_as<double>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = uniform(rng);
}

void bind_views(const ParamArena& params, const ParamArena& grads, const std::string& prefix,
                std::initializer_list<const char*> names, std::map<std::string, Tensor>& views,
                std::map<std::string, Tensor>& grad_views) {
  for (const char* name : names) {
    views[name] = params.get(prefix + name);
    grad_views[name] = grads.get(prefix + name);
  }
}

Tensor contiguous_copy(const Context& ctx, ActivationArena& acts, const Tensor& view) {
  Tensor t = acts.take(view.shape(), view.dtype());
  t.copy_from(view, &ctx);
  return t;
}

std::vector<ConvPart> conv_parts(std::initializer_list<Tensor> ts) {
  std::vector<ConvPart> parts;
  int64_t first = 0;
  for (const Tensor& t : ts) {
    int64_t width = 1;  // the product of the dimensions after (B, T): no division, B or T may be 0
    for (size_t i = 2; i < t.shape().size(); ++i) width *= t.shape()[i];
    parts.push_back({t, first, width});
    first += width;
  }
  return parts;
}

StateCache::StateCache(const Context& ctx, DType dtype, const std::vector<Shape>& shapes) {
  for (const Shape& shape : shapes)
    states_.push_back(Tensor::zeros(shape, dtype, ctx.device(), &ctx));
}

std::unique_ptr<MixerCache> StateCache::row(int64_t b) const {
  std::vector<Tensor> rows;
  for (const Tensor& t : states_) rows.push_back(t.narrow(0, b, 1));
  return std::make_unique<StateCache>(std::move(rows));
}

size_t StateCache::bytes() const {
  size_t total = 0;
  for (const Tensor& t : states_) total += t.nbytes();
  return total;
}

namespace {
std::string norm_name(int layer) {
  return "layers." + std::to_string(layer) + ".norm";
}

// The weight of layer l's norm; the final norm's for l = layers.
const Tensor& norm_weight(const ParamArena& params, int l, int layers) {
  return params.get(l < layers ? norm_name(l) : "final_norm");
}

double to_host_scalar(const Tensor& t, const Context& ctx) {
  const Tensor host = t.device().is_cpu() ? t : t.to(Device::cpu(), &ctx);
  return host.to_dtype(DType::f64).data_as<double>()[0];
}

// The layers of a model of `config`, in order.
std::vector<std::unique_ptr<Mixer>> make_mixers(const ModelConfig& config) {
  std::vector<std::unique_ptr<Mixer>> mixers;
  for (int l = 0; l < int(config.layers.size()); ++l)
    mixers.push_back(make_mixer(config.layers[l], config, l));
  return mixers;
}

// The parameters of a model of `config` whose layers are `mixers`, declared in the model's order.
ParamArena declare_parameters(const ModelConfig& config,
                              const std::vector<std::unique_ptr<Mixer>>& mixers) {
  const int64_t C = config.d_model, V = config.vocab_size;
  ParamArena params;
  params.declare("embed", {V, C});
  for (int l = 0; l < int(mixers.size()); ++l) {
    params.declare(norm_name(l), {C});
    mixers[size_t(l)]->declare(params);
  }
  params.declare("final_norm", {C});
  if (!config.tie_embeddings) params.declare("head", {V, C});
  return params;
}
}  // namespace

ParamArena Model::declared_parameters(ModelConfig config) {
  config.validate();
  return declare_parameters(config, make_mixers(config));
}

Model::Model(ModelConfig config, const Context& ctx, DType dtype, uint64_t seed)
    : config_(std::move(config)),
      ctx_(&ctx),
      dtype_(dtype),
      acts_(ctx),
      layer_acts_(ctx),
      layout_(std::make_unique<SequenceLayout>()) {
  config_.validate();
  LONGCTX_CHECK(dtype == DType::f32 || (dtype == DType::f64 && ctx.device().is_cpu()),
                "Model: dtype must be f32 (or f64 on the CPU), got ", dtype_name(dtype));
  const int n_layers = int(config_.layers.size());
  mixers_ = make_mixers(config_);
  params_ = declare_parameters(config_, mixers_);

  // Initial values in f64 on the host from one seed, then converted and copied once.
  Context host_ctx(Device::cpu());
  ParamArena host = params_;
  host.allocate(DType::f64, host_ctx);
  std::mt19937_64 rng(seed);
  init_normal(host.get("embed"), 0.02, rng);
  for (int l = 0; l < n_layers; ++l) {
    init_constant(host.get(norm_name(l)), 1.0);
    mixers_[l]->init(host, rng);
  }
  init_constant(host.get("final_norm"), 1.0);
  if (!config_.tie_embeddings) init_normal(host.get("head"), 0.02, rng);

  params_.allocate(dtype, ctx);
  grads_ = params_.like(dtype, ctx);
  for (size_t i = 0; i < host.tensors().size(); ++i) {
    const Tensor& src = host.tensors()[i].tensor;
    params_.tensors()[i].tensor.copy_from(dtype == DType::f64 ? src : src.to_dtype(dtype), &ctx);
  }
  for (auto& m : mixers_) {
    m->bind(params_, grads_);
    m->set_layout(layout_.get());
  }
}

void Model::set_inference_weights(DType dtype) {
  const char* op = "Model::set_inference_weights";
  check_value(op, "dtype", dtype == DType::f32 || dtype == DType::bf16, "must be f32 or bf16, got ",
              dtype_name(dtype));
  if (dtype == DType::bf16)
    check_value(op, "dtype", dtype_ == DType::f32 && ctx_->device().is_cpu(),
                "bf16 weights are for an f32 model on the CPU (linear's weight-only bf16), this "
                "model is ",
                dtype_name(dtype_), " on ", ctx_->device().str());
  if (dtype == DType::f32 && inference_dtype_ == DType::f32) return;  // nothing changes
  inference_dtype_ = dtype;
  have_loss_ = false;  // the last forward's activations came from other weights
  bf16_weights_ = ParamArena();
  inference_views_ = ParamArena();
  if (dtype == DType::f32) {
    for (auto& m : mixers_) m->bind(params_, grads_);
    return;
  }
  std::vector<std::string> names;
  for (const auto& m : mixers_)
    for (std::string& name : m->linear_weights()) names.push_back(std::move(name));
  const std::string head = config_.tie_embeddings ? "embed" : "head";
  names.push_back(head);
  for (const std::string& name : names) bf16_weights_.declare(name, params_.get(name).shape());
  bf16_weights_.allocate(DType::bf16, *ctx_);
  inference_views_ = params_;
  for (const std::string& name : names) {
    const Tensor& copy = bf16_weights_.get(name);
    copy.copy_from(params_.get(name).to_dtype(DType::bf16), ctx_);
    if (name != head || !config_.tie_embeddings) inference_views_.replace_view(name, copy);
  }
  for (auto& m : mixers_) m->bind(inference_views_, grads_);
}

const Tensor& Model::head_weight() const {
  const std::string head = config_.tie_embeddings ? "embed" : "head";
  return inference_dtype_ == DType::bf16 ? bf16_weights_.get(head) : params_.get(head);
}

ModelCache::ModelCache() = default;
ModelCache::~ModelCache() = default;
// A cache moved from is empty: no owner, no sequences (its batch left behind let decode() pass
// its checks and read the moved lengths and layers).
ModelCache::ModelCache(ModelCache&& other) noexcept {
  *this = std::move(other);
}
ModelCache& ModelCache::operator=(ModelCache&& other) noexcept {
  owner_ = std::exchange(other.owner_, 0);
  batch_ = std::exchange(other.batch_, 0);
  max_len_ = std::exchange(other.max_len_, 0);
  lengths_ = std::move(other.lengths_);
  kinds_ = std::move(other.kinds_);
  layers_ = std::move(other.layers_);
  other.lengths_.clear();
  other.kinds_.clear();
  other.layers_.clear();
  return *this;
}

size_t ModelCache::bytes() const {
  size_t total = 0;
  for (const auto& layer : layers_)
    if (layer) total += layer->bytes();
  return total;
}

size_t ModelCache::bytes(LayerKind kind) const {
  size_t total = 0;
  for (size_t l = 0; l < layers_.size(); ++l)
    if (layers_[l] && kinds_[l] == kind) total += layers_[l]->bytes();
  return total;
}

// The layout of a forward's batch: rectangular, or packed with each token's position within its
// sequence (RoPE restarts at every sequence) computed once here for every layer.
void Model::set_layout(const char* op, const Tensor& tokens, const Tensor& cu_seqlens,
                       const std::exception_ptr& refused) {
  // Built aside and put in place only once every check has passed: a packed batch whose
  // cu_seqlens was refused had already reset the last forward's layout.
  SequenceLayout layout;
  if (cp_)
    set_context_parallel_layout(op, tokens, cu_seqlens, refused, layout);
  else if (cu_seqlens.defined())
    set_packed_layout(op, tokens, cu_seqlens, layout);
  *layout_ = std::move(layout);
}

void Model::set_packed_layout(const char* op, const Tensor& tokens, const Tensor& cu_seqlens,
                              SequenceLayout& layout) const {
  check_value(op, "tokens", tokens.size(0) == 1, "must have batch dimension 1 with cu_seqlens ",
              "(a packed batch), got shape ", shape_str(tokens.shape()));
  const std::vector<int32_t> cu =
      check_cu_seqlens(*ctx_, op, "cu_seqlens", cu_seqlens, tokens.size(1));
  Tensor positions = Tensor::empty({1, tokens.size(1)}, DType::i32);
  for (size_t n = 0; n + 1 < cu.size(); ++n)
    for (int32_t t = cu[n]; t < cu[n + 1]; ++t) positions.data_as<int32_t>()[t] = t - cu[n];
  layout.cu_seqlens = cu_seqlens;
  layout.positions = ctx_->device().is_cpu() ? positions : positions.to(ctx_->device(), ctx_);
}

void Model::set_context_parallel(dist::Communicator* cp, dist::CpLayout layout) {
  const char* op = "Model::set_context_parallel";
  cp_layout_ = layout;
  if (!cp || cp->size() == 1) {
    cp_ = nullptr;
    return;
  }
  check_value(op, "cp", ctx_->device().is_cpu(),
              "context parallel needs a CPU model (the context parallel ops run on the CPU), "
              "this one is on ",
              ctx_->device().str());
  check_value(op, "cp", cp->accepts(Device::cpu()), "must reach CPU tensors, got the ",
              cp->backend(), " backend");
  cp_ = cp;
}

int64_t Model::min_context_slice() const {
  int64_t halo = 0;
  for (LayerKind kind : config_.layers) {
    if (kind == LayerKind::mamba) halo = std::max(halo, config_.mamba.d_conv - 1);
    if (kind == LayerKind::mamba2) halo = std::max(halo, config_.mamba2.d_conv - 1);
    if (kind == LayerKind::rglru) halo = std::max(halo, config_.rglru.d_conv - 1);
    if (kind == LayerKind::gated_deltanet || kind == LayerKind::kda)
      halo = std::max(halo, config_.deltanet.d_conv - 1);
  }
  return std::max<int64_t>(halo, 1);
}

// A context parallel batch (rectangular, or one packed row whose cu_seqlens is the whole
// batch's): every rank's (B, T), gathered, gives the whole sequence's length and so this slice's
// positions in the layout; every rank checks every slice the same way, so all of them throw
// together rather than one leaving the others waiting in a collective. `refused`: this rank's
// batch failed check_batch; it is gathered too, as a batch of -1.
void Model::set_context_parallel_layout(const char* op, const Tensor& tokens,
                                        const Tensor& cu_seqlens, const std::exception_ptr& refused,
                                        SequenceLayout& layout) const {
  const int64_t B = refused ? -1 : tokens.size(0), T = refused ? 0 : tokens.size(1);
  const int64_t n = cp_->size();
  const bool zigzag = cp_layout_ == dist::CpLayout::zigzag;
  const Tensor mine = Tensor::empty({2}, DType::i64), all = Tensor::empty({n, 2}, DType::i64);
  mine.data_as<int64_t>()[0] = B;
  mine.data_as<int64_t>()[1] = T;
  cp_->all_gather(all, mine);
  if (refused) std::rethrow_exception(refused);
  const int64_t* shapes = all.data_as<int64_t>();
  for (int64_t r = 0; r < n; ++r)
    LONGCTX_CHECK(shapes[2 * r] >= 0, op, ": rank ", r,
                  " of the context parallel group refused its tokens or targets (its error says "
                  "why)");
  int64_t total = 0, offset = 0;
  for (int64_t r = 0; r < n; ++r) {
    total += shapes[2 * r + 1];
    if (r < cp_->rank()) offset += shapes[2 * r + 1];
  }
  check_value(op, "cu_seqlens", !(zigzag && cu_seqlens.defined()),
              "packed batches need the contiguous layout (a zigzag chunk would cut the ",
              "documents into pieces out of order); the model's is zigzag");
  for (int64_t r = 0; r < n; ++r) {
    check_value(op, "tokens", shapes[2 * r] == B, "has batch ", shapes[2 * r], " on rank ", r,
                " of the context parallel group but ", B, " on rank ", cp_->rank(),
                " (every rank holds a slice of the same sequences)");
    if (!zigzag) {
      check_value(op, "tokens", shapes[2 * r + 1] >= min_context_slice(), "holds ",
                  shapes[2 * r + 1], " tokens on rank ", r,
                  " of the context parallel group; each slice needs at least ", min_context_slice(),
                  " (the convolutions' halo, d_conv - 1, and at least 1)");
      continue;
    }
    const auto chunks = dist::zigzag_chunks(total, int(n), int(r));
    check_value(op, "tokens", chunks[0].length() + chunks[1].length() == shapes[2 * r + 1],
                "holds ", shapes[2 * r + 1], " tokens on rank ", r,
                " of the context parallel group, but its zigzag chunks of the ", total,
                "-token sequences hold ", chunks[0].length() + chunks[1].length(),
                " (split with dist::slice_ranges)");
    for (const dist::SeqRange& c : chunks)
      check_value(op, "tokens", c.length() >= min_context_slice(), "has a zigzag chunk of ",
                  c.length(), " tokens on rank ", r, " (", total, "-token sequences over ", n,
                  " ranks); each chunk needs at least ", min_context_slice(),
                  " (the convolutions' halo, d_conv - 1, and at least 1)");
  }
  // Each token's position in its sequence: the slice's ranges, back to back.
  const std::vector<dist::SeqRange> ranges =
      zigzag ? dist::slice_ranges(total, int(n), cp_->rank(), cp_layout_)
             : std::vector<dist::SeqRange>{{offset, offset + T}};
  Tensor positions = Tensor::empty({B, T}, DType::i32);
  for (int64_t b = 0; b < B; ++b) {
    int64_t t = 0;
    for (const dist::SeqRange& range : ranges)
      for (int64_t p = range.begin; p < range.end; ++p)
        positions.data_as<int32_t>()[b * T + t++] = int32_t(p);
  }
  if (cu_seqlens.defined()) {
    // A packed batch split along T: cu_seqlens is the whole batch's (the same on every rank), a
    // token's position the one within its sequence, whichever rank holds it.
    check_value(op, "tokens", B == 1, "must have batch dimension 1 with cu_seqlens (a packed ",
                "batch), got shape ", shape_str(tokens.shape()));
    const std::vector<int32_t> cu =
        check_cu_seqlens(*ctx_, op, "cu_seqlens (the whole packed batch's)", cu_seqlens, total);
    for (size_t s = 0; s + 1 < cu.size(); ++s)
      for (int64_t t = std::max<int64_t>(cu[s], offset);
           t < std::min<int64_t>(cu[s + 1], offset + T); ++t)
        positions.data_as<int32_t>()[t - offset] = int32_t(t - cu[s]);
    layout.cu_seqlens = cu_seqlens;
  }
  layout.cp = cp_;
  layout.cp_layout = cp_layout_;
  layout.positions = positions;
}

Model::~Model() = default;
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;

namespace {
uint64_t new_model_id() {
  static std::atomic<uint64_t> next{1};
  return next++;
}
}  // namespace

Model::Identity::Identity() : value(new_model_id()) {}
Model::Identity::Identity(Identity&& other) noexcept : value(other.value) {
  other.value = new_model_id();
}
Model::Identity& Model::Identity::operator=(Identity&& other) noexcept {
  value = other.value;
  other.value = new_model_id();
  return *this;
}

void Model::check_batch(const char* op, const Tensor& tokens, const Tensor& targets) const {
  check_arg(op, "tokens", tokens).rank(2).dtype(DType::i32).device(ctx_->device()).contiguous();
  if (targets.defined())
    check_arg(op, "targets", targets)
        .shape(tokens.shape())
        .dtype(DType::i32)
        .device(ctx_->device())
        .contiguous();
  if (!cp_) return;
  // The ids too, which the embedding and cross entropy check as they read them: under context
  // parallelism that is after the layers' collectives. (A context parallel model is on the CPU.)
  const int64_t V = config_.vocab_size, N = tokens.numel();
  const int32_t* ids = tokens.data_as<int32_t>();
  for (int64_t i = 0; i < N; ++i)
    if (ids[i] < 0 || ids[i] >= V) throw_index_out_of_range(op, "tokens", i, ids[i], V);
  if (!targets.defined()) return;
  const int32_t ignore = CrossEntropyParams{}.ignore_index;
  const int32_t* labels = targets.data_as<int32_t>();
  for (int64_t i = 0; i < N; ++i)
    if (labels[i] != ignore && (labels[i] < 0 || labels[i] >= V))
      throw_index_out_of_range(op, "targets", i, labels[i], V,
                               ", or ignore_index = " + std::to_string(ignore));
}

void Model::check_usable(const char* op) const {
  LONGCTX_CHECK(layout_, op, ": this model was moved from (it holds no layers)");
}

double Model::forward(const Tensor& tokens, const Tensor& targets, const Tensor& cu_seqlens) {
  const char* op = "Model::forward";
  check_usable(op);
  // Under context parallelism a batch refused on one rank is refused on all of them: the verdicts
  // travel with the slices' shapes (set_context_parallel_layout), since a rank throwing alone
  // left the others waiting in a layer's collective.
  std::exception_ptr refused;
  try {
    check_batch(op, tokens, targets);
  } catch (const Error&) {
    if (!cp_) throw;
    refused = std::current_exception();
  }
  set_layout(op, tokens, cu_seqlens, refused);  // the last check: nothing has changed if it throws
  const int64_t B = tokens.size(0), T = tokens.size(1), C = config_.d_model;
  const int64_t V = config_.vocab_size;
  const bool with_loss = targets.defined();
  // From here the last forward's activations are overwritten: until this one has finished,
  // there is nothing for backward() (a failed forward followed by backward() gave wrong
  // gradients).
  have_loss_ = false;
  const Context& ctx = *ctx_;
  const DType stat = stat_dtype(dtype_);  // rstd, lse, loss
  const int L = int(mixers_.size());

  acts_.reset();
  tokens_ = tokens;
  targets_ = targets;
  h_.assign(size_t(L + 1), Tensor());
  normed_.assign(size_t(L), Tensor());
  rstd_.assign(size_t(L), Tensor());

  h_[0] = acts_.take({B, T, C}, dtype_);
  embedding_fwd(ctx, h_[0], tokens, params_.get("embed"));
  normed_[0] = acts_.take({B, T, C}, dtype_);
  rstd_[0] = acts_.take({B * T}, stat);
  rmsnorm_fwd(ctx, normed_[0], rstd_[0], h_[0], norm_weight(params_, 0, L), {config_.norm_eps});
  for (int l = 0; l < L; ++l) {
    Tensor y = acts_.take({B, T, C}, dtype_);
    if (recompute_) layer_acts_.reset();  // the previous layer's intermediates are dropped
    mixers_[l]->forward(ctx, recompute_ ? layer_acts_ : acts_, y, normed_[l]);
    // h_{l+1} = h_l + y, normalised by the next norm (the final one after the last layer) in the
    // same pass.
    h_[l + 1] = acts_.take({B, T, C}, dtype_);
    Tensor& normed = l + 1 < L ? normed_[size_t(l + 1)] : final_normed_;
    Tensor& rstd = l + 1 < L ? rstd_[size_t(l + 1)] : final_rstd_;
    normed = acts_.take({B, T, C}, dtype_);
    rstd = acts_.take({B * T}, stat);
    add_rmsnorm_fwd(ctx, normed, h_[l + 1], rstd, h_[l], y, norm_weight(params_, l + 1, L),
                    {config_.norm_eps});
  }
  logits_ = acts_.take({B, T, V}, dtype_);
  linear_fwd(ctx, logits_, final_normed_, head_weight());
  if (!with_loss) return std::nan("");

  Tensor loss = acts_.take({1}, stat);
  lse_ = acts_.take({B * T}, stat);
  cross_entropy_fwd(ctx, loss, lse_, logits_.reshape({B * T, V}), targets.reshape({B * T}));
  const double value = to_host_scalar(loss, ctx);
  have_loss_ = true;
  return value;
}

int64_t Model::grad_offset(const std::string& name) const {
  const auto* base = static_cast<const char*>(grads_.flat().data());
  const auto* at = static_cast<const char*>(grads_.get(name).data());
  return int64_t((at - base) / ptrdiff_t(dtype_size(dtype_)));
}

void Model::backward(double scale, const std::function<void(int64_t begin)>& ready) {
  check_usable("Model::backward");
  LONGCTX_CHECK(have_loss_,
                "Model::backward: needs a forward() with targets first (one that succeeded, "
                "with the weights the model has now)");
  LONGCTX_CHECK(inference_dtype_ == DType::f32,
                "Model::backward: the model reads bf16 inference weights "
                "(set_inference_weights(f32) first: gradients are for the f32 parameters)");
  const Context& ctx = *ctx_;
  const int64_t B = tokens_.size(0), T = tokens_.size(1), C = config_.d_model;
  const int64_t V = config_.vocab_size;
  const int L = int(mixers_.size());
  const DType stat = stat_dtype(dtype_);

  Tensor dloss = acts_.take({1}, stat);
  dloss.fill(scale, &ctx);
  Tensor dlogits = acts_.take({B * T, V}, dtype_);
  cross_entropy_bwd(ctx, dlogits, dloss, logits_.reshape({B * T, V}), targets_.reshape({B * T}),
                    lse_);
  // Head: with tied embeddings its gradient is added to the embedding's below.
  const bool tied = config_.tie_embeddings;
  const Tensor& head = params_.get(tied ? "embed" : "head");
  Tensor dhead = tied ? acts_.take({V, C}, dtype_) : grads_.get("head");
  Tensor dnormed = acts_.take({B, T, C}, dtype_);
  linear_bwd(ctx, dnormed.reshape({B * T, C}), dhead, {}, dlogits,
             final_normed_.reshape({B * T, C}), head);

  Tensor dh = acts_.take({B, T, C}, dtype_);
  rmsnorm_bwd(ctx, dh, grads_.get("final_norm"), dnormed, h_[L], params_.get("final_norm"),
              final_rstd_, {config_.norm_eps});
  if (ready) ready(grad_offset("final_norm"));  // and the head, after it
  for (int l = L - 1; l >= 0; --l) {
    // h_{l+1} = h_l + mixer(norm(h_l)): the residual passes dh through unchanged, and the norm's
    // gradient is added to it in the norm's backward pass.
    if (recompute_) {  // this layer's intermediates again, then its backward
      layer_acts_.reset();
      Tensor y = layer_acts_.take({B, T, C}, dtype_);
      mixers_[l]->forward(ctx, layer_acts_, y, normed_[l]);
      mixers_[l]->backward(ctx, layer_acts_, dnormed, dh);
    } else {
      mixers_[l]->backward(ctx, acts_, dnormed, dh);
    }
    add_rmsnorm_bwd(ctx, dh, grads_.get(norm_name(l)), dnormed, dh, h_[l],
                    norm_weight(params_, l, L), rstd_[l], {config_.norm_eps});
    if (ready) ready(grad_offset(norm_name(l)));  // the layer's norm, then its mixer's
  }
  embedding_bwd(ctx, grads_.get("embed"), dh, tokens_);
  if (tied) add_fwd(ctx, grads_.get("embed"), grads_.get("embed"), dhead);
  if (ready) ready(0);
}

ModelCache Model::make_cache(int64_t batch, int64_t max_len) const {
  const char* op = "Model::make_cache";
  check_usable(op);
  // Bounded before anything is sized from them (a batch of 2^40 threw std::bad_alloc): max_len
  // as every sequence is (RoPE positions are int32), the batch by the same number, far above
  // any batch whose cache fits in memory, which keeps their products within int64.
  check_value(op, "batch", batch >= 1 && batch <= kMaxSequenceLength, "must be in [1, ",
              kMaxSequenceLength, "], got ", batch);
  check_value(op, "max_len", max_len >= 1 && max_len <= kMaxSequenceLength, "must be in [1, ",
              kMaxSequenceLength, "] (RoPE positions are int32), got ", max_len);
  ModelCache cache;
  cache.owner_ = id_.value;
  cache.batch_ = batch;
  cache.max_len_ = max_len;
  cache.lengths_.assign(size_t(batch), 0);
  cache.kinds_ = config_.layers;
  // Attention layers hold their KV cache for all max_len tokens from the start: a failure to
  // allocate it names the layer and the sizes (generate's max_new_tokens sets max_len).
  for (size_t i = 0; i < mixers_.size(); ++i) {
    try {
      cache.layers_.push_back(mixers_[i]->make_cache(*ctx_, dtype_, batch, max_len));
    } catch (const Error& e) {
      throw Error(detail::concat(
          op, ": the cache of layer ", i, " (", layer_kind_name(config_.layers[i]), ") for batch ",
          batch, " and max_len ", max_len, " tokens cannot be allocated: ", e.what()));
    }
  }
  return cache;
}

const Tensor& Model::decode(ModelCache& cache, const Tensor& tokens) {
  const char* op = "Model::decode";
  check_usable(op);
  LONGCTX_CHECK(cache.owner_ == id_.value, op,
                ": the cache was made by another model (make_cache), or is empty");
  check_arg(op, "tokens", tokens).rank(2).dtype(DType::i32).device(ctx_->device()).contiguous();
  const int64_t B = tokens.size(0), T = tokens.size(1);
  check_value(op, "tokens", B == cache.batch(), "has batch ", B, " but the cache holds ",
              cache.batch(), " sequences");
  for (int64_t b = 0; b < B; ++b)
    check_value(op, "tokens", cache.length(b) + T <= cache.max_len(), "would take sequence ", b,
                " of the cache to ", cache.length(b) + T, " tokens, beyond its max_len ",
                cache.max_len());
  std::vector<MixerCache*> layers;
  for (const auto& layer : cache.layers_) layers.push_back(layer.get());
  const Tensor& logits = decode_layers(layers, cache.lengths_, tokens);
  for (int64_t& length : cache.lengths_) length += T;
  return logits;
}

const Tensor& Model::decode_one(ModelCache& cache, int64_t b, const Tensor& tokens) {
  const char* op = "Model::decode_one";
  check_usable(op);
  LONGCTX_CHECK(cache.owner_ == id_.value, op,
                ": the cache was made by another model (make_cache), or is empty");
  check_value(op, "b", b >= 0 && b < cache.batch(), "must be in [0, ", cache.batch(), "), got ", b);
  check_arg(op, "tokens", tokens).rank(2).dtype(DType::i32).device(ctx_->device()).contiguous();
  check_value(op, "tokens", tokens.size(0) == 1, "must be (1, T) for one sequence, got shape ",
              shape_str(tokens.shape()));
  const int64_t T = tokens.size(1);
  check_value(op, "tokens", cache.length(b) + T <= cache.max_len(), "would take sequence ", b,
              " of the cache to ", cache.length(b) + T, " tokens, beyond its max_len ",
              cache.max_len());
  std::vector<std::unique_ptr<MixerCache>> rows;
  std::vector<MixerCache*> layers;
  for (const auto& layer : cache.layers_) {
    rows.push_back(layer ? layer->row(b) : nullptr);
    layers.push_back(rows.back().get());
  }
  const Tensor& logits = decode_layers(layers, {cache.length(b)}, tokens);
  cache.lengths_[size_t(b)] += T;
  return logits;
}

const Tensor& Model::decode_layers(const std::vector<MixerCache*>& layers,
                                   const std::vector<int64_t>& lengths, const Tensor& tokens) {
  const int64_t B = tokens.size(0), T = tokens.size(1), C = config_.d_model;
  const Context& ctx = *ctx_;
  const DType stat = stat_dtype(dtype_);
  const int L = int(mixers_.size());
  acts_.reset();
  have_loss_ = false;           // the saved activations are overwritten below
  *layout_ = SequenceLayout();  // a cache's batch is rectangular
  Tensor h = acts_.take({B, T, C}, dtype_), normed = acts_.take({B, T, C}, dtype_);
  Tensor y = acts_.take({B, T, C}, dtype_), rstd = acts_.take({B * T}, stat);
  embedding_fwd(ctx, h, tokens, params_.get("embed"));
  rmsnorm_fwd(ctx, normed, rstd, h, norm_weight(params_, 0, L), {config_.norm_eps});
  for (int l = 0; l < L; ++l) {
    mixers_[size_t(l)]->decode(ctx, acts_, layers[size_t(l)], lengths, y, normed);
    // h += y in place, normalised by the next norm (the final one after the last layer).
    add_rmsnorm_fwd(ctx, normed, h, rstd, h, y, norm_weight(params_, l + 1, L), {config_.norm_eps});
  }
  logits_ = acts_.take({B, T, config_.vocab_size}, dtype_);
  linear_fwd(ctx, logits_, normed, head_weight());
  return logits_;
}

}  // namespace longctx
