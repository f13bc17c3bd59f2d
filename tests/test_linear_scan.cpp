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
    // B past 65535: the CUDA kernels' grids put B on gridDim.z before grid.h.
    {"batch_past_grid_z_65537", 65537, 3, 2, true},
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

// ---- Packed variable-length batches -----------------------------------------------------------

struct PackedCase {
  std::string name;
  std::vector<int64_t> lengths;
};
LONGCTX_PRINTS_AS_NAME(PackedCase)

std::vector<PackedCase> packed_cases() {
  std::vector<PackedCase> cases;
  for (const auto& [name, lengths] : packed_length_cases()) cases.push_back({name, lengths});
  return cases;
}

class LinearScanPacked : public testing::TestWithParam<std::tuple<PackedCase, Backend>> {};

// One packed batch against the reference run on each sequence alone; then the op itself on each
// sequence alone and on a right-padded rectangular batch (padding a = 1, b = 0, dout = 0, which
// carry a state through unchanged): the same bits, forward and backward.
TEST_P(LinearScanPacked, MatchesPerSequenceReferenceAndIsBatchInvariant) {
  const auto& [c, backend] = GetParam();
  LONGCTX_SKIP_IF_UNAVAILABLE(backend.device);
  Context& ctx = context_for(backend.device);
  DeterministicScope deterministic(ctx);
  const Device dev = backend.device;
  const DType dt = backend.dtype, sdt = stat_dtype(dt);
  const int64_t D = 40, N = int64_t(c.lengths.size());
  const std::vector<int32_t> cu = cu_seqlens_of(c.lengths);
  const int64_t T = cu.back();
  Rng rng(31);
  const Ref a = rounded(random_ref({1, T, D}, rng, 0.5, 1.0), dt);
  const Ref b = rounded(random_ref({1, T, D}, rng), dt);
  const Ref h0 = rounded(random_ref({N, D}, rng), sdt);
  const Ref dout = rounded(random_ref({1, T, D}, rng), dt);
  const Ref dlast = rounded(random_ref({N, D}, rng), sdt);
  const Tensor cu_t = int_tensor(cu, {N + 1}, dev);

  // The op on the packed batch.
  Tensor out = poisoned({1, T, D}, dt, dev, &ctx), last = poisoned({N, D}, sdt, dev, &ctx);
  const Tensor a_t = from_ref(a, dt, dev), h0_t = from_ref(h0, sdt, dev);
  linear_scan_fwd(ctx, out, last, a_t, from_ref(b, dt, dev), h0_t, cu_t);
  Tensor da = poisoned({1, T, D}, dt, dev, &ctx), db = poisoned({1, T, D}, dt, dev, &ctx);
  Tensor dh0 = poisoned({N, D}, sdt, dev, &ctx);
  linear_scan_bwd(ctx, da, db, dh0, from_ref(dout, dt, dev), from_ref(dlast, sdt, dev), a_t, out,
                  h0_t, cu_t);
  const Ref got_out = to_ref(out), got_last = to_ref(last), got_da = to_ref(da),
            got_db = to_ref(db), got_dh0 = to_ref(dh0);

  // The reference, sequence by sequence, assembled in the packed layout.
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    Ref exact_out({1, T, D}), naive_out({1, T, D}), exact_last({N, D}), naive_last({N, D});
    Ref exact_da({1, T, D}), naive_da({1, T, D}), exact_db({1, T, D}), naive_db({1, T, D});
    Ref exact_dh0({N, D}), naive_dh0({N, D});
    for (int64_t n = 0; n < N; ++n) {
      auto seq = [&](const Ref& r) { return slice(r, 1, cu[size_t(n)], cu[size_t(n) + 1]); };
      const Ref an = seq(a), bn = seq(b), doutn = seq(dout);
      const Ref h0n = slice(h0, 0, n, n + 1), dlastn = slice(dlast, 0, n, n + 1);
      const auto e = ref::linear_scan_fwd<Oracle>(an, bn, h0n, no_round);
      const auto v = ref::linear_scan_fwd<S>(an, bn, h0n, rounding_for(dt));
      const auto eg = ref::linear_scan_bwd<Oracle>(doutn, dlastn, an, bn, h0n, no_round);
      const auto vg = ref::linear_scan_bwd<S>(doutn, dlastn, an, bn, h0n, rounding_for(dt));
      paste(exact_out, 1, cu[size_t(n)], e.out);
      paste(naive_out, 1, cu[size_t(n)], v.out);
      paste(exact_last, 0, n, e.last_state);
      paste(naive_last, 0, n, v.last_state);
      paste(exact_da, 1, cu[size_t(n)], eg.da);
      paste(naive_da, 1, cu[size_t(n)], vg.da);
      paste(exact_db, 1, cu[size_t(n)], eg.db);
      paste(naive_db, 1, cu[size_t(n)], vg.db);
      paste(exact_dh0, 0, n, eg.dh0);
      paste(naive_dh0, 0, n, vg.dh0);
    }
    expect_close_2x(out, exact_out, naive_out, dt, "out");
    expect_close_2x(last, exact_last, naive_last, sdt, "last_state");
    expect_close_2x(da, exact_da, naive_da, dt, "da");
    expect_close_2x(db, exact_db, naive_db, dt, "db");
    expect_close_2x(dh0, exact_dh0, naive_dh0, sdt, "dh0");
  });

  // Batch invariance: each sequence alone, then all of them right-padded to the longest.
  const int64_t Tmax = *std::max_element(c.lengths.begin(), c.lengths.end());
  Ref pad_a({N, Tmax, D}, 1.0), pad_b({N, Tmax, D}, 0.0), pad_dout({N, Tmax, D}, 0.0);
  for (int64_t n = 0; n < N; ++n) {
    SCOPED_TRACE("sequence " + std::to_string(n));
    const int64_t begin = cu[size_t(n)], len = c.lengths[size_t(n)];
    auto seq = [&](const Ref& r) { return slice(r, 1, begin, begin + len); };
    const Ref an = seq(a), bn = seq(b), doutn = seq(dout);
    for (int64_t i = 0; i < len * D; ++i) {  // row n of the padded batch: its first len steps
      pad_a[n * Tmax * D + i] = an[i];
      pad_b[n * Tmax * D + i] = bn[i];
      pad_dout[n * Tmax * D + i] = doutn[i];
    }
    Tensor o = poisoned({1, len, D}, dt, dev, &ctx), l = poisoned({1, D}, sdt, dev, &ctx);
    const Tensor an_t = from_ref(an, dt, dev), h0n_t = from_ref(slice(h0, 0, n, n + 1), sdt, dev);
    linear_scan_fwd(ctx, o, l, an_t, from_ref(bn, dt, dev), h0n_t);
    Tensor dan = poisoned({1, len, D}, dt, dev, &ctx), dbn = poisoned({1, len, D}, dt, dev, &ctx);
    Tensor dh0n = poisoned({1, D}, sdt, dev, &ctx);
    linear_scan_bwd(ctx, dan, dbn, dh0n, from_ref(doutn, dt, dev),
                    from_ref(slice(dlast, 0, n, n + 1), sdt, dev), an_t, o, h0n_t);
    EXPECT_EQ(max_abs_diff(to_ref(o), seq(got_out)), 0.0) << "out alone";
    EXPECT_EQ(max_abs_diff(to_ref(l), slice(got_last, 0, n, n + 1)), 0.0) << "last_state alone";
    EXPECT_EQ(max_abs_diff(to_ref(dan), seq(got_da)), 0.0) << "da alone";
    EXPECT_EQ(max_abs_diff(to_ref(dbn), seq(got_db)), 0.0) << "db alone";
    EXPECT_EQ(max_abs_diff(to_ref(dh0n), slice(got_dh0, 0, n, n + 1)), 0.0) << "dh0 alone";
  }
  Tensor o = poisoned({N, Tmax, D}, dt, dev, &ctx), l = poisoned({N, D}, sdt, dev, &ctx);
  const Tensor pa = from_ref(pad_a, dt, dev);
  linear_scan_fwd(ctx, o, l, pa, from_ref(pad_b, dt, dev), h0_t);
  Tensor pda = poisoned({N, Tmax, D}, dt, dev, &ctx), pdb = poisoned({N, Tmax, D}, dt, dev, &ctx);
  Tensor pdh0 = poisoned({N, D}, sdt, dev, &ctx);
  linear_scan_bwd(ctx, pda, pdb, pdh0, from_ref(pad_dout, dt, dev), from_ref(dlast, sdt, dev), pa,
                  o, h0_t);
  const Ref po = to_ref(o), ppda = to_ref(pda), ppdb = to_ref(pdb);
  for (int64_t n = 0; n < N; ++n) {
    SCOPED_TRACE("padded row " + std::to_string(n));
    const int64_t begin = cu[size_t(n)], len = c.lengths[size_t(n)];
    auto row = [&](const Ref& r) { return slice(slice(r, 0, n, n + 1), 1, 0, len); };
    auto seq = [&](const Ref& r) { return slice(r, 1, begin, begin + len); };
    EXPECT_EQ(max_abs_diff(row(po), seq(got_out)), 0.0) << "out padded";
    EXPECT_EQ(max_abs_diff(row(ppda), seq(got_da)), 0.0) << "da padded";
    EXPECT_EQ(max_abs_diff(row(ppdb), seq(got_db)), 0.0) << "db padded";
  }
  EXPECT_EQ(max_abs_diff(to_ref(l), got_last), 0.0) << "last_state padded";
  EXPECT_EQ(max_abs_diff(to_ref(pdh0), got_dh0), 0.0) << "dh0 padded";
}

