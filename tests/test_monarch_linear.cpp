// monarch_linear: every case x backend against the reference (square and rectangular factors,
// k != l, one block); the saved intermediate; optional gradients; nblocks = 1 against linear
// with the equivalent dense weight; dbias independent of the thread count; the reference against
// finite differences; the projection of dense weights; bad inputs.
#include <cmath>

#include "harness.h"
#include "longctx/ops/linear.h"
#include "longctx/ops/monarch_linear.h"
#include "reference/linear.h"
#include "reference/monarch_linear.h"

namespace longctx::test {
namespace {

struct MonarchCase {
  std::string name;
  Shape x_shape;  // (..., n_in)
  Shape w1, w2;   // (k, q, p), (l, s, r)
  bool bias;
};
LONGCTX_PRINTS_AS_NAME(MonarchCase)

const std::vector<MonarchCase> kCases = {
    // The SwiGLU MLP of the llama-monarch preset at width 64 (hidden 192, 4 blocks).
    {"mlp_up_64_192_b4", {2, 9, 64}, {4, 16, 16}, {4, 48, 16}, false},
    {"mlp_down_192_64_b4", {2, 9, 192}, {4, 16, 48}, {4, 16, 16}, true},
    // Square, b = sqrt(n) (the paper's case: rank-1 blocks) and b = 16 with blocks of 2.
    {"square_64_b8", {3, 5, 64}, {8, 8, 8}, {8, 8, 8}, true},
    {"square_32_b16", {17, 32}, {16, 2, 2}, {16, 2, 2}, false},
    // k != l, odd sizes: n_in 15 -> k·q 12 -> n_out 14, and 6 -> 12 -> 20.
    {"k3_l2_odd", {3, 7, 15}, {3, 4, 5}, {2, 7, 6}, true},
    {"k2_l4_odd", {11, 6}, {2, 6, 3}, {4, 5, 3}, false},
    // One block: the product of two dense matrices.
    {"one_block", {2, 3, 16}, {1, 24, 16}, {1, 20, 24}, true},
    {"one_row", {1, 12}, {3, 2, 4}, {2, 5, 3}, true},
    {"no_rows", {0, 16}, {4, 4, 4}, {4, 4, 4}, true},
};

Shape with_last(Shape s, int64_t last) {
  s.back() = last;
  return s;
}

class MonarchLinear : public testing::TestWithParam<std::tuple<MonarchCase, Backend>> {};

TEST_P(MonarchLinear, MatchesReference) {
  const auto& [c, backend] = GetParam();
  LONGCTX_SKIP_IF_UNAVAILABLE(backend.device);
  Context& ctx = context_for(backend.device);
  const Device dev = backend.device;
  const DType dt = backend.dtype;
  ASSERT_EQ(monarch_linear_supports(dev, dt), "");
  Rng rng(19);
  const int64_t n_out = c.w2[0] * c.w2[1], lr = c.w2[0] * c.w2[2];
  const Shape out_shape = with_last(c.x_shape, n_out), mid_shape = with_last(c.x_shape, lr);
  const Ref x = rounded(random_ref(c.x_shape, rng), dt);
  const Ref w1 = rounded(random_ref(c.w1, rng, -0.5, 0.5), dt);
  const Ref w2 = rounded(random_ref(c.w2, rng, -0.5, 0.5), dt);
  const Ref b = c.bias ? rounded(random_ref({n_out}, rng), dt) : Ref();
  const Ref dout = rounded(random_ref(out_shape, rng), dt);
  const Tensor xt = from_ref(x, dt, dev), w1t = from_ref(w1, dt, dev), w2t = from_ref(w2, dt, dev);
  const Tensor bt = c.bias ? from_ref(b, dt, dev) : Tensor();

  Tensor out = poisoned(out_shape, dt, dev, &ctx), mid = poisoned(mid_shape, dt, dev, &ctx);
  monarch_linear_fwd(ctx, out, xt, w1t, w2t, bt, mid);
  const auto exact = ref::monarch_linear_fwd<Oracle>(x, w1, w2, b, no_round);
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    const auto naive = ref::monarch_linear_fwd<S>(x, w1, w2, b, rounding_for(dt));
    expect_close_2x(out, exact.out, naive.out, dt, "out");
    expect_close_2x(mid, exact.mid, naive.mid, dt, "mid");
  });
  // Without mid: the same output.
  Tensor out_alone = poisoned(out_shape, dt, dev, &ctx);
  monarch_linear_fwd(ctx, out_alone, xt, w1t, w2t, bt);
  expect_equal(out_alone, out, "out without mid");

