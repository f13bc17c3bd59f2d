// Model: whole-model gradients against finite differences (f64, CPU) for every layer kind the
// model builds, and a few optimisation steps that lower the loss.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "harness.h"
#include "longctx/model/model.h"

namespace longctx::test {
namespace {

Tensor random_tokens(int64_t B, int64_t T, int64_t V, Rng& rng, bool some_ignored) {
  Tensor t = Tensor::empty({B, T}, DType::i32);
  int32_t* p = t.data_as<int32_t>();
  for (int64_t i = 0; i < B * T; ++i) p[i] = int32_t(rng.integer(0, V - 1));
  if (some_ignored) p[1] = -100;
  return t;
}

struct ModelCase {
  std::string name;
  std::string config;  // JSON
};
LONGCTX_PRINTS_AS_NAME(ModelCase)

const std::vector<ModelCase> kModelCases = {
    {"llama_gqa", R"({"vocab_size": 11, "d_model": 16, "pattern": "*-*-",
                      "attention": {"n_heads": 4, "n_kv_heads": 2}, "mlp": {"hidden": 24}})"},
    {"sliding_untied", R"({"vocab_size": 9, "d_model": 8, "pattern": "W-*", "tie_embeddings": false,
                           "attention": {"n_heads": 2, "n_kv_heads": 1, "window": 3}})"},
    {"hybrid_mamba2", R"({"vocab_size": 7, "d_model": 8, "pattern": "S-*",
                          "attention": {"n_heads": 2, "n_kv_heads": 2},
                          "mamba2": {"d_state": 4, "head_dim": 4, "n_groups": 2,
                                     "chunk_size": 4}})"},
    {"mamba_mlp", R"({"vocab_size": 7, "d_model": 8, "pattern": "M-",
                      "mamba": {"d_state": 4, "d_conv": 3, "expand": 2, "dt_rank": 2},
                      "mlp": {"hidden": 12}})"},
    {"rglru_mlp", R"({"vocab_size": 7, "d_model": 8, "pattern": "R-",
                      "rglru": {"width": 6, "d_conv": 3}, "mlp": {"hidden": 12}})"},
    // Grouped value heads (HV = 2 H) and a chunk shorter than the sequence, G and K in one stack.
    {"deltanet_kda_gva", R"({"vocab_size": 7, "d_model": 8, "pattern": "G-K",
                             "deltanet": {"n_heads": 1, "n_v_heads": 2, "head_k_dim": 4,
                                          "head_v_dim": 3, "d_conv": 3, "chunk_size": 4}})"},
    {"gated_attention_kda", R"({"vocab_size": 9, "d_model": 8, "pattern": "K*",
                                "tie_embeddings": false,
                                "attention": {"n_heads": 2, "n_kv_heads": 1, "gated": true},
                                "deltanet": {"n_heads": 2, "head_k_dim": 3, "head_v_dim": 4,
                                             "chunk_size": 2}})"},
    // Monarch MLPs: square-ish factors (16 -> 24, 4 blocks) and 2 blocks after a Mamba-2 layer.
    {"llama_monarch", R"({"vocab_size": 11, "d_model": 16, "pattern": "*-*-",
                          "attention": {"n_heads": 4, "n_kv_heads": 2},
                          "mlp": {"hidden": 24, "kind": "monarch", "nblocks": 4}})"},
    {"mamba2_monarch_untied", R"({"vocab_size": 7, "d_model": 8, "pattern": "S-",
                                  "tie_embeddings": false,
                                  "mamba2": {"d_state": 4, "head_dim": 4, "chunk_size": 4},
                                  "mlp": {"hidden": 12, "kind": "monarch", "nblocks": 2}})"},
    {"mamba_attention_untied", R"({"vocab_size": 9, "d_model": 8, "pattern": "M*M",
                                   "tie_embeddings": false,
                                   "attention": {"n_heads": 2, "n_kv_heads": 1},
                                   "mamba": {"d_state": 3, "d_conv": 4, "expand": 1}})"},
};

std::vector<std::string> preset_paths() {
  std::vector<std::string> paths;
  for (const auto& entry :
       std::filesystem::directory_iterator(std::string(LONGCTX_SOURCE_DIR) + "/models/presets"))
    if (entry.path().extension() == ".json") paths.push_back(entry.path().string());
  std::sort(paths.begin(), paths.end());
  return paths;
}

