// embedding: every case x backend against the reference; out-of-range tokens on every backend;
// the reference's backward against finite differences; bad inputs.
#include "harness.h"
#include "longctx/ops/embedding.h"
#include "reference/embedding.h"

namespace longctx::test {
namespace {

struct EmbeddingCase {
  std::string name;
  Shape tokens_shape;
  int64_t V, C;
  double blank_fraction;  // share of tokens that are id 0 (MQAR: most positions are blank)
};
LONGCTX_PRINTS_AS_NAME(EmbeddingCase)

const std::vector<EmbeddingCase> kCases = {
    {"gpt2_tiny", {2, 7}, 50, 64, 0.0},
    {"mqar_blank_heavy", {4, 64}, 300, 130, 0.8},
    {"byte_level", {3, 33}, 256, 48, 0.0},
    {"no_tokens", {0, 4}, 7, 8, 0.0},
};

std::vector<int32_t> random_tokens(const Shape& shape, int64_t V, double blank_fraction, Rng& rng) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::vector<int32_t> tokens(static_cast<size_t>(n));
  for (int32_t& t : tokens)
    t = rng.uniform(0, 1) < blank_fraction ? 0 : int32_t(rng.integer(0, V - 1));
  return tokens;
}

class Embedding : public testing::TestWithParam<std::tuple<EmbeddingCase, Backend>> {};

TEST_P(Embedding, MatchesReference) {
  const auto& [c, backend] = GetParam();
  LONGCTX_SKIP_IF_UNAVAILABLE(backend.device);
  Context& ctx = context_for(backend.device);
  const Device dev = backend.device;
  const DType dt = backend.dtype;
  ASSERT_EQ(embedding_supports(dev, dt), "");
  Rng rng(505);
  const std::vector<int32_t> tokens = random_tokens(c.tokens_shape, c.V, c.blank_fraction, rng);
  const Tensor tokens_t = int_tensor(tokens, c.tokens_shape, dev);
  const Ref table = rounded(random_ref({c.V, c.C}, rng), dt);
  Shape out_shape = c.tokens_shape;
  out_shape.push_back(c.C);
  const Ref dout = rounded(random_ref(out_shape, rng), dt);

  Tensor out = poisoned(out_shape, dt, dev, &ctx);
  embedding_fwd(ctx, out, tokens_t, from_ref(table, dt, dev));
  EXPECT_EQ(max_abs_diff(to_ref(out), ref::embedding_fwd(tokens, c.tokens_shape, table)), 0.0)
      << "out: a lookup must be exact";

  Tensor dtable = poisoned({c.V, c.C}, dt, dev, &ctx);
  const Tensor dout_t = from_ref(dout, dt, dev);
  embedding_bwd(ctx, dtable, dout_t, tokens_t);
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    expect_close_2x(dtable, ref::embedding_bwd<Oracle>(dout, tokens, c.V, no_round),
                    ref::embedding_bwd<S>(dout, tokens, c.V, rounding_for(dt)), dt, "dtable");
  });
  Tensor again = poisoned({c.V, c.C}, dt, dev, &ctx);
  embedding_bwd(ctx, again, dout_t, tokens_t);
  expect_equal(again, dtable, "dtable, second run (deterministic)");
}

INSTANTIATE_TEST_SUITE_P(Cases, Embedding,
                         testing::Combine(testing::ValuesIn(kCases),
                                          testing::ValuesIn(all_backends())),
                         case_name<EmbeddingCase>);

class EmbeddingBadToken : public testing::TestWithParam<Backend> {};

TEST_P(EmbeddingBadToken, NamesPositionValueAndV) {
  const Backend backend = GetParam();
  LONGCTX_SKIP_IF_UNAVAILABLE(backend.device);
  Context& ctx = context_for(backend.device);
  const Device dev = backend.device;
  const Tensor table = Tensor::zeros({50, 4}, backend.dtype, dev, &ctx);
  Tensor out = Tensor::empty({2, 3, 4}, backend.dtype, dev, &ctx);
  const Tensor bad1 = int_tensor({1, 2, 3, 50, 7, 99}, {2, 3}, dev);
  const Tensor bad2 = int_tensor({1, -4, 3, 0, 7, 9}, {2, 3}, dev);
  const Tensor bad3 = int_tensor({1, 2, 3, 4, 5, 1000}, {2, 3}, dev);
  EXPECT_LONGCTX_ERROR(then_synchronize(ctx, [&] { embedding_fwd(ctx, out, bad1, table); }),
                       "embedding_fwd", "tokens[3] = 50", "V = 50", "valid: 0 .. 49");
  EXPECT_LONGCTX_ERROR(then_synchronize(ctx, [&] { embedding_fwd(ctx, out, bad2, table); }),
                       "tokens[1] = -4");
  Tensor dtable = Tensor::empty({50, 4}, backend.dtype, dev, &ctx);
  const Tensor dout = Tensor::zeros({2, 3, 4}, backend.dtype, dev, &ctx);
  EXPECT_LONGCTX_ERROR(then_synchronize(ctx, [&] { embedding_bwd(ctx, dtable, dout, bad3); }),
                       "embedding_bwd", "tokens[5] = 1000", "V = 50");
}

