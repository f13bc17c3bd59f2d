// linear_scan and the ScanPair operator: every case x backend against the reference (forward and
// backward, with and without h0 / dlast_state); the operator folded in random tree order against
// the sequential fold; 64k-token scans with decays near 0 and near 1; the reference against
// finite differences; bad inputs.
#include "harness.h"
#include "longctx/ops/linear_scan.h"
#include "longctx/ops/scan_operator.h"
#include "reference/linear_scan.h"

namespace longctx::test {
namespace {

enum class Decay { typical, extreme };  // extreme: half the channels near 0, half near 1

struct LinearScanCase {
  std::string name;
  int64_t B, T, D;
  bool h0;
  Decay decay = Decay::typical;
};
LONGCTX_PRINTS_AS_NAME(LinearScanCase)

// Widths of Hawk/Griffin's RG-LRU (lru_width 2560 at 2B), scaled down.
const std::vector<LinearScanCase> kCases = {
    {"hawk_tiny", 2, 37, 64, true},
    {"griffin_2b_width_over_8", 1, 130, 320, false},
    {"recurrentgemma_9b_width_over_16", 2, 19, 256, true},
    {"odd_width_one_step", 3, 1, 5, true},
    {"long_width_1", 1, 3001, 1, false},
    {"decays_near_0_and_1_64k", 1, 65536, 8, true, Decay::extreme},
};

class LinearScan : public testing::TestWithParam<std::tuple<LinearScanCase, Backend>> {};

TEST_P(LinearScan, MatchesReference) {
  const auto& [c, backend] = GetParam();
  LONGCTX_SKIP_IF_UNAVAILABLE(backend.device);
  Context& ctx = context_for(backend.device);
  const Device dev = backend.device;
  const DType dt = backend.dtype, sdt = stat_dtype(dt);
  Rng rng(202);
  Ref a({c.B, c.T, c.D});
  for (int64_t i = 0; i < a.numel(); ++i) {
    if (c.decay == Decay::typical) {
      a[i] = rng.uniform(0.5, 1.0);
    } else {  // channel parity picks near 0 or near 1
      a[i] = (i % c.D) % 2 ? 1.0 - rng.uniform(1e-7, 1e-4) : rng.uniform(1e-7, 1e-3);
    }
  }
  a = rounded(a, dt);
  const Ref b = rounded(random_ref({c.B, c.T, c.D}, rng), dt);
  const Ref h0 = c.h0 ? rounded(random_ref({c.B, c.D}, rng), sdt) : Ref();
  const Ref dout = rounded(random_ref({c.B, c.T, c.D}, rng), dt);
  const Ref dlast = rounded(random_ref({c.B, c.D}, rng), sdt);
  const Tensor h0_t = c.h0 ? from_ref(h0, sdt, dev) : Tensor();

  Tensor out = poisoned({c.B, c.T, c.D}, dt, dev, &ctx);
  Tensor last = poisoned({c.B, c.D}, sdt, dev, &ctx);
  const Tensor a_t = from_ref(a, dt, dev), b_t = from_ref(b, dt, dev);
  linear_scan_fwd(ctx, out, last, a_t, b_t, h0_t);
  const auto exact = ref::linear_scan_fwd<Oracle>(a, b, h0, no_round);
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    const auto naive = ref::linear_scan_fwd<S>(a, b, h0, rounding_for(dt));
    expect_close_2x(out, exact.out, naive.out, dt, "out");
    expect_close_2x(last, exact.last_state, naive.last_state, sdt, "last_state");
  });

