// swiglu: every case x backend against the reference, also in place; the reference against
// finite differences; bad inputs.
#include "harness.h"
#include "longctx/ops/swiglu.h"
#include "reference/swiglu.h"

namespace longctx::test {
namespace {

struct SwiGLUCase {
  std::string name;
  Shape shape;
  double gate_range;  // gate drawn from [-gate_range, gate_range]
};
LONGCTX_PRINTS_AS_NAME(SwiGLUCase)

const std::vector<SwiGLUCase> kCases = {
    {"llama_tiny_mlp", {2, 7, 172}, 4.0},
    {"flat_odd", {4099}, 6.0},
    {"saturated_gates", {3, 65}, 90.0},  // exp(90) overflows f32: must give 0 and g, never NaN
    {"empty", {0, 8}, 1.0},
};

class SwiGLU : public testing::TestWithParam<std::tuple<SwiGLUCase, Backend>> {};

TEST_P(SwiGLU, MatchesReference) {
  const auto& [c, backend] = GetParam();
  LONGCTX_SKIP_IF_UNAVAILABLE(backend.device);
  Context& ctx = context_for(backend.device);
  const Device dev = backend.device;
  const DType dt = backend.dtype;
  Rng rng(404);
  const Ref gate = rounded(random_ref(c.shape, rng, -c.gate_range, c.gate_range), dt);
  const Ref up = rounded(random_ref(c.shape, rng, -2, 2), dt);
  const Ref dout = rounded(random_ref(c.shape, rng), dt);
  const Tensor gt = from_ref(gate, dt, dev), ut = from_ref(up, dt, dev);
  const Tensor doutt = from_ref(dout, dt, dev);

  Tensor out = poisoned(c.shape, dt, dev, &ctx);
  swiglu_fwd(ctx, out, gt, ut);
  Tensor dg = poisoned(c.shape, dt, dev, &ctx), du = poisoned(c.shape, dt, dev, &ctx);
  swiglu_bwd(ctx, dg, du, doutt, gt, ut);
  const auto grads = ref::swiglu_bwd<Oracle>(dout, gate, up, no_round);
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    expect_close_2x(out, ref::swiglu_fwd<Oracle>(gate, up, no_round),
                    ref::swiglu_fwd<S>(gate, up, rounding_for(dt)), dt, "out");
    const auto naive = ref::swiglu_bwd<S>(dout, gate, up, rounding_for(dt));
    expect_close_2x(dg, grads.dgate, naive.dgate, dt, "dgate");
    expect_close_2x(du, grads.dup, naive.dup, dt, "dup");
  });

  // In place: out over up; dgate over gate and dup over up.
  Tensor up_copy = from_ref(up, dt, dev);
  swiglu_fwd(ctx, up_copy, gt, up_copy);
  expect_equal(up_copy, out, "out, in place over up");
  Tensor g_copy = from_ref(gate, dt, dev);
  up_copy = from_ref(up, dt, dev);
  swiglu_bwd(ctx, g_copy, up_copy, doutt, g_copy, up_copy);
  expect_equal(g_copy, dg, "dgate, in place over gate");
  expect_equal(up_copy, du, "dup, in place over up");
}

INSTANTIATE_TEST_SUITE_P(Cases, SwiGLU,
                         testing::Combine(testing::ValuesIn(kCases),
                                          testing::ValuesIn(all_backends())),
                         case_name<SwiGLUCase>);

TEST(SwiGLUReference, GradientsMatchFiniteDifferences) {
  Rng rng(11);
  const Ref gate = random_ref({3, 7}, rng, -4, 4), up = random_ref({3, 7}, rng);
  const Ref dout = random_ref({3, 7}, rng);
  auto loss = [&](const std::vector<Ref>& in) {
    return dot(ref::swiglu_fwd<double>(in[0], in[1], no_round), dout);
  };
  const auto g = ref::swiglu_bwd<double>(dout, gate, up, no_round);
  EXPECT_LE(max_abs_diff(g.dgate, finite_difference(loss, {gate, up}, 0)), 1e-8);
  EXPECT_LE(max_abs_diff(g.dup, finite_difference(loss, {gate, up}, 1)), 1e-8);
}

TEST(SwiGLUBadInput, NamesTheArgument) {
  Context& ctx = context_for(Device::cpu());
  Tensor g = Tensor::zeros({4, 8}, DType::f32), u = Tensor::zeros({4, 8}, DType::f32);
  Tensor out = Tensor::empty({4, 8}, DType::f32);
  EXPECT_LONGCTX_ERROR(swiglu_fwd(ctx, out, g, Tensor::zeros({4, 9}, DType::f32)), "swiglu_fwd",
                       "'up'", "expected shape (4, 8)", "got (4, 9)");
  EXPECT_LONGCTX_ERROR(swiglu_fwd(ctx, out, g, u.to_dtype(DType::f64)), "'up'",
                       "expected dtype f32");
  EXPECT_LONGCTX_ERROR(swiglu_fwd(ctx, out, g.to_dtype(DType::f16), u), "'gate'", "f16",
                       "supported: f32, f64");
  Tensor big = Tensor::zeros({40}, DType::f32);
  EXPECT_LONGCTX_ERROR(swiglu_fwd(ctx, big.narrow(0, 4, 32).reshape({4, 8}),
                                  big.narrow(0, 0, 32).reshape({4, 8}), u),
                       "'out'", "overlaps input 'gate'");
  Tensor dout = Tensor::zeros({4, 8}, DType::f32), dg = Tensor::empty({4, 8}, DType::f32);
  EXPECT_LONGCTX_ERROR(swiglu_bwd(ctx, dg, dg, dout, g, u), "swiglu_bwd", "'dgate'",
                       "overlaps input 'dup'");
  EXPECT_LONGCTX_ERROR(swiglu_bwd(ctx, dg, Tensor(), dout, g, u), "'dup'", "required");
}

}  // namespace
}  // namespace longctx::test
