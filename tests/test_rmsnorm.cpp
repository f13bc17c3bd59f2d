// rmsnorm and add_rmsnorm (the residual add fused in): every case x backend against the
// reference; in place against separate memory; the references against finite differences; bad
// inputs.
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

// out written over x and dx over dout (the header allows both) give the same bits as separate
// memory.
TEST_P(RMSNorm, InPlaceMatchesSeparate) {
  const auto& [c, backend] = GetParam();
  LONGCTX_SKIP_IF_UNAVAILABLE(backend.device);
  Context& ctx = context_for(backend.device);
  const Device dev = backend.device;
  const DType dt = backend.dtype;
  Rng rng(109);
  const int64_t C = c.x_shape.back(), rows = Tensor::empty(c.x_shape, dt).numel() / C;
  const Ref x = rounded(random_ref(c.x_shape, rng, -2, 2), dt);
  const Ref dout = rounded(random_ref(c.x_shape, rng), dt);
  const Tensor w = from_ref(rounded(random_ref({C}, rng, 0.5, 1.5), dt), dt, dev);
  const Tensor x_t = from_ref(x, dt, dev);
  Tensor out = poisoned(c.x_shape, dt, dev, &ctx),
         rstd = poisoned({rows}, stat_dtype(dt), dev, &ctx);
  rmsnorm_fwd(ctx, out, rstd, x_t, w);
  Tensor over_x = from_ref(x, dt, dev), rstd_in = poisoned({rows}, stat_dtype(dt), dev, &ctx);
  rmsnorm_fwd(ctx, over_x, rstd_in, over_x, w);
  EXPECT_EQ(max_abs_diff(to_ref(over_x), to_ref(out)), 0.0) << "out over x";
  EXPECT_EQ(max_abs_diff(to_ref(rstd_in), to_ref(rstd)), 0.0) << "rstd with out over x";

  Tensor dx = poisoned(c.x_shape, dt, dev, &ctx), dw = poisoned({C}, dt, dev, &ctx);
  rmsnorm_bwd(ctx, dx, dw, from_ref(dout, dt, dev), x_t, w, rstd);
  Tensor over_dout = from_ref(dout, dt, dev), dw_in = poisoned({C}, dt, dev, &ctx);
  rmsnorm_bwd(ctx, over_dout, dw_in, over_dout, x_t, w, rstd);
  EXPECT_EQ(max_abs_diff(to_ref(over_dout), to_ref(dx)), 0.0) << "dx over dout";
  EXPECT_EQ(max_abs_diff(to_ref(dw_in), to_ref(dw)), 0.0) << "dweight with dx over dout";
}