// A preset with its layer pattern and kinds kept, shrunk to sizes a float64 finite-difference
// check runs in moments: width 8, tiny states, a window shorter than the test sequence.
ModelCase shrunk_preset(const std::string& path) {
  ModelConfig c = ModelConfig::load(path);
  c.vocab_size = 7;
  c.d_model = 8;
  c.attention.n_kv_heads = c.attention.n_kv_heads < c.attention.n_heads ? 1 : 2;
  c.attention.n_heads = 2;
  c.attention.window = 3;
  c.mamba.d_state = 4;
  c.mamba.dt_rank = 0;  // derived again: ceil(8 / 16) = 1
  c.mamba2.d_state = 4;
  c.mamba2.head_dim = 4;
  c.mamba2.n_groups = 1;
  c.mamba2.chunk_size = 4;
  c.rglru.width = 0;  // derived again: d_model
  c.deltanet.n_v_heads = c.deltanet.n_v_heads > c.deltanet.n_heads ? 4 : 2;
  c.deltanet.n_heads = 2;
  c.deltanet.head_k_dim = 4;
  c.deltanet.head_v_dim = 4;
  c.deltanet.chunk_size = 4;
  c.mlp.hidden = 12;
  std::string name = "preset_" + c.name;  // a gtest name: "llama-monarch" -> "llama_monarch"
  for (char& ch : name)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return {name, c.to_json()};
}

std::vector<ModelCase> gradient_cases() {
  std::vector<ModelCase> cases = kModelCases;
  for (const std::string& path : preset_paths()) {
    cases.push_back(shrunk_preset(path));
  }
  return cases;
}

class ModelGradients : public testing::TestWithParam<ModelCase> {};