  Tensor dx = poisoned(c.x_shape, dt, dev, &ctx), dw1 = poisoned(c.w1, dt, dev, &ctx);
  Tensor dw2 = poisoned(c.w2, dt, dev, &ctx), db = poisoned({n_out}, dt, dev, &ctx);
  const Tensor doutt = from_ref(dout, dt, dev);
  monarch_linear_bwd(ctx, dx, dw1, dw2, db, doutt, xt, w1t, w2t);
  const auto grads = ref::monarch_linear_bwd<Oracle>(dout, x, w1, w2, no_round);
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    const auto naive = ref::monarch_linear_bwd<S>(dout, x, w1, w2, rounding_for(dt));
    expect_close_2x(dx, grads.dx, naive.dx, dt, "dx");
    expect_close_2x(dw1, grads.dw1, naive.dw1, dt, "dw1");
    expect_close_2x(dw2, grads.dw2, naive.dw2, dt, "dw2");
    expect_close_2x(db, grads.dbias, naive.dbias, dt, "dbias");
  });

  // The forward's mid gives the same gradients as recomputing it; gradients left out are not
  // computed, and the ones given are the same as before.
  Tensor dx_mid = poisoned(c.x_shape, dt, dev, &ctx), dw2_mid = poisoned(c.w2, dt, dev, &ctx);
  Tensor dw1_mid = poisoned(c.w1, dt, dev, &ctx);
  monarch_linear_bwd(ctx, dx_mid, dw1_mid, dw2_mid, Tensor(), doutt, xt, w1t, w2t, mid);
  expect_equal(dx_mid, dx, "dx with mid");
  expect_equal(dw1_mid, dw1, "dw1 with mid");
  expect_equal(dw2_mid, dw2, "dw2 with mid");
  Tensor dw2_only = poisoned(c.w2, dt, dev, &ctx);
  monarch_linear_bwd(ctx, Tensor(), Tensor(), dw2_only, Tensor(), doutt, xt, w1t, w2t);
  expect_equal(dw2_only, dw2, "dw2 alone");
  Tensor dx_only = poisoned(c.x_shape, dt, dev, &ctx), db_only = poisoned({n_out}, dt, dev, &ctx);
  monarch_linear_bwd(ctx, dx_only, Tensor(), Tensor(), db_only, doutt, xt, w1t, w2t);
  expect_equal(dx_only, dx, "dx without the weight gradients");
  expect_equal(db_only, db, "dbias without the weight gradients");
  Tensor dw1_only = poisoned(c.w1, dt, dev, &ctx);
  monarch_linear_bwd(ctx, Tensor(), dw1_only, Tensor(), Tensor(), doutt, xt, w1t, w2t);
  expect_equal(dw1_only, dw1, "dw1 alone");
}

INSTANTIATE_TEST_SUITE_P(Cases, MonarchLinear,
                         testing::Combine(testing::ValuesIn(kCases),
                                          testing::ValuesIn(all_backends())),
                         case_name<MonarchCase>);

// One block of n x n factors is a dense matrix: the product w2[0] @ w1[0]. monarch_linear and
// linear with that weight both match the same oracle by the 2x rule of their own computations.
class MonarchOneBlock : public testing::TestWithParam<Backend> {};