// Rows far from 1 in scale: rmsnorm of (s x, s² eps) is (out, rstd / s, dx / s, dweight) of
// (x, eps) in exact arithmetic, so with s and eps powers of two the results, scaled back exactly,
// face the unscaled reference under the 2x rule. In f32: s = 2^66 overflows the squares (out and
// rstd were 0, dx and dweight wrong); s = 2^-66 makes them subnormal and rstd ~7e19, whose cube
// overflowed in the backward (dx inf), s² eps f32's smallest subnormal; s = 2^124 overflows the
// backward's Σ dy w x too, rstd ~4e-38 still normal. For f64, 2^±500. f16 holds none of them.
TEST_P(RMSNorm, ScaledRowsMatchTheUnscaledReference) {
  const auto& [c, backend] = GetParam();
  LONGCTX_SKIP_IF_UNAVAILABLE(backend.device);
  const DType dt = backend.dtype;
  if (dt == DType::f16) GTEST_SKIP() << "f16 cannot hold rows scaled by 2^66";
  Context& ctx = context_for(backend.device);
  const Device dev = backend.device;
  const DType rstd_dt = stat_dtype(dt);
  Rng rng(113);
  const int64_t C = c.x_shape.back(), rows = Tensor::empty(c.x_shape, dt).numel() / C;
  const Ref x = rounded(random_ref(c.x_shape, rng, -2, 2), dt);
  const Ref w = rounded(random_ref({C}, rng, 0.5, 1.5), dt);
  const Ref dout = rounded(random_ref(c.x_shape, rng), dt);
  const auto times = [](Ref r, double factor) {
    for (int64_t i = 0; i < r.numel(); ++i) r[i] *= factor;
    return r;
  };
  struct Scale {
    int s, eps;  // exponents of two
  };
  const std::vector<Scale> scales = dt == DType::f64
                                        ? std::vector<Scale>{{500, -17}, {-500, -17}}
                                        : std::vector<Scale>{{66, -17}, {-66, -17}, {124, -124}};
  for (const Scale& scale : scales) {
    SCOPED_TRACE("s = 2^" + std::to_string(scale.s) + ", eps = 2^" + std::to_string(scale.eps));
    const double s = std::ldexp(1.0, scale.s), eps = std::ldexp(1.0, scale.eps);
    Tensor out = poisoned(c.x_shape, dt, dev, &ctx), rstd = poisoned({rows}, rstd_dt, dev, &ctx);
    rmsnorm_fwd(ctx, out, rstd, from_ref(times(x, s), dt, dev), from_ref(w, dt, dev),
                {eps * s * s});
    Tensor dx = poisoned(c.x_shape, dt, dev, &ctx), dw = poisoned({C}, dt, dev, &ctx);
    rmsnorm_bwd(ctx, dx, dw, from_ref(dout, dt, dev), from_ref(times(x, s), dt, dev),
                from_ref(w, dt, dev), rstd, {eps * s * s});
    const Tensor rstd_back = from_ref(times(to_ref(rstd), s), rstd_dt);
    const Tensor dx_back = from_ref(times(to_ref(dx), s), dt);
    const auto exact = ref::rmsnorm_fwd<Oracle>(x, w, eps, no_round);
    const auto grads = ref::rmsnorm_bwd<Oracle>(dout, x, w, eps, no_round);
    with_naive_type(dt, [&](auto tag) {
      using S = typename decltype(tag)::type;
      const auto naive = ref::rmsnorm_fwd<S>(x, w, eps, rounding_for(dt));
      const auto naive_grads = ref::rmsnorm_bwd<S>(dout, x, w, eps, rounding_for(dt));
      expect_close_2x(out, exact.out, naive.out, dt, "out");
      expect_close_2x(rstd_back, exact.rstd, naive.rstd, rstd_dt, "rstd * s");
      expect_close_2x(dx_back, grads.dx, naive_grads.dx, dt, "dx * s");
      expect_close_2x(dw, grads.dweight, naive_grads.dweight, dt, "dweight");
    });
  }
}

// Rows far below eps: x of ~1e-30 (1e-170 in f64) with eps 1e-5, whose mean(x²) vanishes against
// eps: rstd = 1 / sqrt(eps) and dx ~ rstd dy w, against the reference (rescaling such a row by
// its own scale took eps out of range with it: rstd and dx were 0).
TEST_P(RMSNorm, RowsFarBelowEpsAreScaledByEps) {
  const auto& [c, backend] = GetParam();
  LONGCTX_SKIP_IF_UNAVAILABLE(backend.device);
  const DType dt = backend.dtype;
  if (dt == DType::f16) GTEST_SKIP() << "f16 cannot hold rows of 1e-30";
  Context& ctx = context_for(backend.device);
  const Device dev = backend.device;
  const DType rstd_dt = stat_dtype(dt);
  Rng rng(127);
  const int64_t C = c.x_shape.back(), rows = Tensor::empty(c.x_shape, dt).numel() / C;
  const double tiny = dt == DType::f64 ? 1e-170 : 1e-30, eps = 1e-5;
  const Ref x = rounded(random_ref(c.x_shape, rng, -tiny, tiny), dt);
  const Ref w = rounded(random_ref({C}, rng, 0.5, 1.5), dt);
  const Ref dout = rounded(random_ref(c.x_shape, rng), dt);
  Tensor out = poisoned(c.x_shape, dt, dev, &ctx), rstd = poisoned({rows}, rstd_dt, dev, &ctx);
  rmsnorm_fwd(ctx, out, rstd, from_ref(x, dt, dev), from_ref(w, dt, dev), {eps});
  Tensor dx = poisoned(c.x_shape, dt, dev, &ctx), dw = poisoned({C}, dt, dev, &ctx);
  rmsnorm_bwd(ctx, dx, dw, from_ref(dout, dt, dev), from_ref(x, dt, dev), from_ref(w, dt, dev),
              rstd, {eps});
  const auto exact = ref::rmsnorm_fwd<Oracle>(x, w, eps, no_round);
  const auto grads = ref::rmsnorm_bwd<Oracle>(dout, x, w, eps, no_round);
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    const auto naive = ref::rmsnorm_fwd<S>(x, w, eps, rounding_for(dt));
    const auto naive_grads = ref::rmsnorm_bwd<S>(dout, x, w, eps, rounding_for(dt));
    expect_close_2x(rstd, exact.rstd, naive.rstd, rstd_dt, "rstd");
    expect_close_2x(dx, grads.dx, naive_grads.dx, dt, "dx");
  });
}