TEST_P(ModelGradients, MatchFiniteDifferences) {
  Context& ctx = context_for(Device::cpu());
  Model model(ModelConfig::from_json(GetParam().config), ctx, DType::f64, /*seed=*/5);
  Rng rng(9);
  const int64_t V = model.config().vocab_size;
  const Tensor tokens = random_tokens(2, 6, V, rng, false);
  const Tensor targets = random_tokens(2, 6, V, rng, /*some_ignored=*/true);
  const double loss = model.forward(tokens, targets);
  ASSERT_TRUE(std::isfinite(loss));
  model.backward();

  // Fourth-order central differences in f64 with h = 1e-5: truncation ~ h^4 and rounding
  // ~ 1e-16 / h, both far below the bound, which is an absolute 1e-8 plus 1e-6 relative. (The
  // second-order stencil's h^2 truncation was not: through an RMSNorm of embedding-sized inputs,
  // ~0.02, the loss curves sharply; on the gdn preset it erred by 2.5e-8 on an embedding entry,
  // 2.5e-6 at h = 1e-4 and 2.5e-4 at 1e-3, while h = 1e-6 agreed to 7e-14: truncation, not the
  // gradient; the Monarch-MLP models likewise, 5e-7 at h = 1e-5 in second order.)
  const double h = 1e-5;
  for (size_t i = 0; i < model.params().tensors().size(); ++i) {
    const auto& [name, param] = model.params().tensors()[i];
    const Tensor& grad = model.grads().tensors()[i].tensor;
    double* p = param.data_as<double>();
    const int64_t n = param.numel();
    for (int k = 0; k < 6; ++k) {
      const int64_t j = rng.integer(0, n - 1);
      const double saved = p[j];
      auto loss_at = [&](double step) {
        p[j] = saved + step;
        const double l = model.forward(tokens, targets);
        p[j] = saved;
        return l;
      };
      const double fd =
          (8 * (loss_at(h) - loss_at(-h)) - (loss_at(2 * h) - loss_at(-2 * h))) / (12 * h);
      const double analytic = grad.data_as<double>()[j];
      EXPECT_NEAR(analytic, fd, 1e-8 + 1e-6 * std::abs(fd)) << name << "[" << j << "]";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Presets, ModelGradients, testing::ValuesIn(gradient_cases()),
                         [](const auto& info) { return info.param.name; });

// A packed batch equals each sequence run alone (f64): logits row for row, the loss as the
// token-weighted mean of the sequences' losses, and the gradients as the same weighted sum of
// theirs. Lengths include an empty and a one-token sequence, and sequences longer than the
// sliding windows (3) and the SSD chunks (4).
class ModelPacked : public testing::TestWithParam<ModelCase> {};

TEST_P(ModelPacked, EqualsEachSequenceAlone) {
  Context& ctx = context_for(Device::cpu());
  const ModelConfig config = ModelConfig::from_json(GetParam().config);
  Model packed(config, ctx, DType::f64, /*seed=*/5), alone(config, ctx, DType::f64, /*seed=*/5);
  Rng rng(21);
  const std::vector<int64_t> lengths = {6, 0, 1, 9, 4};
  const std::vector<int32_t> cu = cu_seqlens_of(lengths);
  const int64_t T = cu.back(), V = config.vocab_size;
  const Tensor tokens = random_tokens(1, T, V, rng, false);
  const Tensor targets = random_tokens(1, T, V, rng, /*some_ignored=*/true);
  const double loss = packed.forward(tokens, targets, int_tensor(cu, {int64_t(cu.size())}));
  packed.backward();
  const Ref logits = to_ref(packed.logits());

  // The loss is a mean over labelled targets: a sequence's weight is its share of them.
  auto labelled = [&](int64_t begin, int64_t end) {
    int64_t n = 0;
    for (int64_t t = begin; t < end; ++t) n += targets.data_as<int32_t>()[t] != -100;
    return n;
  };
  const double total = double(labelled(0, T));
  double want_loss = 0;
  std::vector<Ref> want_grads;
  for (const auto& g : packed.grads().tensors()) want_grads.emplace_back(g.tensor.shape());
  for (size_t n = 0; n + 1 < cu.size(); ++n) {
    SCOPED_TRACE("sequence " + std::to_string(n));
    const int64_t begin = cu[n], len = lengths[n];
    if (len == 0) continue;
    Tensor tok = Tensor::empty({1, len}, DType::i32), tgt = Tensor::empty({1, len}, DType::i32);
    tok.copy_from(tokens.narrow(1, begin, len));
    tgt.copy_from(targets.narrow(1, begin, len));
    const double weight = double(labelled(begin, begin + len)) / total;
    const double l = alone.forward(tok, tgt);
    if (weight > 0) want_loss += weight * l;
    EXPECT_LE(max_abs_diff(to_ref(alone.logits()), slice(logits, 1, begin, begin + len)), 1e-12)
        << "logits";
    if (weight == 0) continue;  // nothing labelled: no loss, no gradient
    alone.backward();
    for (size_t i = 0; i < want_grads.size(); ++i) {
      const Ref g = to_ref(alone.grads().tensors()[i].tensor);
      for (int64_t j = 0; j < g.numel(); ++j) want_grads[i][j] += weight * g[j];
    }
  }
  EXPECT_NEAR(loss, want_loss, 1e-12);
  for (size_t i = 0; i < want_grads.size(); ++i) {
    const auto& [name, grad] = packed.grads().tensors()[i];
    EXPECT_LE(max_abs_diff(to_ref(grad), want_grads[i]),
              1e-12 * std::max(1.0, max_abs(want_grads[i])))
        << name;
  }
}

INSTANTIATE_TEST_SUITE_P(Presets, ModelPacked, testing::ValuesIn(gradient_cases()),
                         [](const auto& info) { return info.param.name; });

// Every preset at its real size builds, and one forward/backward in f32 gives a finite loss near
// log(vocab) (the initial model is close to uniform) and finite gradients, not all zero.
TEST(Model, EveryPresetBuildsAndRunsOneStep) {
  Context& ctx = context_for(Device::cpu());
  int presets = 0;
  for (const std::string& path : preset_paths()) {
    const ModelConfig config = ModelConfig::load(path);
    ++presets;
    Model model(config, ctx, DType::f32, /*seed=*/3);
    Rng rng(11);
    const int64_t V = config.vocab_size;
    const double loss =
        model.forward(random_tokens(2, 16, V, rng, false), random_tokens(2, 16, V, rng, false));
    EXPECT_NEAR(loss, std::log(double(V)), 0.5) << path;
    model.backward();
    for (size_t i = 0; i < model.grads().tensors().size(); ++i) {
      const auto& [name, grad] = model.grads().tensors()[i];
      const Ref g = to_ref(grad);
      EXPECT_TRUE(std::all_of(g.v.begin(), g.v.end(), [](double x) { return std::isfinite(x); }))
          << path << ": " << name;
      EXPECT_GT(max_abs(g), 0.0) << path << ": " << name;
    }
  }
  EXPECT_GE(presets, 10);
}

// Cached decoding: a prompt prefilled in one call, then new tokens one or a few at a time, gives
// the logits of one full forward over the same tokens (f64; the chunked SSD and the step-by-step
// state updates differ only in rounding). The windows of the sliding layers (3) are shorter than
// the sequence, and the chunks cross them.
class ModelDecoding : public testing::TestWithParam<ModelCase> {};

TEST_P(ModelDecoding, CachedDecodingEqualsTheFullForward) {
  Context& ctx = context_for(Device::cpu());
  Model model(ModelConfig::from_json(GetParam().config), ctx, DType::f64, /*seed=*/5);
  Rng rng(4);
  const int64_t B = 2, T = 11, V = model.config().vocab_size;
  const Tensor tokens = random_tokens(B, T, V, rng, false);
  model.forward(tokens);
  const Ref full = to_ref(model.logits());  // (B, T, V)
  ModelCache cache = model.make_cache(B, T + 2);
  int64_t pos = 0;
  for (int64_t chunk : {5, 1, 1, 3, 1}) {
    Tensor part = Tensor::empty({B, chunk}, DType::i32);
    part.copy_from(tokens.narrow(1, pos, chunk));
    const Ref got = to_ref(model.decode(cache, part));
    double err = 0, scale = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < chunk; ++t)
        for (int64_t v = 0; v < V; ++v) {
          const double want = full.v[size_t((b * T + pos + t) * V + v)];
          err = std::max(err, std::abs(got.v[size_t((b * chunk + t) * V + v)] - want));
          scale = std::max(scale, std::abs(want));
        }
    EXPECT_LE(err, 1e-11 * std::max(scale, 1.0)) << "positions " << pos << ".." << pos + chunk;
    pos += chunk;
    EXPECT_EQ(cache.length(0), pos);
    EXPECT_EQ(cache.length(1), pos);
  }
}

// Sequences of different lengths in one cache: each prompt prefilled alone (decode_one), then
// every sequence decoded together, gives each sequence's full-forward logits (f64).
TEST_P(ModelDecoding, SequencesOfDifferentLengthsDecodeTogether) {
  Context& ctx = context_for(Device::cpu());
  Model model(ModelConfig::from_json(GetParam().config), ctx, DType::f64, /*seed=*/5);
  Rng rng(6);
  const std::vector<int64_t> prompt = {2, 7, 4};
  const int64_t B = 3, steps = 4, V = model.config().vocab_size;
  std::vector<Tensor> seqs;
  std::vector<Ref> full;
  for (int64_t b = 0; b < B; ++b) {
    seqs.push_back(random_tokens(1, prompt[size_t(b)] + steps, V, rng, false));
    model.forward(seqs.back());
    full.push_back(to_ref(model.logits()));  // (1, length, V)
  }
  auto expect_rows = [&](const Ref& got, int64_t b, int64_t row, int64_t from, int64_t n) {
    const Ref want = slice(full[size_t(b)], 1, from, from + n);
    const Ref mine = slice(slice(got, 0, row, row + 1), 1, 0, n);
    EXPECT_LE(max_abs_diff(mine, want), 1e-11 * std::max(1.0, max_abs(want)))
        << "sequence " << b << ", positions " << from << ".." << from + n;
  };
  ModelCache cache = model.make_cache(B, 16);
  for (int64_t b = 0; b < B; ++b) {
    Tensor part = Tensor::empty({1, prompt[size_t(b)]}, DType::i32);
    part.copy_from(seqs[size_t(b)].narrow(1, 0, prompt[size_t(b)]));
    expect_rows(to_ref(model.decode_one(cache, b, part)), b, 0, 0, prompt[size_t(b)]);
    EXPECT_EQ(cache.length(b), prompt[size_t(b)]);
  }
  for (int64_t s = 0; s < steps; ++s) {
    Tensor next = Tensor::empty({B, 1}, DType::i32);
    for (int64_t b = 0; b < B; ++b)
      next.data_as<int32_t>()[b] = seqs[size_t(b)].data_as<int32_t>()[prompt[size_t(b)] + s];
    const Ref got = to_ref(model.decode(cache, next));
    for (int64_t b = 0; b < B; ++b) expect_rows(got, b, b, prompt[size_t(b)] + s, 1);
  }
  EXPECT_EQ(cache.lengths(), (std::vector<int64_t>{2 + steps, 7 + steps, 4 + steps}));
}

INSTANTIATE_TEST_SUITE_P(Presets, ModelDecoding, testing::ValuesIn(gradient_cases()),
                         [](const auto& info) { return info.param.name; });

// Activation recompute gives the same loss and gradients, bitwise, with less activation memory.
TEST(Model, ActivationRecomputeGivesTheSameGradientsInLessMemory) {
  Context& ctx = context_for(Device::cpu());
  const ModelConfig config = ModelConfig::from_json(R"({"vocab_size": 11, "d_model": 16,
      "pattern": "*-S-M-R-W-", "attention": {"n_heads": 2, "n_kv_heads": 1, "window": 4},
      "mamba": {"d_state": 4}, "mamba2": {"d_state": 8, "head_dim": 8, "chunk_size": 4}})");
  Model plain(config, ctx, DType::f32, 3), recompute(config, ctx, DType::f32, 3);
  recompute.set_activation_recompute(true);
  Rng rng(2);
  const Tensor tokens = random_tokens(2, 24, 11, rng, false);
  const Tensor targets = random_tokens(2, 24, 11, rng, true);
  for (int pass = 0; pass < 2; ++pass) {  // the second pass reuses the grown arenas
    EXPECT_EQ(plain.forward(tokens, targets), recompute.forward(tokens, targets));
    plain.backward();
    recompute.backward();
    for (size_t i = 0; i < plain.grads().tensors().size(); ++i) {
      const Tensor& a = plain.grads().tensors()[i].tensor;
      const Tensor& b = recompute.grads().tensors()[i].tensor;
      EXPECT_EQ(std::memcmp(a.data(), b.data(), a.nbytes()), 0) << plain.grads().tensors()[i].name;
    }
  }
  EXPECT_LT(recompute.activation_bytes(), plain.activation_bytes() * 3 / 4)
      << recompute.activation_bytes() << " vs " << plain.activation_bytes();
}