TEST_P(MonarchOneBlock, EqualsLinearWithTheDenseWeight) {
  const Backend backend = GetParam();
  LONGCTX_SKIP_IF_UNAVAILABLE(backend.device);
  Context& ctx = context_for(backend.device);
  const Device dev = backend.device;
  const DType dt = backend.dtype;
  ASSERT_EQ(monarch_linear_supports(dev, dt), "");
  Rng rng(7);
  const int64_t n = 48;
  const Ref x = rounded(random_ref({4, 6, n}, rng), dt);
  const Ref w1 = rounded(random_ref({1, n, n}, rng, -0.3, 0.3), dt);
  const Ref w2 = rounded(random_ref({1, n, n}, rng, -0.3, 0.3), dt);
  const Ref dense = rounded(ref::monarch_dense(w1, w2), dt);
  // The dense weight rounded to dt is a (slightly) different matrix: the oracle of each op is
  // its own exact product, and the two oracles agree up to that rounding.
  Tensor out_m = poisoned({4, 6, n}, dt, dev, &ctx), out_d = poisoned({4, 6, n}, dt, dev, &ctx);
  monarch_linear_fwd(ctx, out_m, from_ref(x, dt, dev), from_ref(w1, dt, dev),
                     from_ref(w2, dt, dev));
  linear_fwd(ctx, out_d, from_ref(x, dt, dev), from_ref(dense, dt, dev));
  const Ref exact_m = ref::monarch_linear_fwd<Oracle>(x, w1, w2, Ref(), no_round).out;
  const Ref exact_d = ref::linear_fwd<Oracle>(x, dense, Ref(), no_round);
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    expect_close_2x(out_m, exact_m,
                    ref::monarch_linear_fwd<S>(x, w1, w2, Ref(), rounding_for(dt)).out, dt,
                    "monarch_linear");
    expect_close_2x(out_d, exact_d, ref::linear_fwd<S>(x, dense, Ref(), rounding_for(dt)), dt,
                    "linear");
  });
  // The two exact products differ only by the rounding of the dense weight: at most
  // sum_i |x_i| · u · max|dense| a row.
  const double weight_rounding = unit_roundoff(dt) * max_abs(dense) * double(n) * max_abs(x);
  EXPECT_LE(max_abs_diff(exact_m, exact_d), weight_rounding);
}

INSTANTIATE_TEST_SUITE_P(Backends, MonarchOneBlock, testing::ValuesIn(all_backends()),
                         [](const auto& info) { return info.param.name(); });

TEST(MonarchLinearCpu, DbiasDoesNotDependOnThreadCount) {
  Rng rng(3);
  const Tensor x = random_tensor({700, 16}, DType::f32, rng);
  const Tensor w1 = random_tensor({4, 4, 4}, DType::f32, rng);
  const Tensor w2 = random_tensor({4, 33, 4}, DType::f32, rng);
  const Tensor dout = random_tensor({700, 132}, DType::f32, rng);
  Tensor db1 = Tensor::empty({132}, DType::f32), db2 = Tensor::empty({132}, DType::f32);
  Context one(Device::cpu(), 1), two(Device::cpu(), 2);
  monarch_linear_bwd(one, Tensor(), Tensor(), Tensor(), db1, dout, x, w1, w2);
  monarch_linear_bwd(two, Tensor(), Tensor(), Tensor(), db2, dout, x, w1, w2);
  expect_equal(db1, db2, "dbias, 1 vs 2 threads");
}

TEST(MonarchLinearReference, GradientsMatchFiniteDifferences) {
  Rng rng(8);
  // k = 3, l = 2, and a bias: every index map of the four steps is exercised.
  const Ref x = random_ref({2, 2, 6}, rng), w1 = random_ref({3, 4, 2}, rng);
  const Ref w2 = random_ref({2, 5, 6}, rng), b = random_ref({10}, rng);
  const Ref dout = random_ref({2, 2, 10}, rng);
  auto loss = [&](const std::vector<Ref>& in) {
    return dot(ref::monarch_linear_fwd<double>(in[0], in[1], in[2], in[3], no_round).out, dout);
  };
  const auto g = ref::monarch_linear_bwd<double>(dout, x, w1, w2, no_round);
  EXPECT_LE(max_abs_diff(g.dx, finite_difference(loss, {x, w1, w2, b}, 0)), 1e-8);
  EXPECT_LE(max_abs_diff(g.dw1, finite_difference(loss, {x, w1, w2, b}, 1)), 1e-8);
  EXPECT_LE(max_abs_diff(g.dw2, finite_difference(loss, {x, w1, w2, b}, 2)), 1e-8);
  EXPECT_LE(max_abs_diff(g.dbias, finite_difference(loss, {x, w1, w2, b}, 3)), 1e-8);
}