INSTANTIATE_TEST_SUITE_P(Cases, RMSNorm,
                         testing::Combine(testing::ValuesIn(kCases),
                                          testing::ValuesIn(all_backends())),
                         case_name<RMSNormCase>);

class AddRMSNorm : public testing::TestWithParam<std::tuple<RMSNormCase, Backend>> {};

TEST_P(AddRMSNorm, MatchesReference) {
  const auto& [c, backend] = GetParam();
  LONGCTX_SKIP_IF_UNAVAILABLE(backend.device);
  Context& ctx = context_for(backend.device);
  const Device dev = backend.device;
  const DType dt = backend.dtype;
  const DType rstd_dt = stat_dtype(dt);
  Rng rng(103);
  const int64_t C = c.x_shape.back(), rows = Tensor::empty(c.x_shape, dt).numel() / C;
  const Ref x = rounded(random_ref(c.x_shape, rng, -2, 2), dt);
  const Ref res = rounded(random_ref(c.x_shape, rng, -2, 2), dt);
  const Ref w = rounded(random_ref({C}, rng, 0.5, 1.5), dt);
  const Ref dout = rounded(random_ref(c.x_shape, rng), dt);
  const Ref dh = rounded(random_ref(c.x_shape, rng), dt);
  const double eps = 1e-5;

  Tensor out = poisoned(c.x_shape, dt, dev, &ctx), h = poisoned(c.x_shape, dt, dev, &ctx);
  Tensor rstd = poisoned({rows}, rstd_dt, dev, &ctx);
  add_rmsnorm_fwd(ctx, out, h, rstd, from_ref(x, dt, dev), from_ref(res, dt, dev),
                  from_ref(w, dt, dev), {eps});
  const auto exact = ref::add_rmsnorm_fwd<Oracle>(x, res, w, eps, no_round);
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    const auto naive = ref::add_rmsnorm_fwd<S>(x, res, w, eps, rounding_for(dt));
    expect_close_2x(h, exact.h, naive.h, dt, "h");
    expect_close_2x(out, exact.out, naive.out, dt, "out");
    expect_close_2x(rstd, exact.rstd, naive.rstd, rstd_dt, "rstd");
  });

  // The backward at the h the op stored (the one a model saves), against dh + rmsnorm's dx.
  const Ref h_saved = to_ref(h);
  Tensor dx = poisoned(c.x_shape, dt, dev, &ctx), dw = poisoned({C}, dt, dev, &ctx);
  add_rmsnorm_bwd(ctx, dx, dw, from_ref(dout, dt, dev), from_ref(dh, dt, dev), h,
                  from_ref(w, dt, dev), rstd, {eps});
  const auto grads = ref::add_rmsnorm_bwd<Oracle>(dout, dh, h_saved, w, eps, no_round);
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    const auto naive = ref::add_rmsnorm_bwd<S>(dout, dh, h_saved, w, eps, rounding_for(dt));
    expect_close_2x(dx, grads.dx, naive.dx, dt, "dx");
    expect_close_2x(dw, grads.dweight, naive.dweight, dt, "dweight");
  });
}