// The CUDA model against the CPU: logits and every gradient of a f32 CUDA model and of a f32
// CPU model against the f64 CPU model, the CUDA error at most twice the CPU's plus a few f32
// roundings of the values' scale (the 2x rule at model level).
class ModelOnCuda : public testing::TestWithParam<ModelCase> {};

TEST_P(ModelOnCuda, MatchesTheCpuModel) {
  LONGCTX_SKIP_IF_UNAVAILABLE(Device::cuda(0));
  const ModelConfig config = ModelConfig::from_json(GetParam().config);
  Context& cpu = context_for(Device::cpu());
  Context& gpu = context_for(Device::cuda(0));
  Model exact(config, cpu, DType::f64, 5), host(config, cpu, DType::f32, 5);
  Model device(config, gpu, DType::f32, 5);
  Rng rng(9);
  const int64_t V = config.vocab_size;
  const Tensor tokens = random_tokens(2, 6, V, rng, false);
  const Tensor targets = random_tokens(2, 6, V, rng, true);
  for (Model* m : {&exact, &host, &device}) {
    const bool on_gpu = m == &device;
    m->forward(on_gpu ? tokens.to(Device::cuda(0), &gpu) : tokens,
               on_gpu ? targets.to(Device::cuda(0), &gpu) : targets);
    m->backward();
  }
  auto check = [&](const Tensor& want, const Tensor& cpu_f32, const Tensor& cuda_f32,
                   const std::string& what) {
    const Ref w = to_ref(want);
    const double scale = std::max(max_abs(w), 1e-30);
    const double err_cpu = max_abs_diff(to_ref(cpu_f32), w);
    const double err_gpu = max_abs_diff(to_ref(cuda_f32), w);
    EXPECT_LE(err_gpu, 2 * err_cpu + 4 * unit_roundoff(DType::f32) * scale) << what;
  };
  check(exact.logits(), host.logits(), device.logits(), "logits");
  for (size_t i = 0; i < exact.grads().tensors().size(); ++i)
    check(exact.grads().tensors()[i].tensor, host.grads().tensors()[i].tensor,
          device.grads().tensors()[i].tensor, "d" + exact.grads().tensors()[i].name);
}

