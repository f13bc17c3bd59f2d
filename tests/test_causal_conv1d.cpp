// causal_conv1d: every case x backend against the reference (forward, backward); a sequence of
// decode steps equals the full convolution; the reference against finite differences; bad inputs.
#include "harness.h"
#include "longctx/ops/causal_conv1d.h"
#include "reference/causal_conv1d.h"

namespace longctx::test {
namespace {

struct CausalConv1dCase {
  std::string name;
  int64_t B, D, T, W;
  bool bias;
  Activation act;
};
LONGCTX_PRINTS_AS_NAME(CausalConv1dCase)

// mamba-130m: d_inner 1536, d_conv 4, silu; mamba2 conv over x|B|C; Hawk/Griffin: width 4, no
// activation. Widths scaled down; lengths not multiples of anything.
const std::vector<CausalConv1dCase> kCases = {
    {"mamba_130m_d_inner_over_16", 2, 96, 67, 4, true, Activation::silu},
    {"mamba2_xbc_scaled", 1, 160, 129, 4, true, Activation::silu},
    {"hawk_conv_no_bias", 2, 64, 33, 4, false, Activation::none},
    {"width_3", 1, 7, 20, 3, true, Activation::silu},
    {"width_2_no_bias", 3, 5, 11, 2, false, Activation::silu},
    {"width_1", 2, 9, 10, 1, true, Activation::none},
    {"shorter_than_width", 2, 8, 2, 4, true, Activation::silu},
};

class CausalConv1d : public testing::TestWithParam<std::tuple<CausalConv1dCase, Backend>> {};

TEST_P(CausalConv1d, MatchesReference) {
  const auto& [c, backend] = GetParam();
  LONGCTX_SKIP_IF_UNAVAILABLE(backend.device);
  Context& ctx = context_for(backend.device);
  const Device dev = backend.device;
  const DType dt = backend.dtype;
  const bool silu = c.act == Activation::silu;
  Rng rng(303);
  const Ref x = rounded(random_ref({c.B, c.D, c.T}, rng, -2, 2), dt);
  const Ref w = rounded(random_ref({c.D, c.W}, rng), dt);
  const Ref bias = c.bias ? rounded(random_ref({c.D}, rng), dt) : Ref();
  const Ref dout = rounded(random_ref({c.B, c.D, c.T}, rng), dt);
  const Tensor x_t = from_ref(x, dt, dev), w_t = from_ref(w, dt, dev);
  const Tensor bias_t = c.bias ? from_ref(bias, dt, dev) : Tensor();

  Tensor out = poisoned(x.shape, dt, dev, &ctx);
  causal_conv1d_fwd(ctx, out, x_t, w_t, bias_t, {c.act});
  const Ref exact = ref::causal_conv1d_fwd<Oracle>(x, w, bias, silu, no_round);
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    expect_close_2x(out, exact, ref::causal_conv1d_fwd<S>(x, w, bias, silu, rounding_for(dt)), dt,
                    "out");
  });

  Tensor dx = poisoned(x.shape, dt, dev, &ctx), dw = poisoned(w.shape, dt, dev, &ctx);
  Tensor dbias = c.bias ? poisoned({c.D}, dt, dev, &ctx) : Tensor();
  causal_conv1d_bwd(ctx, dx, dw, dbias, from_ref(dout, dt, dev), x_t, w_t, bias_t, {c.act});
  const auto g = ref::causal_conv1d_bwd<Oracle>(dout, x, w, bias, silu, no_round);
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    const auto naive = ref::causal_conv1d_bwd<S>(dout, x, w, bias, silu, rounding_for(dt));
    expect_close_2x(dx, g.dx, naive.dx, dt, "dx");
    expect_close_2x(dw, g.dweight, naive.dweight, dt, "dweight");
    if (c.bias) expect_close_2x(dbias, g.dbias, naive.dbias, dt, "dbias");
  });

  // Decode: T update steps from a zero state reproduce every column of the full forward.
  Tensor state = Tensor::zeros({c.B, c.D, c.W - 1}, dt, dev, &ctx);
  Ref stepped(x.shape);
  for (int64_t t = 0; t < c.T; ++t) {
    Ref xt({c.B, c.D});
    for (int64_t r = 0; r < c.B * c.D; ++r) xt[r] = x[r * c.T + t];
    Tensor yt = poisoned({c.B, c.D}, dt, dev, &ctx);
    causal_conv1d_update(ctx, yt, state, from_ref(xt, dt, dev), w_t, bias_t, {c.act});
    const Ref y = to_ref(yt);
    for (int64_t r = 0; r < c.B * c.D; ++r) stepped[r * c.T + t] = y[r];
  }
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    expect_close_2x(from_ref(stepped, DType::f64), exact,
                    ref::causal_conv1d_fwd<S>(x, w, bias, silu, rounding_for(dt)), dt,
                    "decode steps");
  });
  // The state holds the last W - 1 inputs, oldest first (zeros where T < W - 1).
  const Ref st = to_ref(state);
  for (int64_t r = 0; r < c.B * c.D; ++r)
    for (int64_t k = 0; k < c.W - 1; ++k) {
      const int64_t t = c.T - (c.W - 1) + k;
      EXPECT_EQ(st[r * (c.W - 1) + k], t >= 0 ? x[r * c.T + t] : 0.0) << "conv_state " << r;
    }
}