// The reference's four steps against the factorisation itself for the square case, b blocks of
// m = n / b (the paper's M = P L Pᵀ R): entry (o, i) of the dense weight is
// sum over the blocks' shared index of w2 · w1, nonzero only where the block structure allows.
TEST(MonarchLinearReference, DenseWeightIsTheBlockProduct) {
  Rng rng(12);
  const int64_t b = 4, m = 8, n = b * m;
  const Ref w1 = random_ref({b, m, m}, rng), w2 = random_ref({b, m, m}, rng);
  const Ref dense = ref::monarch_dense(w1, w2);
  // out[bo·l + a] = sum_c w2[a, bo, c] · y1[c·l + a], y1[i·q + j] = sum_e w1[i, j, e] · x[i·p + e]
  Ref want({n, n});
  for (int64_t a = 0; a < b; ++a)
    for (int64_t bo = 0; bo < m; ++bo)
      for (int64_t c = 0; c < m; ++c) {
        const int64_t u = c * b + a, i = u / m, j = u % m;
        for (int64_t e = 0; e < m; ++e)
          want[(bo * b + a) * n + i * m + e] += w2[(a * m + bo) * m + c] * w1[(i * m + j) * m + e];
      }
  EXPECT_LE(max_abs_diff(dense, want), 1e-12);
}

// ---- The projection ----------------------------------------------------------------------------

double frobenius(const Ref& a) {
  return std::sqrt(dot(a, a));
}
Ref difference(const Ref& a, const Ref& b) {
  Ref d = a;
  for (int64_t i = 0; i < d.numel(); ++i) d[i] -= b[i];
  return d;
}

// Projects a dense (n_out, n_in) weight onto the factor shapes and returns the Monarch matrix's
// dense weight.
Ref project(const Ref& weight, const MonarchShape& shape, DType dt = DType::f64) {
  Context& ctx = context_for(Device::cpu());
  Tensor w1 = poisoned(shape.w1, dt, Device::cpu(), &ctx);
  Tensor w2 = poisoned(shape.w2, dt, Device::cpu(), &ctx);
  monarch_project(ctx, w1, w2, from_ref(weight, dt));
  return ref::monarch_dense(to_ref(w1), to_ref(w2));
}

TEST(MonarchProject, AMonarchMatrixProjectsToItself) {
  Rng rng(21);
  const std::vector<MonarchShape> shapes = {
      {{4, 8, 8}, {4, 8, 8}},   {{8, 8, 8}, {8, 8, 8}},   {{4, 4, 4}, {4, 12, 4}},
      {{4, 4, 12}, {4, 4, 4}},  {{3, 4, 5}, {2, 7, 6}},   {{2, 6, 3}, {4, 5, 3}},
      {{1, 10, 6}, {1, 7, 10}}, {{16, 2, 2}, {16, 2, 2}},
  };
  for (const MonarchShape& shape : shapes) {
    const Ref dense = ref::monarch_dense(random_ref(shape.w1, rng), random_ref(shape.w2, rng));
    const Ref back = project(dense, shape);
    EXPECT_LE(max_abs_diff(back, dense), 1e-12 * std::max(1.0, max_abs(dense)))
        << shape_str(shape.w1) << " " << shape_str(shape.w2);
    // So too at any scale: dense times 2^±700 (whose squared norms leave f64's range) projects to
    // itself, scaled back exactly (the factors were 0.88 off from 1e77 on, zero below 1e-162).
    for (const int exponent : {700, -700}) {
      Ref scaled = dense;
      for (int64_t e = 0; e < scaled.numel(); ++e) scaled[e] = std::ldexp(scaled[e], exponent);
      Ref back_scaled = project(scaled, shape);
      for (int64_t e = 0; e < back_scaled.numel(); ++e)
        back_scaled[e] = std::ldexp(back_scaled[e], -exponent);
      EXPECT_LE(max_abs_diff(back_scaled, dense), 1e-12 * std::max(1.0, max_abs(dense)))
          << "scaled by 2^" << exponent << ": " << shape_str(shape.w1) << " "
          << shape_str(shape.w2);
    }
    // f32: the weight rounded by E is no longer Monarch, but dense is a candidate at distance
    // |E|, so the projection is within 2|E| of dense; storing the factors in f32 adds at most
    // 2u·sum(sigma) <= 2u·sqrt(rank)·|block| per block (Frobenius norms throughout).
    const Ref back32 = project(dense, shape, DType::f32);
    const double u = unit_roundoff(DType::f32), rank = double(std::min(shape.w2[1], shape.w1[2]));
    const double bound = 2 * frobenius(difference(rounded(dense, DType::f32), dense)) +
                         2 * u * std::sqrt(rank) * frobenius(dense);
    EXPECT_LE(frobenius(difference(back32, dense)), bound)
        << "f32 " << shape_str(shape.w1) << " " << shape_str(shape.w2);
  }
}

