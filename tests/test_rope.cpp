// rope: every case x backend against the reference, forward, backward and in place; the
// reference's backward against finite differences; bad inputs.
#include "harness.h"
#include "longctx/ops/rope.h"
#include "reference/rope.h"

namespace longctx::test {
namespace {

enum class Positions { none, decode_offset, random_long };

struct RopeCase {
  std::string name;
  Shape x_shape;  // (B, T, H, D)
  Positions positions;
  double theta;
};
LONGCTX_PRINTS_AS_NAME(RopeCase)

const std::vector<RopeCase> kCases = {
    {"llama_tiny", {2, 7, 4, 16}, Positions::none, 10000.0},
    {"gqa_kv_decode_at_1000", {2, 3, 2, 64}, Positions::decode_offset, 10000.0},
    {"llama3_long_positions", {1, 6, 2, 128}, Positions::random_long, 500000.0},
    {"head_dim_2", {3, 5, 3, 2}, Positions::none, 10000.0},
    // T past several of the f32 table's runs of 64 rows (src/cpu/rope.cpp), the last one short.
    {"long_T_table_runs", {2, 200, 1, 16}, Positions::none, 10000.0},
};

std::vector<int64_t> make_positions(const RopeCase& c, Rng& rng) {
  const int64_t B = c.x_shape[0], T = c.x_shape[1];
  std::vector<int64_t> pos;
  if (c.positions == Positions::none) return pos;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      pos.push_back(c.positions == Positions::decode_offset ? 1000 + 17 * b + t
                                                            : rng.integer(0, 131071));
  return pos;
}

class Rope : public testing::TestWithParam<std::tuple<RopeCase, Backend>> {};

TEST_P(Rope, MatchesReference) {
  const auto& [c, backend] = GetParam();
  LONGCTX_SKIP_IF_UNAVAILABLE(backend.device);
  Context& ctx = context_for(backend.device);
  const Device dev = backend.device;
  const DType dt = backend.dtype;
  Rng rng(303);
  const Ref x = rounded(random_ref(c.x_shape, rng, -2, 2), dt);
  const Ref dout = rounded(random_ref(c.x_shape, rng), dt);
  const std::vector<int64_t> pos = make_positions(c, rng);
  const Tensor pos_t = pos.empty() ? Tensor()
                                   : int_tensor(std::vector<int32_t>(pos.begin(), pos.end()),
                                                {c.x_shape[0], c.x_shape[1]}, dev);
  const RopeParams params{c.theta};

  Tensor out = poisoned(c.x_shape, dt, dev, &ctx);
  const Tensor xt = from_ref(x, dt, dev);
  rope_fwd(ctx, out, xt, pos_t, params);
  Tensor dx = poisoned(c.x_shape, dt, dev, &ctx);
  const Tensor doutt = from_ref(dout, dt, dev);
  rope_bwd(ctx, dx, doutt, pos_t, params);
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    expect_close_2x(out, ref::rope<Oracle>(x, pos, c.theta, 1, no_round),
                    ref::rope<S>(x, pos, c.theta, 1, rounding_for(dt)), dt, "out");
    expect_close_2x(dx, ref::rope<Oracle>(dout, pos, c.theta, -1, no_round),
                    ref::rope<S>(dout, pos, c.theta, -1, rounding_for(dt)), dt, "dx");
  });

  // In place gives the same bits.
  rope_fwd(ctx, xt, xt, pos_t, params);
  expect_equal(xt, out, "out, in place");
  rope_bwd(ctx, doutt, doutt, pos_t, params);
  expect_equal(doutt, dx, "dx, in place");
}

INSTANTIATE_TEST_SUITE_P(Cases, Rope,
                         testing::Combine(testing::ValuesIn(kCases),
                                          testing::ValuesIn(all_backends())),
                         case_name<RopeCase>);

