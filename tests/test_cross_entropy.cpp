// cross_entropy: every case x backend against the reference (loss, lse, dlogits, in place);
// bad targets on every backend; the reference's backward against finite differences; bad inputs.
#include "harness.h"
#include "longctx/ops/cross_entropy.h"
#include "reference/cross_entropy.h"

namespace longctx::test {
namespace {

struct CrossEntropyCase {
  std::string name;
  Shape rows;  // logits are rows + (V)
  int64_t V;
  double ignored_fraction;
  double logit_range;
};
LONGCTX_PRINTS_AS_NAME(CrossEntropyCase)

const std::vector<CrossEntropyCase> kCases = {
    {"gpt2_tiny", {2, 7}, 50, 0.0, 4.0},     {"mqar_mostly_ignored", {4, 32}, 300, 0.9, 4.0},
    {"byte_level", {3, 33}, 256, 0.2, 4.0},  {"llama_vocab_rows", {2}, 32000, 0.0, 4.0},
    {"large_logits", {5, 9}, 97, 0.1, 60.0}, {"all_ignored", {2, 3}, 10, 1.0, 4.0},
};

class CrossEntropy : public testing::TestWithParam<std::tuple<CrossEntropyCase, Backend>> {};

TEST_P(CrossEntropy, MatchesReference) {
  const auto& [c, backend] = GetParam();
  LONGCTX_SKIP_IF_UNAVAILABLE(backend.device);
  Context& ctx = context_for(backend.device);
  const Device dev = backend.device;
  const DType dt = backend.dtype, sd = stat_dtype(dt);
  ASSERT_EQ(cross_entropy_supports(dev, dt), "");
  Rng rng(606);
  Shape logits_shape = c.rows;
  logits_shape.push_back(c.V);
  const Ref logits = rounded(random_ref(logits_shape, rng, -c.logit_range, c.logit_range), dt);
  const int64_t N = logits.numel() / c.V;
  std::vector<int32_t> targets(static_cast<size_t>(N));
  for (int32_t& t : targets)
    t = rng.uniform(0, 1) < c.ignored_fraction ? -100 : int32_t(rng.integer(0, c.V - 1));
  const Tensor logits_t = from_ref(logits, dt, dev), targets_t = int_tensor(targets, c.rows, dev);

  Tensor loss = poisoned({1}, sd, dev, &ctx), lse = poisoned(c.rows, sd, dev, &ctx);
  cross_entropy_fwd(ctx, loss, lse, logits_t, targets_t);
  const auto exact = ref::cross_entropy_fwd<Oracle>(logits, targets, -100, no_round);
  const double dloss = double(float(1.7));
  Tensor dlogits = poisoned(logits_shape, dt, dev, &ctx);
  cross_entropy_bwd(ctx, dlogits, from_ref(Ref({1}, dloss), sd, dev), logits_t, targets_t, lse);
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    const auto naive = ref::cross_entropy_fwd<S>(logits, targets, -100, rounding_for(sd));
    expect_close_2x(loss, exact.loss, naive.loss, sd, "loss");
    expect_close_2x(lse, exact.lse, naive.lse, sd, "lse");
    expect_close_2x(
        dlogits, ref::cross_entropy_bwd<Oracle>(dloss, logits, targets, -100, no_round, no_round),
        ref::cross_entropy_bwd<S>(dloss, logits, targets, -100, rounding_for(sd), rounding_for(dt)),
        dt, "dlogits");
  });
  if (c.ignored_fraction == 1.0) EXPECT_EQ(to_ref(loss)[0], 0.0) << "no labelled position";

  // In place: dlogits over the logits buffer gives the same bits.
  Tensor in_place = from_ref(logits, dt, dev);
  cross_entropy_bwd(ctx, in_place, from_ref(Ref({1}, dloss), sd, dev), in_place, targets_t, lse);
  expect_equal(in_place, dlogits, "dlogits, in place over logits");
}

