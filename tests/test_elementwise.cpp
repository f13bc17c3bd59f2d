// Elementwise ops against the reference on every backend; reference gradient by finite
// differences; bad inputs.
#include <cmath>

#include "harness.h"
#include "longctx/ops/elementwise.h"

namespace longctx::test {
namespace {

template <class S>
Ref neg_exp_ref(const Ref& x, const Round& round) {
  Ref out(x.shape);
  for (int64_t i = 0; i < x.numel(); ++i) out[i] = round(double(-std::exp(S(x[i]))));
  return out;
}

class NegExp : public testing::TestWithParam<Backend> {};

TEST_P(NegExp, MatchesReference) {
  const auto [device, dt] = GetParam();
  LONGCTX_SKIP_IF_UNAVAILABLE(device);
  Context& ctx = context_for(device);
  Rng rng(4);
  const Ref x = rounded(random_ref({3, 1000}, rng, -4, 2), dt);
  const Ref dout = rounded(random_ref({3, 1000}, rng), dt);
  Tensor out = poisoned(x.shape, dt, device, &ctx);
  neg_exp_fwd(ctx, out, from_ref(x, dt, device));
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    expect_close_2x(out, neg_exp_ref<Oracle>(x, no_round), neg_exp_ref<S>(x, rounding_for(dt)), dt,
                    "out");
  });
  // dx = dout * out, with `out` as the op computed it: a single rounded product.
  Tensor dx = poisoned(x.shape, dt, device, &ctx);
  neg_exp_bwd(ctx, dx, from_ref(dout, dt, device), out);
  const Ref y = to_ref(out);
  Ref exact(x.shape);
  for (int64_t i = 0; i < exact.numel(); ++i) exact[i] = dout[i] * y[i];
  expect_close_2x(dx, exact, rounded(exact, dt), dt, "dx");
}

INSTANTIATE_TEST_SUITE_P(Backends, NegExp, testing::ValuesIn(all_backends()),
                         [](const auto& info) { return info.param.name(); });

TEST(NegExpReference, GradientMatchesFiniteDifferences) {
  Rng rng(5);
  const Ref x = random_ref({7}, rng), dout = random_ref({7}, rng);
  auto loss = [&](const std::vector<Ref>& in) {
    return dot(neg_exp_ref<double>(in[0], no_round), dout);
  };
  const Ref y = neg_exp_ref<double>(x, no_round);
  Ref analytic(x.shape);
  for (int64_t i = 0; i < 7; ++i) analytic[i] = dout[i] * y[i];
  EXPECT_LE(max_abs_diff(analytic, finite_difference(loss, {x}, 0)), 1e-8);
}

TEST(NegExpBadInput, NamesTheArgument) {
  Context& ctx = context_for(Device::cpu());
  Tensor x = Tensor::zeros({4}, DType::f32);
  EXPECT_LONGCTX_ERROR(neg_exp_fwd(ctx, Tensor::zeros({5}, DType::f32), x), "neg_exp_fwd", "'out'",
                       "expected shape (4,)");
  EXPECT_LONGCTX_ERROR(neg_exp_bwd(ctx, x, x, Tensor::zeros({4}, DType::f64)), "'out'",
                       "expected dtype f32");
}

}  // namespace
}  // namespace longctx::test