// A decode step's calls share one position, theta and D, and the CPU keeps the last ones' angles
// per thread (src/cpu/rope.cpp): calls that change only theta, only D, or only the position, in
// turn on one context, each against the reference.
TEST(Rope, CallsChangingThetaHeadDimOrPositionInTurn) {
  Context& ctx = context_for(Device::cpu());
  const DType dt = DType::f32;
  struct Call {
    double theta;
    int64_t D;
    int32_t position;
  };
  const std::vector<Call> calls = {{1e4, 64, 300}, {5e5, 64, 300}, {1e4, 64, 300},
                                   {1e4, 32, 300}, {1e4, 64, 300}, {1e4, 64, 301},
                                   {5e5, 32, 301}, {5e5, 32, 301}, {1e4, 64, 300}};
  Rng rng(77);
  for (const Call& c : calls) {
    SCOPED_TRACE(testing::Message()
                 << "theta " << c.theta << " D " << c.D << " position " << c.position);
    const Shape shape{2, 1, 3, c.D};
    const Ref x = random_ref(shape, rng, -2, 2);
    const std::vector<int64_t> pos = {c.position, c.position};
    const Tensor pos_t = int_tensor({c.position, c.position}, {2, 1}, Device::cpu());
    Tensor out = poisoned(shape, dt, Device::cpu(), &ctx),
           dx = poisoned(shape, dt, Device::cpu(), &ctx);
    const Tensor xt = from_ref(x, dt);
    rope_fwd(ctx, out, xt, pos_t, RopeParams{c.theta});
    rope_bwd(ctx, dx, xt, pos_t, RopeParams{c.theta});
    expect_close_2x(out, ref::rope<Oracle>(x, pos, c.theta, 1, no_round),
                    ref::rope<float>(x, pos, c.theta, 1, rounding_for(dt)), dt, "out");
    expect_close_2x(dx, ref::rope<Oracle>(x, pos, c.theta, -1, no_round),
                    ref::rope<float>(x, pos, c.theta, -1, rounding_for(dt)), dt, "dx");
  }
}

TEST(RopeReference, BackwardMatchesFiniteDifferences) {
  Rng rng(9);
  const Ref x = random_ref({2, 3, 2, 6}, rng), dout = random_ref({2, 3, 2, 6}, rng);
  const std::vector<int64_t> pos = {5, 0, 9, 3, 70000, 2};
  auto loss = [&](const std::vector<Ref>& in) {
    return dot(ref::rope<double>(in[0], pos, 10000.0, 1, no_round), dout);
  };
  const Ref dx = ref::rope<double>(dout, pos, 10000.0, -1, no_round);
  EXPECT_LE(max_abs_diff(dx, finite_difference(loss, {x}, 0)), 1e-8);
}

TEST(RopeReference, PositionZeroIsIdentityAndDefaultIsT) {
  Rng rng(10);
  const Ref x = random_ref({1, 4, 1, 8}, rng);
  const Ref by_default = ref::rope<double>(x, {}, 10000.0, 1, no_round);
  const Ref explicit_t = ref::rope<double>(x, {0, 1, 2, 3}, 10000.0, 1, no_round);
  EXPECT_EQ(max_abs_diff(by_default, explicit_t), 0.0);
  for (int64_t i = 0; i < 8; ++i) EXPECT_EQ(by_default[i], x[i]);  // t = 0: no rotation
  // Pair (0, 4) at t = 1 rotates by exactly 1 radian (theta^0 = 1).
  EXPECT_NEAR(by_default[8], x[8] * std::cos(1.0) - x[12] * std::sin(1.0), 1e-15);
}

TEST(RopeBadInput, NamesTheArgument) {
  Context& ctx = context_for(Device::cpu());
  Tensor x = Tensor::zeros({2, 3, 4, 8}, DType::f32), out = Tensor::empty({2, 3, 4, 8}, DType::f32);
  EXPECT_LONGCTX_ERROR(rope_fwd(ctx, Tensor::empty({2, 3, 4, 7}, DType::f32),
                                Tensor::zeros({2, 3, 4, 7}, DType::f32)),
                       "rope_fwd", "'x'", "even head dimension", "(2, 3, 4, 7)");
  EXPECT_LONGCTX_ERROR(rope_fwd(ctx, out, Tensor::zeros({6, 4, 8}, DType::f32)), "'x'",
                       "must have 4 dimensions");
  EXPECT_LONGCTX_ERROR(rope_fwd(ctx, out, x, int_tensor({0, 1, 2}, {1, 3})), "'positions'",
                       "expected shape (2, 3)", "got (1, 3)");
  EXPECT_LONGCTX_ERROR(rope_fwd(ctx, out, x, Tensor::zeros({2, 3}, DType::f32)), "'positions'",
                       "expected dtype i32", "got f32");
  EXPECT_LONGCTX_ERROR(rope_fwd(ctx, out, x, {}, {0.0}), "'theta'", "must be a finite number > 0");
  EXPECT_LONGCTX_ERROR(rope_fwd(ctx, Tensor::empty({2, 3, 4, 8}, DType::f64), x), "'out'",
                       "expected dtype f32");
  Tensor big = Tensor::zeros({2 * 3 * 4 * 8 + 8}, DType::f32);
  EXPECT_LONGCTX_ERROR(rope_fwd(ctx, big.narrow(0, 8, 192).reshape({2, 3, 4, 8}),
                                big.narrow(0, 0, 192).reshape({2, 3, 4, 8})),
                       "'out'", "overlaps input 'x'");
  EXPECT_LONGCTX_ERROR(rope_bwd(ctx, Tensor::empty({2, 3, 4, 6}, DType::f32), x), "rope_bwd",
                       "'dx'", "expected shape (2, 3, 4, 8)");
}

}  // namespace
}  // namespace longctx::test
