// rglru_gate: every case x backend against the reference (forward and backward), the reference
// against finite differences, bad inputs.
#include "harness.h"
#include "longctx/ops/rglru_gate.h"
#include "reference/rglru_gate.h"

namespace longctx::test {
namespace {

struct RGLRUGateCase {
  std::string name;
  Shape shape;
  double gate_lo, gate_hi;  // the range of the gate pre-activations
};
LONGCTX_PRINTS_AS_NAME(RGLRUGateCase)

const std::vector<RGLRUGateCase> kCases = {
    {"hawk_tiny", {2, 9, 64}, -3, 3},
    {"odd_width", {37, 130}, -2, 2},
    // Gates near 0: a -> 1 and sqrt(1 - a^2) -> 0, where the expm1 form keeps its precision.
    {"decays_near_one", {4, 48}, -14, -9},
    // Rows past one chunk of the CUDA backward's dlambda sum (64 rows; 256 chunks at most): 129
    // chunks, the last partial, and a partial channel tile; then 254 chunks of 79 rows.
    {"griffin_rows_in_chunks", {2, 4100, 40}, -3, 3},
    {"hawk_long_sequence", {1, 20000, 24}, -3, 3},
};

class RGLRUGate : public testing::TestWithParam<std::tuple<RGLRUGateCase, Backend>> {};

TEST_P(RGLRUGate, MatchesReference) {
  const auto& [c, backend] = GetParam();
  LONGCTX_SKIP_IF_UNAVAILABLE(backend.device);
  Context& ctx = context_for(backend.device);
  const Device dev = backend.device;
  const DType dt = backend.dtype;
  ASSERT_EQ(rglru_gate_supports(dev, dt), "");
  const int64_t D = c.shape.back();
  Rng rng(5);
  const Ref x = rounded(random_ref(c.shape, rng, -2, 2), dt);
  const Ref ga = rounded(random_ref(c.shape, rng, c.gate_lo, c.gate_hi), dt);
  const Ref gx = rounded(random_ref(c.shape, rng, -3, 3), dt);
  const Ref lambda = rounded(random_ref({D}, rng, -4, 1), dt);
  const Ref da = rounded(random_ref(c.shape, rng), dt), db = rounded(random_ref(c.shape, rng), dt);

  Tensor a = poisoned(c.shape, dt, dev, &ctx), b = poisoned(c.shape, dt, dev, &ctx);
  rglru_gate_fwd(ctx, a, b, from_ref(x, dt, dev), from_ref(ga, dt, dev), from_ref(gx, dt, dev),
                 from_ref(lambda, dt, dev));
  const auto exact = ref::rglru_gate_fwd<Oracle>(x, ga, gx, lambda, no_round);
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    const auto naive = ref::rglru_gate_fwd<S>(x, ga, gx, lambda, rounding_for(dt));
    expect_close_2x(a, exact.a, naive.a, dt, "a");
    expect_close_2x(b, exact.b, naive.b, dt, "b");
  });

  Tensor dx = poisoned(c.shape, dt, dev, &ctx), dga = poisoned(c.shape, dt, dev, &ctx);
  Tensor dgx = poisoned(c.shape, dt, dev, &ctx), dl = poisoned({D}, dt, dev, &ctx);
  rglru_gate_bwd(ctx, dx, dga, dgx, dl, from_ref(da, dt, dev), from_ref(db, dt, dev),
                 from_ref(x, dt, dev), from_ref(ga, dt, dev), from_ref(gx, dt, dev),
                 from_ref(lambda, dt, dev));
  const auto grads = ref::rglru_gate_bwd<Oracle>(da, db, x, ga, gx, lambda, no_round);
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    const auto naive = ref::rglru_gate_bwd<S>(da, db, x, ga, gx, lambda, rounding_for(dt));
    expect_close_2x(dx, grads.dx, naive.dx, dt, "dx");
    expect_close_2x(dga, grads.dgate_a, naive.dgate_a, dt, "dgate_a");
    expect_close_2x(dgx, grads.dgate_x, naive.dgate_x, dt, "dgate_x");
    expect_close_2x(dl, grads.dlambda, naive.dlambda, dt, "dlambda");
  });
  // Twice more, on the CPU on three threads and on one: the sum's order does not depend on it.
  Context three_threads(Device::cpu(), 3), one_thread(Device::cpu(), 1);
  for (Context* again : {&three_threads, &one_thread}) {
    Context& ctx2 = dev.is_cpu() ? *again : ctx;
    Tensor dl2 = poisoned({D}, dt, dev, &ctx2);
    rglru_gate_bwd(ctx2, poisoned(c.shape, dt, dev, &ctx2), poisoned(c.shape, dt, dev, &ctx2),
                   poisoned(c.shape, dt, dev, &ctx2), dl2, from_ref(da, dt, dev),
                   from_ref(db, dt, dev), from_ref(x, dt, dev), from_ref(ga, dt, dev),
                   from_ref(gx, dt, dev), from_ref(lambda, dt, dev));
    expect_equal(dl2, dl, "dlambda, again (deterministic)");
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, RGLRUGate,
                         testing::Combine(testing::ValuesIn(kCases),
                                          testing::ValuesIn(all_backends())),
                         case_name<RGLRUGateCase>);