INSTANTIATE_TEST_SUITE_P(Cases, CausalConv1d,
                         testing::Combine(testing::ValuesIn(kCases),
                                          testing::ValuesIn(all_backends())),
                         case_name<CausalConv1dCase>);

TEST(CausalConv1dReference, GradientsMatchFiniteDifferences) {
  Rng rng(11);
  const Ref x = random_ref({2, 3, 7}, rng), w = random_ref({3, 4}, rng),
            bias = random_ref({3}, rng);
  const Ref dout = random_ref({2, 3, 7}, rng);
  for (const bool silu : {false, true}) {
    auto loss = [&](const std::vector<Ref>& in) {
      return dot(ref::causal_conv1d_fwd<double>(in[0], in[1], in[2], silu, no_round), dout);
    };
    const auto g = ref::causal_conv1d_bwd<double>(dout, x, w, bias, silu, no_round);
    EXPECT_LE(max_abs_diff(g.dx, finite_difference(loss, {x, w, bias}, 0)), 1e-8);
    EXPECT_LE(max_abs_diff(g.dweight, finite_difference(loss, {x, w, bias}, 1)), 1e-8);
    EXPECT_LE(max_abs_diff(g.dbias, finite_difference(loss, {x, w, bias}, 2)), 1e-8);
  }
}

TEST(CausalConv1dBadInput, NamesTheArgument) {
  Context& ctx = context_for(Device::cpu());
  const DType f32 = DType::f32;
  Tensor x = Tensor::zeros({2, 8, 5}, f32), w = Tensor::zeros({8, 4}, f32);
  Tensor bias = Tensor::zeros({8}, f32), out = Tensor::empty({2, 8, 5}, f32);
  EXPECT_LONGCTX_ERROR(causal_conv1d_fwd(ctx, out, x, Tensor::zeros({8, 5}, f32)),
                       "causal_conv1d_fwd", "'weight'", "1 <= W <= 4", "got W = 5");
  EXPECT_LONGCTX_ERROR(causal_conv1d_fwd(ctx, out, x, Tensor::zeros({7, 4}, f32)), "'weight'",
                       "expected shape (8, 4)");
  EXPECT_LONGCTX_ERROR(causal_conv1d_fwd(ctx, out, x, w, Tensor::zeros({8}, DType::f64)), "'bias'",
                       "expected dtype f32");
  EXPECT_LONGCTX_ERROR(causal_conv1d_fwd(ctx, x, x, w), "'out'", "overlaps input 'x'");
  Tensor dx = Tensor::empty({2, 8, 5}, f32), dw = Tensor::empty({8, 4}, f32);
  EXPECT_LONGCTX_ERROR(causal_conv1d_bwd(ctx, dx, dw, Tensor(), out, x, w, bias),
                       "causal_conv1d_bwd", "'dbias'", "required because 'bias' was given");
  Tensor state = Tensor::zeros({2, 8, 3}, f32), xt = Tensor::zeros({2, 8}, f32);
  Tensor yt = Tensor::empty({2, 8}, f32);
  EXPECT_LONGCTX_ERROR(causal_conv1d_update(ctx, yt, Tensor::zeros({2, 8, 4}, f32), xt, w),
                       "causal_conv1d_update", "'conv_state'", "expected shape (2, 8, 3)");
  EXPECT_LONGCTX_ERROR(causal_conv1d_update(ctx, yt, state, x, w), "'x'", "must have 2 dimensions");
}

}  // namespace
}  // namespace longctx::test