// h written over x or over residual, and dx over dh, as the model calls them, give the same bits
// as separate memory.
TEST_P(AddRMSNorm, InPlaceMatchesSeparate) {
  const auto& [c, backend] = GetParam();
  LONGCTX_SKIP_IF_UNAVAILABLE(backend.device);
  Context& ctx = context_for(backend.device);
  const Device dev = backend.device;
  const DType dt = backend.dtype;
  Rng rng(107);
  const int64_t C = c.x_shape.back(), rows = Tensor::empty(c.x_shape, dt).numel() / C;
  const Ref x = rounded(random_ref(c.x_shape, rng, -2, 2), dt);
  const Ref res = rounded(random_ref(c.x_shape, rng, -2, 2), dt);
  const Ref dout = rounded(random_ref(c.x_shape, rng), dt),
            dh = rounded(random_ref(c.x_shape, rng), dt);
  const Tensor w = from_ref(rounded(random_ref({C}, rng, 0.5, 1.5), dt), dt, dev);
  const double eps = 1e-5;
  auto fwd = [&](const Tensor& h, const Tensor& xt, const Tensor& rt) {
    Tensor out = poisoned(c.x_shape, dt, dev, &ctx),
           rstd = poisoned({rows}, stat_dtype(dt), dev, &ctx);
    add_rmsnorm_fwd(ctx, out, h, rstd, xt, rt, w, {eps});
    return std::vector<Ref>{to_ref(h), to_ref(out), to_ref(rstd)};
  };
  Tensor h = poisoned(c.x_shape, dt, dev, &ctx);
  const std::vector<Ref> separate = fwd(h, from_ref(x, dt, dev), from_ref(res, dt, dev));
  Tensor x_in = from_ref(x, dt, dev), res_in = from_ref(res, dt, dev);
  const std::vector<Ref> over_x = fwd(x_in, x_in, from_ref(res, dt, dev));
  const std::vector<Ref> over_res = fwd(res_in, from_ref(x, dt, dev), res_in);
  for (size_t i = 0; i < separate.size(); ++i) {
    EXPECT_EQ(max_abs_diff(over_x[i], separate[i]), 0.0) << "h over x, output " << i;
    EXPECT_EQ(max_abs_diff(over_res[i], separate[i]), 0.0) << "h over residual, output " << i;
  }

  Tensor rstd = from_ref(separate[2], stat_dtype(dt), dev);
  Tensor dx = poisoned(c.x_shape, dt, dev, &ctx), dw = poisoned({C}, dt, dev, &ctx);
  add_rmsnorm_bwd(ctx, dx, dw, from_ref(dout, dt, dev), from_ref(dh, dt, dev), h, w, rstd, {eps});
  Tensor dh_in = from_ref(dh, dt, dev), dw_in = poisoned({C}, dt, dev, &ctx);
  add_rmsnorm_bwd(ctx, dh_in, dw_in, from_ref(dout, dt, dev), dh_in, h, w, rstd, {eps});
  EXPECT_EQ(max_abs_diff(to_ref(dh_in), to_ref(dx)), 0.0) << "dx over dh";
  EXPECT_EQ(max_abs_diff(to_ref(dw_in), to_ref(dw)), 0.0) << "dweight with dx over dh";
}

INSTANTIATE_TEST_SUITE_P(Cases, AddRMSNorm,
                         testing::Combine(testing::ValuesIn(kCases),
                                          testing::ValuesIn(all_backends())),
                         case_name<RMSNormCase>);

// The composition's backward: loss = <out, dout> + <h, dh>, whose gradient in x and in
// residual is dx.
TEST(AddRMSNormReference, GradientsMatchFiniteDifferences) {
  Rng rng(11);
  const Ref x = random_ref({3, 5}, rng), res = random_ref({3, 5}, rng), w = random_ref({5}, rng);
  const Ref dout = random_ref({3, 5}, rng), dh = random_ref({3, 5}, rng);
  const double eps = 1e-5;
  auto loss = [&](const std::vector<Ref>& in) {
    const auto f = ref::add_rmsnorm_fwd<double>(in[0], in[1], in[2], eps, no_round);
    return dot(f.out, dout) + dot(f.h, dh);
  };
  const Ref h = ref::add_rmsnorm_fwd<double>(x, res, w, eps, no_round).h;
  const auto g = ref::add_rmsnorm_bwd<double>(dout, dh, h, w, eps, no_round);
  EXPECT_LE(max_abs_diff(g.dx, finite_difference(loss, {x, res, w}, 0)), 1e-8);
  EXPECT_LE(max_abs_diff(g.dx, finite_difference(loss, {x, res, w}, 1)), 1e-8);
  EXPECT_LE(max_abs_diff(g.dweight, finite_difference(loss, {x, res, w}, 2)), 1e-8);
}

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
  // Positive, but 0 in the f32 arithmetic: the zero rows of x were NaN.
  EXPECT_LONGCTX_ERROR(rmsnorm_fwd(ctx, out, rstd, x, w, {1e-50}), "'eps'", "must be > 0", "as f32",
                       "got 1e-50");
  EXPECT_LONGCTX_ERROR(rmsnorm_fwd(ctx, out, x.reshape({32}).narrow(0, 0, 4), x, w), "'rstd'",
                       "overlaps input 'x'");
  // out may be x exactly, never partly over it; rstd is separate from weight too (each was
  // accepted, the result wrong by up to 1.8).
  Tensor big = Tensor::zeros({5, 8}, DType::f32);
  EXPECT_LONGCTX_ERROR(rmsnorm_fwd(ctx, big.narrow(0, 0, 4), rstd, big.narrow(0, 1, 4), w), "'out'",
                       "overlaps input 'x'");
  EXPECT_LONGCTX_ERROR(rmsnorm_fwd(ctx, out, w.narrow(0, 0, 4), x, w), "'rstd'",
                       "overlaps input 'weight'");
  EXPECT_LONGCTX_ERROR(rmsnorm_fwd(ctx, out, rstd, Tensor(), w), "'x'", "required");
  Tensor on_cuda(reinterpret_cast<void*>(0x1000), DType::f32, Device::cuda(0), {4, 8});
  EXPECT_LONGCTX_ERROR(rmsnorm_fwd(ctx, out, rstd, on_cuda, w), "'x'", "is on cuda:0",
                       "expected cpu");
  Tensor dx = Tensor::empty({4, 8}, DType::f32), dw = Tensor::empty({8}, DType::f32);
  EXPECT_LONGCTX_ERROR(rmsnorm_bwd(ctx, dx, dw, Tensor::zeros({4, 9}, DType::f32), x, w, rstd),
                       "rmsnorm_bwd", "'dout'", "expected shape (4, 8)");
  EXPECT_LONGCTX_ERROR(rmsnorm_bwd(ctx, big.narrow(0, 1, 4), dw, big.narrow(0, 0, 4), x, w, rstd),
                       "'dx'", "overlaps input 'dout'");
}