INSTANTIATE_TEST_SUITE_P(Cases, CrossEntropy,
                         testing::Combine(testing::ValuesIn(kCases),
                                          testing::ValuesIn(all_backends())),
                         case_name<CrossEntropyCase>);

class CrossEntropyBadTarget : public testing::TestWithParam<Backend> {};

TEST_P(CrossEntropyBadTarget, NamesPositionValueAndV) {
  const Backend backend = GetParam();
  LONGCTX_SKIP_IF_UNAVAILABLE(backend.device);
  Context& ctx = context_for(backend.device);
  const Device dev = backend.device;
  const DType sd = stat_dtype(backend.dtype);
  const Tensor logits = Tensor::zeros({2, 3, 10}, backend.dtype, dev, &ctx);
  Tensor loss = Tensor::empty({1}, sd, dev, &ctx), lse = Tensor::empty({2, 3}, sd, dev, &ctx);
  // On CUDA the error comes at the next synchronisation (the call does not wait for the device).
  const Tensor bad1 = int_tensor({1, -100, 3, 10, 7, 12}, {2, 3}, dev);
  const Tensor bad2 = int_tensor({1, -1, 3, 0, 7, 2}, {2, 3}, dev);
  const Tensor bad3 = int_tensor({1, -1, -100, 0, 7, 2}, {2, 3}, dev);
  EXPECT_LONGCTX_ERROR(
      then_synchronize(ctx, [&] { cross_entropy_fwd(ctx, loss, lse, logits, bad1); }),
      "cross_entropy_fwd", "targets[3] = 10", "V = 10", "valid: 0 .. 9, or ignore_index = -100");
  EXPECT_LONGCTX_ERROR(
      then_synchronize(ctx, [&] { cross_entropy_fwd(ctx, loss, lse, logits, bad2); }),
      "targets[1] = -1");
  // A custom ignore_index: -100 is then an ordinary (bad) target.
  EXPECT_LONGCTX_ERROR(
      then_synchronize(ctx, [&] { cross_entropy_fwd(ctx, loss, lse, logits, bad3, {-1}); }),
      "targets[2] = -100", "or ignore_index = -1");
}

// On CUDA, reading the loss on the host raises the error of a bad target of that forward; a bad
// token in an earlier call of another op is raised first.
TEST(CrossEntropyBadTarget, CudaRaisesWhenTheLossIsRead) {
  LONGCTX_SKIP_IF_UNAVAILABLE(Device::cuda(0));
  const Device dev = Device::cuda(0);
  Context& ctx = context_for(dev);
  const Tensor logits = Tensor::zeros({2, 3, 10}, DType::f32, dev, &ctx);
  Tensor loss = Tensor::empty({1}, DType::f32, dev, &ctx);
  Tensor lse = Tensor::empty({2, 3}, DType::f32, dev, &ctx);
  const Tensor bad = int_tensor({1, 2, 3, 4, 11, 5}, {2, 3}, dev);
  EXPECT_NO_THROW(cross_entropy_fwd(ctx, loss, lse, logits, bad));
  EXPECT_LONGCTX_ERROR(loss.to(Device::cpu(), &ctx), "cross_entropy_fwd", "targets[4] = 11");

  const Tensor table = Tensor::zeros({10, 4}, DType::f32, dev, &ctx);
  Tensor out = Tensor::empty({2, 3, 4}, DType::f32, dev, &ctx);
  embedding_fwd(ctx, out, int_tensor({0, 0, 0, 0, 0, 10}, {2, 3}, dev), table);
  cross_entropy_fwd(ctx, loss, lse, logits, bad);
  EXPECT_LONGCTX_ERROR(loss.to(Device::cpu(), &ctx), "embedding_fwd", "tokens[5] = 10");
  EXPECT_NO_THROW(ctx.synchronize());  // the second error of the interval is not kept
}

INSTANTIATE_TEST_SUITE_P(Backends, CrossEntropyBadTarget, testing::ValuesIn(all_backends()),
                         [](const testing::TestParamInfo<Backend>& info) {
                           std::string name = info.param.name();
                           for (char& ch : name)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return name;
                         });