// Fewer blocks, more expressive: the error of projecting a random dense matrix falls strictly as
// the block count halves, to zero at one block (any dense matrix is a product of two).
TEST(MonarchProject, ErrorOfARandomDenseMatrixFallsWithFewerBlocks) {
  Rng rng(5);
  for (auto [n_out, n_in] : {std::pair<int64_t, int64_t>{64, 64}, {32, 96}, {96, 32}}) {
    const Ref dense = random_ref({n_out, n_in}, rng);
    double previous = INFINITY;
    for (int64_t b : {32, 16, 8, 4, 2, 1}) {
      const double err =
          frobenius(difference(project(dense, monarch_shape(n_in, n_out, b)), dense));
      EXPECT_LT(err, previous) << n_out << "x" << n_in << ", " << b << " blocks";
      if (b == 1) EXPECT_LE(err, 1e-11 * frobenius(dense)) << n_out << "x" << n_in;
      previous = err;
    }
  }
}

// Closest: no small change of the projected factors brings the Monarch matrix nearer the dense
// one (at the optimum the error's gradient is zero and its curvature non-negative).
TEST(MonarchProject, NoNearbyMonarchMatrixIsCloser) {
  Rng rng(6);
  Context& ctx = context_for(Device::cpu());
  const MonarchShape shape = monarch_shape(24, 36, 3);
  const Ref dense = random_ref({36, 24}, rng);
  Tensor w1 = Tensor::empty(shape.w1, DType::f64), w2 = Tensor::empty(shape.w2, DType::f64);
  monarch_project(ctx, w1, w2, from_ref(dense, DType::f64));
  const Ref f1 = to_ref(w1), f2 = to_ref(w2);
  const double best = frobenius(difference(ref::monarch_dense(f1, f2), dense));
  for (int trial = 0; trial < 20; ++trial) {
    Ref g1 = f1, g2 = f2;
    for (double& v : g1.v) v += 1e-3 * rng.uniform();
    for (double& v : g2.v) v += 1e-3 * rng.uniform();
    EXPECT_GE(frobenius(difference(ref::monarch_dense(g1, g2), dense)), best - 1e-12) << trial;
  }
}

// ---- Bad inputs --------------------------------------------------------------------------------