TEST(AddRMSNormBadInput, NamesTheArgument) {
  Context& ctx = context_for(Device::cpu());
  Tensor x = Tensor::zeros({4, 8}, DType::f32), res = Tensor::zeros({4, 8}, DType::f32);
  Tensor w = Tensor::zeros({8}, DType::f32), h = Tensor::empty({4, 8}, DType::f32);
  Tensor out = Tensor::empty({4, 8}, DType::f32), rstd = Tensor::empty({4}, DType::f32);
  EXPECT_LONGCTX_ERROR(add_rmsnorm_fwd(ctx, out, h, rstd, x, Tensor::zeros({4, 9}, DType::f32), w),
                       "add_rmsnorm_fwd", "'residual'", "expected shape (4, 8)", "got (4, 9)");
  EXPECT_LONGCTX_ERROR(add_rmsnorm_fwd(ctx, out, h, rstd, x, res.to_dtype(DType::f64), w),
                       "'residual'", "expected dtype f32", "got f64");
  EXPECT_LONGCTX_ERROR(
      add_rmsnorm_fwd(ctx, out, Tensor::empty({4, 7}, DType::f32), rstd, x, res, w), "'h'",
      "expected shape (4, 8)");
  EXPECT_LONGCTX_ERROR(add_rmsnorm_fwd(ctx, out, h, rstd, x, res, w, {0.0}), "'eps'",
                       "must be > 0");
  EXPECT_LONGCTX_ERROR(add_rmsnorm_fwd(ctx, out, h, rstd, x, Tensor(), w), "'residual'",
                       "required");
  // h may be x or residual exactly, never partly over them; out is always separate.
  Tensor big = Tensor::zeros({5, 8}, DType::f32);
  EXPECT_LONGCTX_ERROR(
      add_rmsnorm_fwd(ctx, out, big.narrow(0, 1, 4), rstd, big.narrow(0, 0, 4), res, w), "'h'",
      "overlaps input 'x'");
  EXPECT_LONGCTX_ERROR(add_rmsnorm_fwd(ctx, h, h, rstd, x, res, w), "'out'", "overlaps input 'h'");
  EXPECT_LONGCTX_ERROR(add_rmsnorm_fwd(ctx, x, h, rstd, x, res, w), "'out'", "overlaps input 'x'");
  EXPECT_LONGCTX_ERROR(add_rmsnorm_fwd(ctx, out, h, w.narrow(0, 0, 4), x, res, w), "'rstd'",
                       "overlaps input 'weight'");
  Tensor dx = Tensor::empty({4, 8}, DType::f32), dw = Tensor::empty({8}, DType::f32);
  Tensor dout = Tensor::zeros({4, 8}, DType::f32), dh = Tensor::zeros({4, 8}, DType::f32);
  EXPECT_LONGCTX_ERROR(
      add_rmsnorm_bwd(ctx, dx, dw, dout, Tensor::zeros({8, 4}, DType::f32), h, w, rstd),
      "add_rmsnorm_bwd", "'dh'", "expected shape (4, 8)");
  EXPECT_LONGCTX_ERROR(add_rmsnorm_bwd(ctx, dout, dw, dout, dh, h, w, rstd), "'dx'",
                       "overlaps input 'dout'");
  EXPECT_LONGCTX_ERROR(add_rmsnorm_bwd(ctx, dx, dw, dout, dh, x.to_dtype(DType::bf16), w, rstd),
                       "'h'", "bf16", "supported: f32, f64");
}

}  // namespace
}  // namespace longctx::test