// On CUDA the calls do not wait for the device: the first bad token since the last
// synchronisation is raised there (Context::synchronize, or a copy to the host on the context),
// once; the bad row reads as zeros, the others are looked up, and the context runs on.
TEST(EmbeddingBadToken, CudaRaisesTheFirstAtTheNextSynchronisationOnce) {
  LONGCTX_SKIP_IF_UNAVAILABLE(Device::cuda(0));
  const Device dev = Device::cuda(0);
  Context& ctx = context_for(dev);
  Rng rng(8);
  const Ref table = random_ref({50, 4}, rng);
  const Tensor table_t = from_ref(table, DType::f32, dev);
  const std::vector<int32_t> tokens = {1, 2, 3, 50, 7, 49};
  Tensor out = poisoned({2, 3, 4}, DType::f32, dev, &ctx);
  EXPECT_NO_THROW(embedding_fwd(ctx, out, int_tensor(tokens, {2, 3}, dev), table_t));
  Tensor out2 = poisoned({2, 3, 4}, DType::f32, dev, &ctx);
  EXPECT_NO_THROW(embedding_fwd(ctx, out2, int_tensor({0, -4, 0, 0, 0, 0}, {2, 3}, dev), table_t));
  EXPECT_LONGCTX_ERROR(ctx.synchronize(), "embedding_fwd", "tokens[3] = 50", "V = 50",
                       "since the context last synchronised");
  EXPECT_NO_THROW(ctx.synchronize());
  std::vector<int32_t> looked_up = tokens;
  looked_up[3] = 0;
  Ref want = ref::embedding_fwd(looked_up, {2, 3}, table);
  for (int64_t c = 0; c < 4; ++c) want[3 * 4 + c] = 0.0;
  EXPECT_EQ(max_abs_diff(to_ref(out), want), 0.0) << "a zero row for the bad token";

  embedding_fwd(ctx, out, int_tensor({60, 2, 3, 4, 5, 6}, {2, 3}, dev), table_t);
  EXPECT_LONGCTX_ERROR(out.to(Device::cpu(), &ctx), "tokens[0] = 60");
  EXPECT_NO_THROW(ctx.synchronize());
}

INSTANTIATE_TEST_SUITE_P(Backends, EmbeddingBadToken, testing::ValuesIn(all_backends()),
                         [](const testing::TestParamInfo<Backend>& info) {
                           std::string name = info.param.name();
                           for (char& ch : name)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return name;
                         });

TEST(EmbeddingReference, BackwardMatchesFiniteDifferences) {
  Rng rng(12);
  const std::vector<int32_t> tokens = {3, 0, 3, 1, 3, 4};
  const Ref table = random_ref({5, 3}, rng), dout = random_ref({2, 3, 3}, rng);
  auto loss = [&](const std::vector<Ref>& in) {
    return dot(ref::embedding_fwd(tokens, {2, 3}, in[0]), dout);
  };
  const Ref dtable = ref::embedding_bwd<double>(dout, tokens, 5, no_round);
  EXPECT_LE(max_abs_diff(dtable, finite_difference(loss, {table}, 0)), 1e-8);
}

TEST(EmbeddingBadInput, NamesTheArgument) {
  Context& ctx = context_for(Device::cpu());
  Tensor table = Tensor::zeros({10, 4}, DType::f32), tokens = int_tensor({1, 2, 3}, {3});
  Tensor out = Tensor::empty({3, 4}, DType::f32);
  EXPECT_LONGCTX_ERROR(embedding_fwd(ctx, out, Tensor::zeros({3}, DType::i64), table),
                       "embedding_fwd", "'tokens'", "expected dtype i32", "got i64");
  EXPECT_LONGCTX_ERROR(embedding_fwd(ctx, Tensor::empty({3, 5}, DType::f32), tokens, table),
                       "'out'", "expected shape (3, 4)");
  EXPECT_LONGCTX_ERROR(embedding_fwd(ctx, out, tokens, Tensor::zeros({10, 4, 1}, DType::f32)),
                       "'table'", "must have 2 dimensions");
  EXPECT_LONGCTX_ERROR(embedding_fwd(ctx, out, tokens, Tensor::zeros({0, 4}, DType::f32)),
                       "'table'", "at least one row");
  EXPECT_LONGCTX_ERROR(embedding_bwd(ctx, table, Tensor::zeros({3, 4}, DType::f64), tokens),
                       "embedding_bwd", "'dout'", "expected dtype f32");
  EXPECT_LONGCTX_ERROR(embedding_bwd(ctx, table, table.narrow(0, 0, 3), tokens), "'dtable'",
                       "overlaps input 'dout'");
}

TEST(EmbeddingSupports, NamesTheBackendsDtypes) {
  EXPECT_EQ(embedding_supports(Device::cpu(), DType::f64), "");
  EXPECT_EQ(embedding_supports(Device::cuda(0), DType::bf16), "");
  const std::string why = embedding_supports(Device::cpu(), DType::f16);
  EXPECT_NE(why.find("embedding on the CPU backend supports dtypes f32, f64, got f16"),
            std::string::npos)
      << why;
  EXPECT_NE(embedding_supports(Device::cuda(0), DType::f64).find("f32, bf16, f16"),
            std::string::npos);
}

}  // namespace
}  // namespace longctx::test