  // Backward, once with dlast_state and (when the case has h0) dh0, once without dlast_state.
  for (const bool with_dlast : {true, false}) {
    SCOPED_TRACE(with_dlast ? "with dlast_state" : "without dlast_state");
    Tensor da = poisoned(a.shape, dt, dev, &ctx), db = poisoned(a.shape, dt, dev, &ctx);
    Tensor dh0 = c.h0 ? poisoned({c.B, c.D}, sdt, dev, &ctx) : Tensor();
    linear_scan_bwd(ctx, da, db, dh0, from_ref(dout, dt, dev),
                    with_dlast ? from_ref(dlast, sdt, dev) : Tensor(), a_t, out, h0_t);
    const Ref dl = with_dlast ? dlast : Ref();
    // Like the op, the naive backward reads h_{t-1} back from the stored (rounded) out.
    const auto g = ref::linear_scan_bwd<Oracle>(dout, dl, a, b, h0, no_round);
    with_naive_type(dt, [&](auto tag) {
      using S = typename decltype(tag)::type;
      const auto naive = ref::linear_scan_bwd<S>(dout, dl, a, b, h0, rounding_for(dt));
      expect_close_2x(da, g.da, naive.da, dt, "da");
      expect_close_2x(db, g.db, naive.db, dt, "db");
      if (c.h0) expect_close_2x(dh0, g.dh0, naive.dh0, sdt, "dh0");
    });
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, LinearScan,
                         testing::Combine(testing::ValuesIn(kCases),
                                          testing::ValuesIn(all_backends())),
                         case_name<LinearScanCase>);

TEST(LinearScanReference, GradientsMatchFiniteDifferences) {
  Rng rng(9);
  const Ref a = random_ref({2, 6, 3}, rng, 0.3, 1.1), b = random_ref({2, 6, 3}, rng);
  const Ref h0 = random_ref({2, 3}, rng), dout = random_ref({2, 6, 3}, rng);
  const Ref dlast = random_ref({2, 3}, rng);
  auto loss = [&](const std::vector<Ref>& in) {
    const auto r = ref::linear_scan_fwd<double>(in[0], in[1], in[2], no_round);
    return dot(r.out, dout) + dot(r.last_state, dlast);
  };
  const auto g = ref::linear_scan_bwd<double>(dout, dlast, a, b, h0, no_round);
  EXPECT_LE(max_abs_diff(g.da, finite_difference(loss, {a, b, h0}, 0)), 1e-8);
  EXPECT_LE(max_abs_diff(g.db, finite_difference(loss, {a, b, h0}, 1)), 1e-8);
  EXPECT_LE(max_abs_diff(g.dh0, finite_difference(loss, {a, b, h0}, 2)), 1e-8);
}

// Folds pairs[lo, hi) with a random bracketing: split at a random point, fold each side.
ScanPair<double> tree_fold(const std::vector<ScanPair<double>>& pairs, size_t lo, size_t hi,
                           Rng& rng) {
  if (hi - lo == 1) return pairs[lo];
  const size_t mid = size_t(rng.integer(int64_t(lo) + 1, int64_t(hi) - 1));
  return scan_combine(tree_fold(pairs, lo, mid, rng), tree_fold(pairs, mid, hi, rng));
}

TEST(ScanOperator, TreeOrderFoldEqualsSequentialFold) {
  Rng rng(5);
  for (int trial = 0; trial < 20; ++trial) {
    const size_t n = size_t(rng.integer(1, 300));
    std::vector<ScanPair<double>> pairs(n);
    for (auto& p : pairs) p = {rng.uniform(0.0, 1.0), rng.uniform(-1, 1)};
    ScanPair<double> seq = scan_identity<double>();
    double h = 0.5;  // also apply the steps one by one to a state
    for (const auto& p : pairs) {
      seq = scan_combine(seq, p);
      h = p.a * h + p.b;
    }
    const ScanPair<double> tree = tree_fold(pairs, 0, n, rng);
    EXPECT_NEAR(tree.a, seq.a, 1e-12 * std::max(1.0, std::abs(seq.a))) << "n = " << n;
    EXPECT_NEAR(tree.b, seq.b, 1e-12 * std::max(1.0, std::abs(seq.b))) << "n = " << n;
    EXPECT_NEAR(scan_apply(tree, 0.5), h, 1e-12 * std::max(1.0, std::abs(h))) << "n = " << n;
  }
}

TEST(ScanOperator, IdentityAndOrder) {
  const ScanPair<double> p{0.5, 2.0}, q{3.0, -1.0};
  const auto left = scan_combine(scan_identity<double>(), p);
  const auto right = scan_combine(p, scan_identity<double>());
  EXPECT_EQ(left.a, p.a);
  EXPECT_EQ(left.b, p.b);
  EXPECT_EQ(right.a, p.a);
  EXPECT_EQ(right.b, p.b);
  // Not commutative: p then q is h -> 3 * (0.5 h + 2) - 1; q then p is h -> 0.5 * (3 h - 1) + 2.
  EXPECT_EQ(scan_combine(p, q).b, 5.0);
  EXPECT_EQ(scan_combine(q, p).b, 1.5);
  EXPECT_EQ(ScanCombine{}(p, q).b, 5.0);
}

TEST(LinearScanBadInput, NamesTheArgument) {
  Context& ctx = context_for(Device::cpu());
  const DType f32 = DType::f32;
  Tensor a = Tensor::zeros({2, 5, 4}, f32), b = Tensor::zeros({2, 5, 4}, f32);
  Tensor out = Tensor::empty({2, 5, 4}, f32), last = Tensor::empty({2, 4}, f32);
  EXPECT_LONGCTX_ERROR(linear_scan_fwd(ctx, out, last, a, Tensor::zeros({2, 5, 3}, f32)),
                       "linear_scan_fwd", "'b'", "expected shape (2, 5, 4)", "got (2, 5, 3)");
  EXPECT_LONGCTX_ERROR(linear_scan_fwd(ctx, out, last, a.reshape({10, 4}), b), "'a'",
                       "must have 3 dimensions");
  EXPECT_LONGCTX_ERROR(linear_scan_fwd(ctx, out, Tensor::empty({2, 4}, DType::f64), a, b),
                       "'last_state'", "expected dtype f32", "got f64");
  EXPECT_LONGCTX_ERROR(linear_scan_fwd(ctx, out, last, a, b, Tensor::zeros({2, 5}, f32)), "'h0'",
                       "expected shape (2, 4)");
  EXPECT_LONGCTX_ERROR(linear_scan_fwd(ctx, b, last, a, b), "'out'", "overlaps input 'b'");
  Tensor da = Tensor::empty({2, 5, 4}, f32), db = Tensor::empty({2, 5, 4}, f32);
  Tensor h0 = Tensor::zeros({2, 4}, f32), dh0 = Tensor::empty({2, 4}, f32);
  EXPECT_LONGCTX_ERROR(linear_scan_bwd(ctx, da, db, Tensor(), b, Tensor(), a, b, h0),
                       "linear_scan_bwd", "'dh0'", "required because 'h0' was given");
  EXPECT_LONGCTX_ERROR(linear_scan_bwd(ctx, da, db, dh0, b, Tensor(), a, b), "'dh0'",
                       "given but 'h0' was not");
  Tensor on_cuda(reinterpret_cast<void*>(0x1000), f32, Device::cuda(0), {2, 5, 4});
  EXPECT_LONGCTX_ERROR(linear_scan_fwd(ctx, out, last, on_cuda, b), "'a'", "is on cuda:0");
}

}  // namespace
}  // namespace longctx::test