INSTANTIATE_TEST_SUITE_P(Cases, LinearScanPacked,
                         testing::Combine(testing::ValuesIn(packed_cases()),
                                          testing::ValuesIn(all_backends())),
                         case_name<PackedCase>);

TEST(LinearScanPackedBadInput, NamesTheRule) {
  Context& ctx = context_for(Device::cpu());
  const DType f32 = DType::f32;
  Tensor a = Tensor::zeros({1, 6, 4}, f32), b = Tensor::zeros({1, 6, 4}, f32);
  Tensor out = Tensor::empty({1, 6, 4}, f32), last = Tensor::empty({2, 4}, f32);
  auto cu = [](std::vector<int32_t> v) { return int_tensor(v, {int64_t(v.size())}); };
  EXPECT_LONGCTX_ERROR(linear_scan_fwd(ctx, out, last, a, b, {}, cu({1, 3, 6})), "linear_scan_fwd",
                       "'cu_seqlens'", "must start at 0", "cu_seqlens[0] = 1");
  EXPECT_LONGCTX_ERROR(linear_scan_fwd(ctx, out, last, a, b, {}, cu({0, 4, 3, 6})), "'cu_seqlens'",
                       "nondecreasing", "cu_seqlens[1] = 4 > cu_seqlens[2] = 3");
  EXPECT_LONGCTX_ERROR(linear_scan_fwd(ctx, out, last, a, b, {}, cu({0, 3, 5})), "'cu_seqlens'",
                       "must end at the packed length T = 6", "cu_seqlens[2] = 5");
  EXPECT_LONGCTX_ERROR(linear_scan_fwd(ctx, out, last, a, b, {}, Tensor::zeros({3}, DType::i64)),
                       "'cu_seqlens'", "expected dtype i32", "got i64");
  EXPECT_LONGCTX_ERROR(linear_scan_fwd(ctx, out, last, a, b, {}, cu({})), "'cu_seqlens'",
                       "N + 1 >= 1 entries");
  Tensor a2 = Tensor::zeros({2, 3, 4}, f32), b2 = Tensor::zeros({2, 3, 4}, f32);
  EXPECT_LONGCTX_ERROR(
      linear_scan_fwd(ctx, Tensor::empty({2, 3, 4}, f32), last, a2, b2, {}, cu({0, 3, 6})), "'a'",
      "batch dimension 1 with cu_seqlens", "(2, 3, 4)");
  EXPECT_LONGCTX_ERROR(
      linear_scan_fwd(ctx, out, Tensor::empty({3, 4}, f32), a, b, {}, cu({0, 3, 6})),
      "'last_state'", "expected shape (2, 4)", "got (3, 4)");
  EXPECT_LONGCTX_ERROR(
      linear_scan_fwd(ctx, out, last, a, b, Tensor::zeros({1, 4}, f32), cu({0, 3, 6})), "'h0'",
      "expected shape (2, 4)");
}

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
