// Sampling and generation: greedy is the argmax, top-k = 1 and a tiny top-p are greedy,
// temperature sampling follows the softmax, top-k/top-p keep only their set, the seed fixes the
// tokens, greedy generation continues a sequence as full forwards would, and bad parameters are
// clear errors.
#include <cmath>

#include "harness.h"
#include "longctx/model/generate.h"

namespace longctx::test {
namespace {

const std::vector<double> kLogits = {0.5, 2.0, -1.0, 1.0, 2.0 - 1e-9};

TEST(Sampler, GreedyTopK1AndTinyTopPPickTheArgmax) {
  for (SamplingParams p : {SamplingParams{0.0, 0, 1.0, 1}, SamplingParams{1.0, 1, 1.0, 2},
                           SamplingParams{1.0, 0, 1e-6, 3}, SamplingParams{5.0, 1, 0.5, 4}}) {
    Sampler sampler(p);
    for (int i = 0; i < 20; ++i) EXPECT_EQ(sampler.sample(kLogits.data(), 5), 1);
  }
}

// Frequencies over 200k draws against softmax(logits / temperature), restricted and renormalised
// to the top-k / top-p set. The bound, 5 standard deviations of a binomial proportion, fails for
// a wrong temperature, a missing renormalisation or a token outside the set.
void expect_frequencies(const SamplingParams& p, const std::vector<bool>& allowed) {
  const int64_t V = int64_t(kLogits.size()), draws = 200000;
  std::vector<double> want(static_cast<size_t>(V));
  double total = 0;
  for (int64_t v = 0; v < V; ++v)
    total += want[size_t(v)] =
        allowed[size_t(v)] ? std::exp(kLogits[size_t(v)] / p.temperature) : 0;
  std::vector<int64_t> count(static_cast<size_t>(V));
  Sampler sampler(p);
  for (int64_t i = 0; i < draws; ++i) ++count[size_t(sampler.sample(kLogits.data(), V))];
  for (int64_t v = 0; v < V; ++v) {
    const double q = want[size_t(v)] / total, got = double(count[size_t(v)]) / double(draws);
    EXPECT_NEAR(got, q, 5 * std::sqrt(q * (1 - q) / double(draws)) + 1e-12)
        << "token " << v << ", temperature " << p.temperature << ", top_k " << p.top_k << ", top_p "
        << p.top_p;
  }
}

TEST(Sampler, FrequenciesFollowTheSoftmax) {
  expect_frequencies({1.0, 0, 1.0, 7}, {true, true, true, true, true});
  expect_frequencies({0.5, 0, 1.0, 8}, {true, true, true, true, true});
  // top_k = 3: tokens 1, 4, 3.
  expect_frequencies({1.0, 3, 1.0, 9}, {false, true, false, true, true});
  // Probabilities at T = 1: 0.379, 0.379, 0.139, 0.085, 0.019 (tokens 1, 4, 3, 0, 2): top_p = 0.8
  // keeps the first three, whose cumulative mass 0.896 is the first to reach it.
  expect_frequencies({1.0, 0, 0.8, 10}, {false, true, false, true, true});
}

TEST(Sampler, TheSeedFixesTheTokens) {
  Sampler a({1.0, 0, 1.0, 42}), b({1.0, 0, 1.0, 42}), c({1.0, 0, 1.0, 43});
  int same = 0, differ = 0;
  for (int i = 0; i < 100; ++i) {
    const int32_t x = a.sample(kLogits.data(), 5), y = b.sample(kLogits.data(), 5);
    EXPECT_EQ(x, y);
    (x == c.sample(kLogits.data(), 5) ? same : differ) += 1;
  }
  EXPECT_GT(differ, 0);
}

TEST(Sampler, BadParametersAreClearErrors) {
  EXPECT_LONGCTX_ERROR(Sampler({-1.0, 0, 1.0, 0}), "temperature", "must be >= 0");
  EXPECT_LONGCTX_ERROR(Sampler({1.0, -2, 1.0, 0}), "top_k", "must be >= 0");
  EXPECT_LONGCTX_ERROR(Sampler({1.0, 0, 0.0, 0}), "top_p", "must be in (0, 1]");
  EXPECT_LONGCTX_ERROR(Sampler({1.0, 0, 1.5, 0}), "top_p", "must be in (0, 1]");
}

// Greedy generation with the cache equals picking the argmax of a full forward over the growing
// sequence, for a hybrid of every cached layer kind: prompts of one length (prefilled together)
// and of different lengths (prefilled one at a time, then decoded together).
TEST(Generate, GreedyContinuationMatchesFullForwards) {
  Context& ctx = context_for(Device::cpu());
  Model model(ModelConfig::from_json(R"({"vocab_size": 13, "d_model": 16, "pattern": "*-SW-M",
      "attention": {"n_heads": 2, "n_kv_heads": 1, "window": 3},
      "mamba": {"d_state": 4}, "mamba2": {"d_state": 8, "head_dim": 8, "chunk_size": 4}})"),
              ctx, DType::f64, /*seed=*/3);
  for (const std::vector<std::vector<int32_t>>& prompts :
       {std::vector<std::vector<int32_t>>{{1, 5, 7}, {2, 2, 9}},
        {{1, 5, 7}, {2, 2, 9, 4, 1}, {6}}}) {
    const auto out = generate(model, prompts, 6, {0.0, 0, 1.0, 0});
    for (size_t b = 0; b < prompts.size(); ++b) {
      std::vector<int32_t> seq = prompts[b];
      ASSERT_EQ(out[b].size(), 6u);
      for (int32_t next : out[b]) {
        Tensor tokens = Tensor::empty({1, int64_t(seq.size())}, DType::i32);
        std::copy(seq.begin(), seq.end(), tokens.data_as<int32_t>());
        model.forward(tokens);
        const double* last = model.logits().data_as<double>() + (seq.size() - 1) * 13;
        EXPECT_EQ(next, int32_t(std::max_element(last, last + 13) - last)) << "prompt " << b;
        seq.push_back(next);
      }
    }
  }
  const std::vector<std::vector<int32_t>> prompts = {{1, 5, 7}, {2, 2, 9}};
  // Same seed, same tokens; the prompts are checked.
  EXPECT_EQ(generate(model, prompts, 5, {1.0, 0, 1.0, 9}),
            generate(model, prompts, 5, {1.0, 0, 1.0, 9}));
  EXPECT_LONGCTX_ERROR(generate(model, {{1, 20}}, 2), "holds token 20");
  EXPECT_LONGCTX_ERROR(generate(model, {{1, 2}, {}}, 2), "at least one token");
  EXPECT_LONGCTX_ERROR(generate(model, {}, 2), "at least one prompt");
  // The caches are sized for prompt + continuation: bounded before they are allocated.
  EXPECT_LONGCTX_ERROR(generate(model, prompts, int64_t(1) << 40), "'max_new_tokens'",
                       "must be in [0, 16777213]");
  // A cache that cannot be allocated says which layer's, for what batch and length: 2^54 bytes
  // here, beyond any address space (AddressSanitizer aborts on such a request instead).
  if (!kSanitizerBuild)
    EXPECT_LONGCTX_ERROR(model.make_cache(int64_t(1) << 24, int64_t(1) << 24),
                         "Model::make_cache: the cache of layer 0 (attention) for batch "
                         "16777216 and max_len 16777216 tokens cannot be allocated",
                         "out of host memory");
  EXPECT_LONGCTX_ERROR(model.make_cache(int64_t(1) << 40, 4), "'batch'",
                       "must be in [1, 16777216], got 1099511627776");
  EXPECT_LONGCTX_ERROR(model.make_cache(1, (int64_t(1) << 24) + 1), "'max_len'",
                       "must be in [1, 16777216]");
}

// A model whose output is not finite (its parameters hold NaN) is an error, not tokens sampled
// from NaN.
TEST(Sampler, NonFiniteLogitsAreAnError) {
  Sampler greedy({0.0, 0, 1.0, 0}), sampled({1.0, 0, 1.0, 0});
  const double nan = std::nan(""), inf = INFINITY;
  for (Sampler* s : {&greedy, &sampled}) {
    const std::vector<double> with_nan = {0.5, nan, 1.0}, with_inf = {0.5, -inf, 1.0};
    EXPECT_LONGCTX_ERROR(s->sample(with_nan.data(), 3), "logit 1 is nan", "not finite");
    EXPECT_LONGCTX_ERROR(s->sample(with_inf.data(), 3), "logit 1 is -inf");
  }
}

}  // namespace
}  // namespace longctx::test
