// add: every backend against the reference (exact: one rounding of an exact sum), bad inputs.
#include "harness.h"
#include "longctx/ops/add.h"

namespace longctx::test {
namespace {

class Add : public testing::TestWithParam<Backend> {};

TEST_P(Add, MatchesReference) {
  const Backend backend = GetParam();
  LONGCTX_SKIP_IF_UNAVAILABLE(backend.device);
  Context& ctx = context_for(backend.device);
  Rng rng(3);
  for (const Shape& shape : {Shape{3, 5}, Shape{70001}, Shape{0, 4}}) {
    const Ref a = rounded(random_ref(shape, rng), backend.dtype);
    const Ref b = rounded(random_ref(shape, rng), backend.dtype);
    Ref sum(shape);
    for (int64_t i = 0; i < sum.numel(); ++i) sum[i] = a[i] + b[i];
    const Ref expected = rounded(sum, backend.dtype);  // a correctly rounded sum
    Tensor ta = from_ref(a, backend.dtype, backend.device);
    Tensor out = poisoned(shape, backend.dtype, backend.device, &ctx);
    add_fwd(ctx, out, ta, from_ref(b, backend.dtype, backend.device));
    EXPECT_EQ(max_abs_diff(to_ref(out), expected), 0.0) << shape_str(shape);
    add_fwd(ctx, ta, ta, from_ref(b, backend.dtype, backend.device));  // in place
    EXPECT_EQ(max_abs_diff(to_ref(ta), expected), 0.0) << "in place " << shape_str(shape);
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, Add, testing::ValuesIn(all_backends()),
                         [](const auto& info) { return info.param.name(); });

TEST(AddBadInput, NamesTheArgument) {
  Context& ctx = context_for(Device::cpu());
  Tensor a = Tensor::zeros({4, 8}, DType::f32);
  EXPECT_LONGCTX_ERROR(add_fwd(ctx, a, a, Tensor::zeros({4, 7}, DType::f32)), "add_fwd", "'b'",
                       "expected shape (4, 8)");
  EXPECT_LONGCTX_ERROR(add_fwd(ctx, a, a, Tensor::zeros({4, 8}, DType::f64)), "'b'",
                       "expected dtype f32");
  EXPECT_LONGCTX_ERROR(add_fwd(ctx, a.reshape({32}).narrow(0, 1, 31),
                               a.reshape({32}).narrow(0, 0, 31), a.reshape({32}).narrow(0, 0, 31)),
                       "'out'", "overlaps");
}

}  // namespace
}  // namespace longctx::test
