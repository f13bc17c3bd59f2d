// rmsnorm: every case x backend against the reference; the reference against finite differences;
// bad inputs.
#include "harness.h"
#include "longctx/ops/rmsnorm.h"
#include "reference/rmsnorm.h"

namespace longctx::test {
namespace {

struct RMSNormCase {
  std::string name;
  Shape x_shape;
};
LONGCTX_PRINTS_AS_NAME(RMSNormCase)

const std::vector<RMSNormCase> kCases = {
    {"llama_tiny", {2, 7, 64}},
    {"mamba_130m", {33, 768}},
    {"odd_width", {5, 333}},
    {"many_rows", {300, 16}},
};

class RMSNorm : public testing::TestWithParam<std::tuple<RMSNormCase, Backend>> {};

TEST_P(RMSNorm, MatchesReference) {
  const auto& [c, backend] = GetParam();
  LONGCTX_SKIP_IF_UNAVAILABLE(backend.device);
  Context& ctx = context_for(backend.device);
  const Device dev = backend.device;
  const DType dt = backend.dtype;
  const DType rstd_dt = stat_dtype(dt);
  Rng rng(101);
  const int64_t C = c.x_shape.back(), rows = Tensor::empty(c.x_shape, dt).numel() / C;
  const Ref x = rounded(random_ref(c.x_shape, rng, -2, 2), dt);
  const Ref w = rounded(random_ref({C}, rng, 0.5, 1.5), dt);
  const Ref dout = rounded(random_ref(c.x_shape, rng), dt);
  const double eps = 1e-5;

  Tensor out = poisoned(c.x_shape, dt, dev, &ctx), rstd = poisoned({rows}, rstd_dt, dev, &ctx);
  rmsnorm_fwd(ctx, out, rstd, from_ref(x, dt, dev), from_ref(w, dt, dev), {eps});
  const auto exact = ref::rmsnorm_fwd<Oracle>(x, w, eps, no_round);
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    const auto naive = ref::rmsnorm_fwd<S>(x, w, eps, rounding_for(dt));
    expect_close_2x(out, exact.out, naive.out, dt, "out");
    expect_close_2x(rstd, exact.rstd, naive.rstd, rstd_dt, "rstd");
  });

  Tensor dx = poisoned(c.x_shape, dt, dev, &ctx), dw = poisoned({C}, dt, dev, &ctx);
  rmsnorm_bwd(ctx, dx, dw, from_ref(dout, dt, dev), from_ref(x, dt, dev), from_ref(w, dt, dev),
              rstd, {eps});
  const auto grads = ref::rmsnorm_bwd<Oracle>(dout, x, w, eps, no_round);
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    const auto naive = ref::rmsnorm_bwd<S>(dout, x, w, eps, rounding_for(dt));
    expect_close_2x(dx, grads.dx, naive.dx, dt, "dx");
    expect_close_2x(dw, grads.dweight, naive.dweight, dt, "dweight");
  });
}

INSTANTIATE_TEST_SUITE_P(Cases, RMSNorm,
                         testing::Combine(testing::ValuesIn(kCases),
                                          testing::ValuesIn(all_backends())),
                         case_name<RMSNormCase>);

TEST(RMSNormReference, GradientsMatchFiniteDifferences) {
  Rng rng(7);
  const Ref x = random_ref({3, 5}, rng), w = random_ref({5}, rng), dout = random_ref({3, 5}, rng);
  const double eps = 1e-5;
  auto loss = [&](const std::vector<Ref>& in) {
    return dot(ref::rmsnorm_fwd<double>(in[0], in[1], eps, no_round).out, dout);
  };
  const auto g = ref::rmsnorm_bwd<double>(dout, x, w, eps, no_round);
  EXPECT_LE(max_abs_diff(g.dx, finite_difference(loss, {x, w}, 0)), 1e-8);
  EXPECT_LE(max_abs_diff(g.dweight, finite_difference(loss, {x, w}, 1)), 1e-8);
}

TEST(RMSNormBadInput, NamesTheArgument) {
  Context& ctx = context_for(Device::cpu());
  Tensor x = Tensor::zeros({4, 8}, DType::f32), w = Tensor::zeros({8}, DType::f32);
  Tensor out = Tensor::empty({4, 8}, DType::f32), rstd = Tensor::empty({4}, DType::f32);
  EXPECT_LONGCTX_ERROR(rmsnorm_fwd(ctx, out, rstd, x, Tensor::zeros({7}, DType::f32)),
                       "rmsnorm_fwd", "'weight'", "expected shape (8,)", "got (7,)");
  EXPECT_LONGCTX_ERROR(rmsnorm_fwd(ctx, out, rstd, x, Tensor::zeros({8}, DType::f64)), "'weight'",
                       "expected dtype f32", "got f64");
  EXPECT_LONGCTX_ERROR(rmsnorm_fwd(ctx, out, Tensor::empty({3}, DType::f32), x, w), "'rstd'",
                       "expected shape (4,)");
  EXPECT_LONGCTX_ERROR(rmsnorm_fwd(ctx, out, rstd, x.to_dtype(DType::bf16), w), "'x'", "bf16",
                       "supported: f32, f64");
  EXPECT_LONGCTX_ERROR(rmsnorm_fwd(ctx, out, rstd, x, w, {-1.0}), "'eps'", "must be > 0");
  EXPECT_LONGCTX_ERROR(rmsnorm_fwd(ctx, out, x.reshape({32}).narrow(0, 0, 4), x, w), "'rstd'",
                       "overlaps input 'x'");
  EXPECT_LONGCTX_ERROR(rmsnorm_fwd(ctx, out, rstd, Tensor(), w), "'x'", "required");
  Tensor on_cuda(reinterpret_cast<void*>(0x1000), DType::f32, Device::cuda(0), {4, 8});
  EXPECT_LONGCTX_ERROR(rmsnorm_fwd(ctx, out, rstd, on_cuda, w), "'x'", "is on cuda:0",
                       "expected cpu");
  Tensor dx = Tensor::empty({4, 8}, DType::f32), dw = Tensor::empty({8}, DType::f32);
  EXPECT_LONGCTX_ERROR(rmsnorm_bwd(ctx, dx, dw, Tensor::zeros({4, 9}, DType::f32), x, w, rstd),
                       "rmsnorm_bwd", "'dout'", "expected shape (4, 8)");
}

}  // namespace
}  // namespace longctx::test