INSTANTIATE_TEST_SUITE_P(Presets, ModelOnCuda, testing::ValuesIn(gradient_cases()),
                         [](const auto& info) { return info.param.name; });

// KV cache = 2 * attention layers * Hkv * D * max_len * bytes; a sliding-window layer keeps
// window - 1 positions and a recurrent layer its state, neither growing with max_len.
TEST(ModelCache, BytesFollowTheMemoryModel) {
  Context& ctx = context_for(Device::cpu());
  const ModelConfig config = ModelConfig::from_json(R"({"vocab_size": 11, "d_model": 16,
      "pattern": "*-S-*MWR", "attention": {"n_heads": 4, "n_kv_heads": 2, "window": 5},
      "mamba": {"d_state": 4, "expand": 2}, "mamba2": {"d_state": 8, "head_dim": 8},
      "rglru": {"width": 12}})");
  Model model(config, ctx, DType::f32);
  const int64_t B = 2, Hkv = 2, D = 4;
  const size_t mamba2_state = size_t(B * (32 + 2 * 8) * 3 + B * 4 * 8 * 8) * 4;  // conv + SSD
  const size_t mamba_state = size_t(B * 32 * 3 + B * 32 * 4) * 4;                // conv + scan
  const size_t rglru_state = size_t(B * 12 * 3 + B * 12) * 4;                    // conv + h
  const size_t window_kv = size_t(2 * B * (5 - 1) * Hkv * D) * 4;
  for (int64_t max_len : {16, 1000}) {
    const ModelCache cache = model.make_cache(B, max_len);
    const size_t kv = size_t(2 * 2 * B * Hkv * D * max_len * 4);  // two attention layers
    EXPECT_EQ(cache.bytes(LayerKind::attention), kv);
    EXPECT_EQ(cache.bytes(LayerKind::sliding_attention), window_kv);
    EXPECT_EQ(cache.bytes(LayerKind::mamba2), mamba2_state);
    EXPECT_EQ(cache.bytes(LayerKind::mamba), mamba_state);
    EXPECT_EQ(cache.bytes(LayerKind::rglru), rglru_state);
    EXPECT_EQ(cache.bytes(LayerKind::mlp), 0u);
    EXPECT_EQ(cache.bytes(), kv + window_kv + mamba2_state + mamba_state + rglru_state);
  }
}