TEST(RGLRUGateReference, GradientsMatchFiniteDifferences) {
  Rng rng(8);
  const Ref x = random_ref({3, 4}, rng), ga = random_ref({3, 4}, rng, -2, 2);
  const Ref gx = random_ref({3, 4}, rng), lambda = random_ref({4}, rng, -2, 1);
  const Ref da = random_ref({3, 4}, rng), db = random_ref({3, 4}, rng);
  auto loss = [&](const std::vector<Ref>& in) {
    const auto o = ref::rglru_gate_fwd<double>(in[0], in[1], in[2], in[3], no_round);
    return dot(o.a, da) + dot(o.b, db);
  };
  const auto g = ref::rglru_gate_bwd<double>(da, db, x, ga, gx, lambda, no_round);
  const std::vector<Ref> in = {x, ga, gx, lambda};
  EXPECT_LE(max_abs_diff(g.dx, finite_difference(loss, in, 0)), 1e-8);
  EXPECT_LE(max_abs_diff(g.dgate_a, finite_difference(loss, in, 1)), 1e-8);
  EXPECT_LE(max_abs_diff(g.dgate_x, finite_difference(loss, in, 2)), 1e-8);
  EXPECT_LE(max_abs_diff(g.dlambda, finite_difference(loss, in, 3)), 1e-8);
}

TEST(RGLRUGateBadInput, NamesTheArgument) {
  Context& ctx = context_for(Device::cpu());
  const Tensor x = Tensor::zeros({4, 8}, DType::f32), l = Tensor::zeros({8}, DType::f32);
  Tensor a = Tensor::zeros({4, 8}, DType::f32), b = Tensor::zeros({4, 8}, DType::f32);
  EXPECT_LONGCTX_ERROR(rglru_gate_fwd(ctx, a, b, x, x, Tensor::zeros({4, 7}, DType::f32), l),
                       "rglru_gate_fwd", "gate_x");
  EXPECT_LONGCTX_ERROR(rglru_gate_fwd(ctx, a, b, x, x, x, Tensor::zeros({7}, DType::f32)),
                       "rglru_gate_fwd", "lambda");
  EXPECT_LONGCTX_ERROR(rglru_gate_fwd(ctx, a, a, x, x, x, l), "rglru_gate_fwd", "overlap");
  // An output over x itself: a was written into x, then b computed from it (wrong by 0.7).
  const Tensor ga = Tensor::zeros({4, 8}, DType::f32), gx = Tensor::zeros({4, 8}, DType::f32);
  EXPECT_LONGCTX_ERROR(rglru_gate_fwd(ctx, x, b, x, ga, gx, l), "'a' overlaps input 'x'");
  EXPECT_LONGCTX_ERROR(rglru_gate_fwd(ctx, a, x, x, ga, gx, l), "'b' overlaps input 'x'");
  const Tensor dx = Tensor::zeros({4, 8}, DType::f32), dgx = Tensor::zeros({4, 8}, DType::f32);
  EXPECT_LONGCTX_ERROR(
      rglru_gate_bwd(ctx, dx, x, dgx, Tensor::zeros({8}, DType::f32), a, b, x, ga, gx, l),
      "rglru_gate_bwd", "'dgate_a' overlaps input 'x'");
  EXPECT_LONGCTX_ERROR(rglru_gate_fwd(ctx, a, b, x.to_dtype(DType::f64), x, x, l),
                       "rglru_gate_fwd");
}

TEST(RGLRUGateSupports, NamesTheBackendsDtypes) {
  EXPECT_EQ(rglru_gate_supports(Device::cpu(), DType::f64), "");
  EXPECT_EQ(rglru_gate_supports(Device::cuda(0), DType::bf16), "");
  const std::string why = rglru_gate_supports(Device::cpu(), DType::f16);
  EXPECT_NE(why.find("rglru_gate on the CPU backend supports dtypes f32, f64, got f16"),
            std::string::npos)
      << why;
  EXPECT_NE(rglru_gate_supports(Device::cuda(0), DType::f64).find("f32, bf16, f16"),
            std::string::npos);
}

}  // namespace
}  // namespace longctx::test
