// gdn_gate (the delta rule layers' decay) and the sigmoid ops (beta, the output gates): every case
// x backend against the reference, forward and backward; the references against finite
// differences; bad inputs.
#include "harness.h"
#include "longctx/ops/elementwise.h"
#include "longctx/ops/gdn_gate.h"
#include "reference/gdn_gate.h"

namespace longctx::test {
namespace {

struct GdnGateCase {
  std::string name;
  Shape shape;     // of a: (..., D)
  int64_t HV;      // heads; D / HV channels share an A_log
  double a_range;  // a drawn from [-a_range, a_range]
};
LONGCTX_PRINTS_AS_NAME(GdnGateCase)

const std::vector<GdnGateCase> kCases = {
    {"qwen3next_gdn_tiny", {2, 9, 8}, 8, 4},  // one decay per head
    {"kimi_kda_tiny", {2, 7, 4 * 16}, 4, 4},  // one per key channel
    {"saturated_softplus", {3, 40}, 5, 60},   // past the softplus threshold
    // Rows past one chunk of the CUDA backward's sums (64 rows; 256 chunks at most), a partial
    // channel tile, 3 channels per head.
    {"kda_rows_in_chunks", {2, 4100, 36}, 12, 3},
    // Rows of 160 channels: the CPU's 64-channel slices cut through heads of 20.
    {"heads_straddle_slices", {3, 50, 160}, 8, 4},
    {"empty", {0, 8}, 2, 1},
};

class GdnGate : public testing::TestWithParam<std::tuple<GdnGateCase, Backend>> {};

TEST_P(GdnGate, MatchesReference) {
  const auto& [c, backend] = GetParam();
  LONGCTX_SKIP_IF_UNAVAILABLE(backend.device);
  Context& ctx = context_for(backend.device);
  const Device dev = backend.device;
  const DType dt = backend.dtype;
  const int64_t D = c.shape.back();
  Rng rng(12);
  const Ref a = rounded(random_ref(c.shape, rng, -c.a_range, c.a_range), dt);
  const Ref A_log = rounded(random_ref({c.HV}, rng, 0, 2.8), dt);  // A in [1, 16]
  const Ref dt_bias = rounded(random_ref({D}, rng, -7, -2), dt);   // softplus ~ 1e-3 .. 0.1
  const Ref dg = rounded(random_ref(c.shape, rng), dt);

  Tensor g = poisoned(c.shape, dt, dev, &ctx);
  gdn_gate_fwd(ctx, g, from_ref(a, dt, dev), from_ref(A_log, dt, dev), from_ref(dt_bias, dt, dev));
  Tensor da = poisoned(c.shape, dt, dev, &ctx), dA = poisoned({c.HV}, dt, dev, &ctx);
  Tensor db = poisoned({D}, dt, dev, &ctx);
  gdn_gate_bwd(ctx, da, dA, db, from_ref(dg, dt, dev), from_ref(a, dt, dev),
               from_ref(A_log, dt, dev), from_ref(dt_bias, dt, dev));
  const auto grads = ref::gdn_gate_bwd<Oracle>(dg, a, A_log, dt_bias, no_round);
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    expect_close_2x(g, ref::gdn_gate_fwd<Oracle>(a, A_log, dt_bias, no_round),
                    ref::gdn_gate_fwd<S>(a, A_log, dt_bias, rounding_for(dt)), dt, "g");
    const auto naive = ref::gdn_gate_bwd<S>(dg, a, A_log, dt_bias, rounding_for(dt));
    expect_close_2x(da, grads.da, naive.da, dt, "da");
    expect_close_2x(dA, grads.dA_log, naive.dA_log, dt, "dA_log");
    expect_close_2x(db, grads.ddt_bias, naive.ddt_bias, dt, "ddt_bias");
  });
  // Twice more, on the CPU on three threads and on one: the sums' order does not depend on it.
  Context three_threads(Device::cpu(), 3), one_thread(Device::cpu(), 1);
  for (Context* again : {&three_threads, &one_thread}) {
    Context& ctx2 = dev.is_cpu() ? *again : ctx;
    Tensor dA2 = poisoned({c.HV}, dt, dev, &ctx2), db2 = poisoned({D}, dt, dev, &ctx2);
    gdn_gate_bwd(ctx2, poisoned(c.shape, dt, dev, &ctx2), dA2, db2, from_ref(dg, dt, dev),
                 from_ref(a, dt, dev), from_ref(A_log, dt, dev), from_ref(dt_bias, dt, dev));
    expect_equal(dA2, dA, "dA_log, again (deterministic)");
    expect_equal(db2, db, "ddt_bias, again (deterministic)");
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, GdnGate,
                         testing::Combine(testing::ValuesIn(kCases),
                                          testing::ValuesIn(all_backends())),
                         case_name<GdnGateCase>);

TEST(GdnGateReference, GradientsMatchFiniteDifferences) {
  Rng rng(3);
  const Ref a = random_ref({3, 6}, rng, -3, 3), A_log = random_ref({2}, rng, 0, 2);
  const Ref dt_bias = random_ref({6}, rng, -3, 1), dg = random_ref({3, 6}, rng);
  auto loss = [&](const std::vector<Ref>& in) {
    return dot(ref::gdn_gate_fwd<double>(in[0], in[1], in[2], no_round), dg);
  };
  const auto g = ref::gdn_gate_bwd<double>(dg, a, A_log, dt_bias, no_round);
  const std::vector<Ref> in = {a, A_log, dt_bias};
  EXPECT_LE(max_abs_diff(g.da, finite_difference(loss, in, 0)), 1e-8);
  EXPECT_LE(max_abs_diff(g.dA_log, finite_difference(loss, in, 1)), 1e-8);
  EXPECT_LE(max_abs_diff(g.ddt_bias, finite_difference(loss, in, 2)), 1e-8);
}

TEST(GdnGateBadInput, NamesTheArgument) {
  Context& ctx = context_for(Device::cpu());
  const Tensor a = Tensor::zeros({4, 6}, DType::f32), A = Tensor::zeros({3}, DType::f32);
  const Tensor b = Tensor::zeros({6}, DType::f32);
  Tensor g = Tensor::zeros({4, 6}, DType::f32);
  EXPECT_LONGCTX_ERROR(gdn_gate_fwd(ctx, g, a, Tensor::zeros({4}, DType::f32), b), "gdn_gate_fwd",
                       "'A_log'", "must divide the channel count D = 6");
  EXPECT_LONGCTX_ERROR(gdn_gate_fwd(ctx, g, a, A, Tensor::zeros({5}, DType::f32)), "'dt_bias'",
                       "expected shape (6,)");
  EXPECT_LONGCTX_ERROR(gdn_gate_fwd(ctx, a, a, A, b), "'g'", "overlap");
  EXPECT_LONGCTX_ERROR(gdn_gate_bwd(ctx, g, A, Tensor::zeros({6}, DType::f64), a, a, A, b),
                       "gdn_gate_bwd", "'ddt_bias'", "expected dtype f32");
}

// sigmoid and sigmoid_gate, also in place.
class Sigmoid : public testing::TestWithParam<Backend> {};

TEST_P(Sigmoid, MatchesReference) {
  const auto [dev, dt] = GetParam();
  LONGCTX_SKIP_IF_UNAVAILABLE(dev);
  Context& ctx = context_for(dev);
  Rng rng(31);
  const Shape shape = {3, 1001};
  // Gates to +-90: exp(90) overflows f32, which must give 0 and 1, never NaN.
  const Ref gate = rounded(random_ref(shape, rng, -90, 90), dt);
  const Ref up = rounded(random_ref(shape, rng, -2, 2), dt);
  const Ref dout = rounded(random_ref(shape, rng), dt);
  const Tensor gt = from_ref(gate, dt, dev), ut = from_ref(up, dt, dev);
  const Tensor dt_out = from_ref(dout, dt, dev);

  Tensor s = poisoned(shape, dt, dev, &ctx);
  sigmoid_fwd(ctx, s, gt);
  Ref ones(shape);
  for (int64_t i = 0; i < ones.numel(); ++i) ones[i] = 1;
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    expect_close_2x(s, ref::sigmoid_gate_fwd<Oracle>(gate, ones, no_round),
                    ref::sigmoid_gate_fwd<S>(gate, ones, rounding_for(dt)), dt, "sigmoid");
  });
  // dx = dout * s * (1 - s) with s as the op computed it.
  Tensor dx = poisoned(shape, dt, dev, &ctx);
  sigmoid_bwd(ctx, dx, dt_out, s);
  const Ref sv = to_ref(s);
  Ref exact(shape);
  for (int64_t i = 0; i < exact.numel(); ++i) exact[i] = dout[i] * sv[i] * (1 - sv[i]);
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    Ref naive(shape);
    const Round round = rounding_for(dt);
    for (int64_t i = 0; i < naive.numel(); ++i)
      naive[i] = round(double(S(round(double(S(dout[i]) * S(sv[i])))) * (S(1) - S(sv[i]))));
    expect_close_2x(dx, exact, naive, dt, "sigmoid dx");
  });

  Tensor out = poisoned(shape, dt, dev, &ctx);
  sigmoid_gate_fwd(ctx, out, gt, ut);
  Tensor dg = poisoned(shape, dt, dev, &ctx), du = poisoned(shape, dt, dev, &ctx);
  sigmoid_gate_bwd(ctx, dg, du, dt_out, gt, ut);
  const auto grads = ref::sigmoid_gate_bwd<Oracle>(dout, gate, up, no_round);
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    expect_close_2x(out, ref::sigmoid_gate_fwd<Oracle>(gate, up, no_round),
                    ref::sigmoid_gate_fwd<S>(gate, up, rounding_for(dt)), dt, "out");
    const auto naive = ref::sigmoid_gate_bwd<S>(dout, gate, up, rounding_for(dt));
    expect_close_2x(dg, grads.dgate, naive.dgate, dt, "dgate");
    expect_close_2x(du, grads.dup, naive.dup, dt, "dup");
  });
  Tensor g_copy = from_ref(gate, dt, dev), u_copy = from_ref(up, dt, dev);
  sigmoid_gate_bwd(ctx, g_copy, u_copy, dt_out, g_copy, u_copy);
  expect_equal(g_copy, dg, "dgate, in place over gate");
  expect_equal(u_copy, du, "dup, in place over up");
}