// A Gated DeltaNet or KDA layer keeps its conv state (B, 2 H K + HV V, W - 1) and the delta rule's
// state S (B, HV, K, V): constant in max_len.
TEST(ModelCache, DeltaNetStateIsConstantInLength) {
  Context& ctx = context_for(Device::cpu());
  const ModelConfig config = ModelConfig::from_json(R"({"vocab_size": 11, "d_model": 16,
      "pattern": "G-K-", "deltanet": {"n_heads": 2, "n_v_heads": 4, "head_k_dim": 8,
      "head_v_dim": 6, "d_conv": 3}})");
  Model model(config, ctx, DType::f32);
  const int64_t B = 3;
  const size_t layer = size_t(B * (2 * 2 * 8 + 4 * 6) * 2 + B * 4 * 8 * 6) * 4;
  for (int64_t max_len : {16, 100000}) {
    const ModelCache cache = model.make_cache(B, max_len);
    EXPECT_EQ(cache.bytes(LayerKind::gated_deltanet), layer);
    EXPECT_EQ(cache.bytes(LayerKind::kda), layer);
    EXPECT_EQ(cache.bytes(), 2 * layer);
  }
}

TEST(ModelCache, BadUseIsAClearError) {
  Context& ctx = context_for(Device::cpu());
  const ModelConfig config =
      ModelConfig::from_json(R"({"vocab_size": 5, "d_model": 8, "pattern": "*-"})");
  Model model(config, ctx), other(config, ctx);
  ModelCache cache = model.make_cache(2, 4);
  Rng rng(1);
  EXPECT_LONGCTX_ERROR(model.decode(cache, random_tokens(3, 1, 5, rng, false)), "has batch 3",
                       "holds 2 sequences");
  EXPECT_LONGCTX_ERROR(model.decode(cache, random_tokens(2, 5, 5, rng, false)),
                       "beyond its max_len 4");
  EXPECT_LONGCTX_ERROR(other.decode(cache, random_tokens(2, 1, 5, rng, false)), "another model");
  EXPECT_LONGCTX_ERROR(model.make_cache(0, 4), "batch", "must be in [1, 16777216], got 0");
  model.decode(cache, random_tokens(2, 1, 5, rng, false));
  EXPECT_LONGCTX_ERROR(model.backward(), "needs a forward() with targets");
}

TEST(Model, RejectsBadInputs) {
  Context& ctx = context_for(Device::cpu());
  Model model(ModelConfig::from_json(R"({"vocab_size": 5, "d_model": 8, "pattern": "*"})"), ctx);
  EXPECT_LONGCTX_ERROR(model.backward(), "needs a forward() with targets");
  EXPECT_LONGCTX_ERROR(model.forward(Tensor::zeros({2, 3}, DType::f32)), "'tokens'",
                       "expected dtype i32");
  EXPECT_LONGCTX_ERROR(
      model.forward(Tensor::zeros({2, 3}, DType::i32), Tensor::zeros({2, 4}, DType::i32)),
      "'targets'", "expected shape (2, 3)");
}