TEST(CrossEntropyReference, BackwardMatchesFiniteDifferences) {
  Rng rng(13);
  const Ref logits = random_ref({4, 6}, rng, -3, 3);
  const std::vector<int32_t> targets = {2, -100, 5, 0};
  const double dloss = 0.7;
  auto loss = [&](const std::vector<Ref>& in) {
    return dloss * ref::cross_entropy_fwd<double>(in[0], targets, -100, no_round).loss[0];
  };
  const Ref d = ref::cross_entropy_bwd<double>(dloss, logits, targets, -100, no_round, no_round);
  EXPECT_LE(max_abs_diff(d, finite_difference(loss, {logits}, 0)), 1e-8);
}

TEST(CrossEntropyReference, UniformLogitsGiveLogV) {
  const Ref logits({3, 8}, 0.25);
  const auto r = ref::cross_entropy_fwd<double>(logits, {1, 7, -100}, -100, no_round);
  EXPECT_NEAR(r.loss[0], std::log(8.0), 1e-15);
}

TEST(CrossEntropyBadInput, NamesTheArgument) {
  Context& ctx = context_for(Device::cpu());
  Tensor logits = Tensor::zeros({4, 10}, DType::f32), targets = int_tensor({1, 2, 3, 4}, {4});
  Tensor loss = Tensor::empty({1}, DType::f32), lse = Tensor::empty({4}, DType::f32);
  EXPECT_LONGCTX_ERROR(cross_entropy_fwd(ctx, loss, lse, logits, int_tensor({1, 2, 3}, {3})),
                       "cross_entropy_fwd", "'targets'", "expected shape (4,)", "got (3,)");
  EXPECT_LONGCTX_ERROR(cross_entropy_fwd(ctx, loss, lse, logits, Tensor::zeros({4}, DType::i64)),
                       "'targets'", "expected dtype i32");
  EXPECT_LONGCTX_ERROR(
      cross_entropy_fwd(ctx, loss, Tensor::empty({4}, DType::f64), logits, targets), "'lse'",
      "expected dtype f32", "got f64");
  EXPECT_LONGCTX_ERROR(cross_entropy_fwd(ctx, Tensor::empty({2}, DType::f32), lse, logits, targets),
                       "'loss'", "expected shape (1,)");
  EXPECT_LONGCTX_ERROR(
      cross_entropy_fwd(ctx, loss, lse, Tensor::zeros({4, 0}, DType::f32), targets), "'logits'",
      "V >= 1");
  Tensor dlogits = Tensor::empty({4, 10}, DType::f32);
  EXPECT_LONGCTX_ERROR(
      cross_entropy_bwd(ctx, dlogits, Tensor::zeros({1}, DType::f64), logits, targets, lse),
      "cross_entropy_bwd", "'dloss'", "expected dtype f32");
  EXPECT_LONGCTX_ERROR(cross_entropy_bwd(ctx, logits.narrow(0, 1, 3), loss, logits.narrow(0, 0, 3),
                                         targets.narrow(0, 0, 3), lse.narrow(0, 0, 3)),
                       "'dlogits'", "overlaps input 'logits'");
}

TEST(CrossEntropySupports, NamesTheBackendsDtypes) {
  EXPECT_EQ(cross_entropy_supports(Device::cpu(), DType::f64), "");
  EXPECT_EQ(cross_entropy_supports(Device::cuda(0), DType::bf16), "");
  const std::string why = cross_entropy_supports(Device::cpu(), DType::f16);
  EXPECT_NE(why.find("cross_entropy on the CPU backend supports dtypes f32, f64, got f16"),
            std::string::npos)
      << why;
  EXPECT_NE(cross_entropy_supports(Device::cuda(0), DType::f64).find("f32, bf16, f16"),
            std::string::npos);
}

}  // namespace
}  // namespace longctx::test