INSTANTIATE_TEST_SUITE_P(Backends, Sigmoid, testing::ValuesIn(all_backends()),
                         [](const auto& info) { return info.param.name(); });

TEST(SigmoidGateReference, GradientsMatchFiniteDifferences) {
  Rng rng(17);
  const Ref gate = random_ref({3, 7}, rng, -4, 4), up = random_ref({3, 7}, rng);
  const Ref dout = random_ref({3, 7}, rng);
  auto loss = [&](const std::vector<Ref>& in) {
    return dot(ref::sigmoid_gate_fwd<double>(in[0], in[1], no_round), dout);
  };
  const auto g = ref::sigmoid_gate_bwd<double>(dout, gate, up, no_round);
  EXPECT_LE(max_abs_diff(g.dgate, finite_difference(loss, {gate, up}, 0)), 1e-8);
  EXPECT_LE(max_abs_diff(g.dup, finite_difference(loss, {gate, up}, 1)), 1e-8);
}

TEST(SigmoidBadInput, NamesTheArgument) {
  Context& ctx = context_for(Device::cpu());
  const Tensor x = Tensor::zeros({4}, DType::f32);
  EXPECT_LONGCTX_ERROR(sigmoid_fwd(ctx, Tensor::zeros({5}, DType::f32), x), "sigmoid_fwd", "'out'",
                       "expected shape (4,)");
  EXPECT_LONGCTX_ERROR(sigmoid_gate_fwd(ctx, x, x, Tensor::zeros({4}, DType::f64)),
                       "sigmoid_gate_fwd", "'up'", "expected dtype f32");
  Tensor d = Tensor::zeros({4}, DType::f32);
  EXPECT_LONGCTX_ERROR(sigmoid_gate_bwd(ctx, d, d, x, x, x), "sigmoid_gate_bwd", "overlap");
}

}  // namespace
}  // namespace longctx::test