// Batch-1 decoding in f32 (the path of `generate`: the GEMV for every projection), and with bf16
// inference weights: a 3-token prefill, then one token at a time, and one full forward, against
// the full forward of an f64 model holding the same values (for bf16: the matrices as the bf16
// copies hold them), by the 2x rule with the error of the f32 full forward of those values.
// Untied embeddings: with tied ones the bf16 head is also the f32 embedding table, which one f64
// model cannot hold.
class ModelDecodingF32 : public testing::TestWithParam<ModelCase> {};

TEST_P(ModelDecodingF32, BatchOneDecodingIsWithinTheRuleOfTheF64Model) {
  Context& ctx = context_for(Device::cpu());
  ModelConfig config = ModelConfig::from_json(GetParam().config);
  config.tie_embeddings = false;
  Rng rng(6);
  const int64_t T = 9, V = config.vocab_size;
  const Tensor tokens = random_tokens(1, T, V, rng, false);
  for (DType weights : {DType::f32, DType::bf16}) {
    const std::string what = std::string(dtype_name(weights)) + " weights";
    Model model(config, ctx, DType::f32, /*seed=*/5), naive(config, ctx, DType::f32, /*seed=*/5);
    Model exact(config, ctx, DType::f64, /*seed=*/5);
    model.set_inference_weights(weights);
    EXPECT_EQ(model.inference_weight_copies().tensors().empty(), weights == DType::f32);
    for (const auto& [name, copy] : model.inference_weight_copies().tensors())
      naive.params().get(name).copy_from(copy.to_dtype(DType::f32));
    for (size_t i = 0; i < naive.params().tensors().size(); ++i)
      exact.params().tensors()[i].tensor.copy_from(
          naive.params().tensors()[i].tensor.to_dtype(DType::f64));
    naive.forward(tokens);
    exact.forward(tokens);
    const Ref want = to_ref(exact.logits()), naive_logits = to_ref(naive.logits());
    Tensor got = poisoned({1, T, V}, DType::f32, Device::cpu(), &ctx);
    ModelCache cache = model.make_cache(1, T);
    int64_t pos = 0;
    for (int64_t chunk : {3, 1, 1, 1, 1, 1, 1}) {
      Tensor part = Tensor::empty({1, chunk}, DType::i32);
      part.copy_from(tokens.narrow(1, pos, chunk));
      got.narrow(1, pos, chunk).copy_from(model.decode(cache, part));
      pos += chunk;
    }
    expect_close_2x(got, want, naive_logits, DType::f32, what + ", cached decoding");
    model.forward(tokens);
    expect_close_2x(model.logits(), want, naive_logits, DType::f32, what + ", full forward");
  }
}

INSTANTIATE_TEST_SUITE_P(Presets, ModelDecodingF32, testing::ValuesIn(kModelCases),
                         [](const auto& info) { return info.param.name; });

TEST(ModelInferenceWeights, Bf16IsForF32CpuModelsAndRefusesBackward) {
  Context& ctx = context_for(Device::cpu());
  const ModelConfig config = ModelConfig::from_json(kModelCases[0].config);
  Model f64_model(config, ctx, DType::f64);
  EXPECT_LONGCTX_ERROR(f64_model.set_inference_weights(DType::bf16), "set_inference_weights",
                       "'dtype'", "f32 model on the CPU", "f64");
  Model model(config, ctx);
  EXPECT_LONGCTX_ERROR(model.set_inference_weights(DType::f16), "'dtype'", "f32 or bf16");
  model.set_inference_weights(DType::bf16);
  Rng rng(2);
  const Tensor tokens = random_tokens(1, 4, config.vocab_size, rng, false);
  model.forward(tokens, tokens);
  EXPECT_LONGCTX_ERROR(model.backward(), "Model::backward", "bf16 inference weights");
  // Back to the parameters: the bf16 forward's activations are not the f32 model's (the
  // gradients were off by 6.5e-5); after an f32 forward training works again.
  model.set_inference_weights(DType::f32);
  EXPECT_LONGCTX_ERROR(model.backward(), "Model::backward", "needs a forward() with targets");
  model.forward(tokens, tokens);
  model.backward();
}