TEST(MonarchLinearBadInput, NamesTheShapeRule) {
  Context& ctx = context_for(Device::cpu());
  auto zeros = [](const Shape& s, DType dt = DType::f32) { return Tensor::zeros(s, dt); };
  const Tensor x = zeros({4, 16}), w1 = zeros({4, 3, 4}), w2 = zeros({2, 5, 6});
  Tensor out = Tensor::empty({4, 10}, DType::f32);
  EXPECT_LONGCTX_ERROR(monarch_linear_fwd(ctx, out, x, zeros({3, 4, 5}), w2), "monarch_linear_fwd",
                       "'w1'", "k·p = n_in = 16", "got (3, 4, 5)");
  EXPECT_LONGCTX_ERROR(monarch_linear_fwd(ctx, out, x, w1, zeros({3, 5, 6})), "'w2'",
                       "l·r = k·q = 12", "got (3, 5, 6)");
  EXPECT_LONGCTX_ERROR(monarch_linear_fwd(ctx, out, x, zeros({16, 4}), w2), "'w1'",
                       "must have 3 dimensions");
  EXPECT_LONGCTX_ERROR(monarch_linear_fwd(ctx, out, x, zeros({4, 0, 4}), w2), "'w1'",
                       "every entry >= 1", "got (4, 0, 4)");
  EXPECT_LONGCTX_ERROR(monarch_linear_fwd(ctx, out, x, w1, w2, zeros({12})), "'bias'",
                       "expected shape (10,)", "got (12,)");
  EXPECT_LONGCTX_ERROR(monarch_linear_fwd(ctx, zeros({4, 12}), x, w1, w2), "'out'",
                       "expected shape (4, 10)");
  EXPECT_LONGCTX_ERROR(monarch_linear_fwd(ctx, out, x, w1, w2, Tensor(), zeros({4, 10})), "'mid'",
                       "expected shape (4, 12)");
  EXPECT_LONGCTX_ERROR(monarch_linear_fwd(ctx, out, x, w1, w2.to_dtype(DType::f64)), "'w2'",
                       "expected dtype f32", "got f64");
  EXPECT_LONGCTX_ERROR(
      monarch_linear_fwd(ctx, x.reshape({64}).narrow(0, 0, 40).reshape({4, 10}), x, w1, w2),
      "'out'", "overlaps input 'x'");
  const Tensor dout = zeros({4, 10});
  EXPECT_LONGCTX_ERROR(
      monarch_linear_bwd(ctx, Tensor(), zeros({4, 4, 3}), Tensor(), Tensor(), dout, x, w1, w2),
      "monarch_linear_bwd", "'dw1'", "expected shape (4, 3, 4)");
  EXPECT_LONGCTX_ERROR(
      monarch_linear_bwd(ctx, Tensor(), Tensor(), Tensor(), Tensor(), zeros({4, 12}), x, w1, w2),
      "'dout'", "expected shape (4, 10)");
  EXPECT_LONGCTX_ERROR(monarch_linear_bwd(ctx, x, Tensor(), Tensor(), Tensor(), dout, x, w1, w2),
                       "'dx'", "overlaps input 'x'");
  EXPECT_LONGCTX_ERROR(monarch_shape(30, 64, 4), "monarch_shape", "'n_in'",
                       "multiple of nblocks = 4", "got 30");
  EXPECT_LONGCTX_ERROR(monarch_shape(32, 66, 4), "'n_out'", "multiple of nblocks = 4", "got 66");
  EXPECT_LONGCTX_ERROR(monarch_shape(32, 64, 0), "'nblocks'", "must be >= 1");
  Tensor p1 = Tensor::empty({4, 3, 4}, DType::f32), p2 = Tensor::empty({2, 5, 6}, DType::f32);
  EXPECT_LONGCTX_ERROR(monarch_project(ctx, p1, p2, zeros({12, 16})), "monarch_project", "'weight'",
                       "n_out = l·s = 10", "got (12, 16)");
  EXPECT_LONGCTX_ERROR(monarch_project(ctx, p1, p2, zeros({10, 15})), "'w1'", "k·p = n_in = 15");
  EXPECT_NE(monarch_project_supports(Device::cuda(0), DType::f32), "");
  EXPECT_EQ(monarch_linear_supports(Device::cpu(), DType::f64), "");
  EXPECT_EQ(monarch_linear_supports(Device::cuda(0), DType::bf16), "");
  const std::string why = monarch_linear_supports(Device::cpu(), DType::bf16);
  EXPECT_NE(why.find("monarch_linear on the CPU backend supports dtypes f32, f64, got bf16"),
            std::string::npos)
      << why;
}

}  // namespace
}  // namespace longctx::test