// A forward that throws on its arguments changes nothing (backward() still gives the last good
// forward's gradients); one that throws once under way leaves backward() refused. Both gave
// wrong gradients without a word: the layout was reset before cu_seqlens was checked.
TEST(Model, AFailedForwardLeavesNoWrongGradients) {
  Context& ctx = context_for(Device::cpu());
  const ModelConfig config =
      ModelConfig::from_json(R"({"vocab_size": 7, "d_model": 8, "pattern": "*-S",
      "mamba2": {"d_state": 4, "head_dim": 4, "chunk_size": 4}})");
  Model model(config, ctx, DType::f64);
  Rng rng(3);
  const Tensor tokens = random_tokens(1, 8, 7, rng, false),
               targets = random_tokens(1, 8, 7, rng, false);
  const Tensor cu = Tensor::empty({3}, DType::i32);
  const int32_t cu_values[] = {0, 3, 8};
  std::copy(cu_values, cu_values + 3, cu.data_as<int32_t>());
  auto grads = [&] { return to_ref(model.grads().flat()); };
  model.forward(tokens, targets, cu);
  model.backward();
  const Ref want = grads();

  const Tensor bad_cu = Tensor::empty({4}, DType::i32);
  const int32_t bad_values[] = {0, 5, 3, 8};
  std::copy(bad_values, bad_values + 4, bad_cu.data_as<int32_t>());
  EXPECT_LONGCTX_ERROR(model.forward(tokens, targets, bad_cu), "'cu_seqlens'", "nondecreasing");
  EXPECT_LONGCTX_ERROR(model.forward(tokens, Tensor::zeros({1, 8}, DType::i64), cu), "'targets'");
  // Every other element of a (8, 2): strides (1, 2). It was read through reshape() only after
  // every layer had run.
  const Tensor strided = Tensor::zeros({8, 2}, DType::i32).narrow(1, 0, 1).transpose(0, 1);
  EXPECT_LONGCTX_ERROR(model.forward(tokens, strided, cu), "'targets'", "must be contiguous");
  model.backward();
  EXPECT_EQ(max_abs_diff(grads(), want), 0.0);

  Tensor outside = random_tokens(1, 8, 7, rng, false);
  outside.data_as<int32_t>()[5] = 7;
  EXPECT_LONGCTX_ERROR(model.forward(outside, targets), "tokens[5] = 7 is out of range");
  EXPECT_LONGCTX_ERROR(model.backward(), "needs a forward() with targets");
}

// A cache belongs to the model that made it, wherever that model goes: a model assigned over
// another (same address, other layers) refuses the old one's caches (it crashed in decode), a
// model moved to keeps working with its caches, and a model moved from is a clear error.
TEST(ModelCache, BelongsToItsModelThroughMoves) {
  Context& ctx = context_for(Device::cpu());
  const ModelConfig two =
      ModelConfig::from_json(R"({"vocab_size": 5, "d_model": 8, "pattern": "*-"})");
  const ModelConfig four =
      ModelConfig::from_json(R"({"vocab_size": 5, "d_model": 8, "pattern": "-*-*"})");
  Rng rng(4);
  const Tensor token = random_tokens(1, 1, 5, rng, false);
  Model model(two, ctx);
  ModelCache cache = model.make_cache(1, 8);
  model.decode(cache, token);
  model = Model(four, ctx);
  EXPECT_LONGCTX_ERROR(model.decode(cache, token), "another model");
  model = Model(two, ctx, DType::f32, 99);  // the same layers, other weights: still not its cache
  EXPECT_LONGCTX_ERROR(model.decode(cache, token), "another model");

  ModelCache mine = model.make_cache(1, 8), twin = model.make_cache(1, 8);
  const Ref first = to_ref(model.decode(mine, token));
  Model moved = std::move(model);
  EXPECT_EQ(max_abs_diff(to_ref(moved.decode(twin, token)), first), 0.0);
  // A cache moved from is empty (it read past the moved lengths and layers).
  ModelCache taken = std::move(twin);
  EXPECT_LONGCTX_ERROR(moved.decode(twin, token), "another model", "or is empty");
  EXPECT_EQ(taken.length(0), 1);
  moved.decode(taken, token);
  EXPECT_LONGCTX_ERROR(model.forward(token), "moved from");
  EXPECT_LONGCTX_ERROR(model.make_cache(1, 8), "moved from");
  EXPECT_LONGCTX_ERROR(mine.length(1), "ModelCache::length", "[0, 1)", "got 1");
  EXPECT_LONGCTX_ERROR(mine.length(-1), "got -1");
  EXPECT_EQ(mine.length(0), 1);
}

}  // namespace
}  // namespace longctx::test
