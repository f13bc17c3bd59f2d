// selective_scan: every case x backend against the reference (forward, and every gradient with
// and without dlast_state); decode steps equal the full scan; a 64k-token scan with decays near 0
// and near 1; the reference against finite differences; bad inputs.
#include "harness.h"
#include "longctx/ops/selective_scan.h"
#include "reference/selective_scan.h"

namespace longctx::test {
namespace {

struct SelectiveScanCase {
  std::string name;
  int64_t B, Dm, N, G, T;
  bool optional;  // D, z, delta_bias, h0 and delta_softplus
  bool extreme_decays = false;
};
LONGCTX_PRINTS_AS_NAME(SelectiveScanCase)

// mamba-130m: d_inner 1536, d_state 16, one group; widths scaled down. Lengths straddle the CPU
// tile (64) and are not multiples of anything.
const std::vector<SelectiveScanCase> kCases = {
    {"mamba_130m_d_inner_over_64", 2, 24, 16, 1, 131, true},
    {"mamba_130m_plain", 1, 16, 16, 1, 64, false},
    {"groups_3", 1, 12, 8, 3, 70, true},
    {"groups_per_channel", 2, 4, 5, 4, 129, false},
    {"state_256", 1, 2, 256, 1, 20, true},
    {"one_step", 3, 5, 3, 1, 1, true},
    {"decays_near_0_and_1_64k", 1, 2, 4, 1, 65536, true, true},
};

SelectiveScanInputs to_device(const ref::SelectiveScanRefs& r, DType dt, Device dev) {
  const DType pdt = stat_dtype(dt);
  auto opt = [&](const Ref& x, DType t) { return x.numel() ? from_ref(x, t, dev) : Tensor(); };
  return {from_ref(r.u, dt, dev), from_ref(r.delta, dt, dev), from_ref(r.A, pdt, dev),
          from_ref(r.B, dt, dev), from_ref(r.C, dt, dev),     opt(r.D, pdt),
          opt(r.z, dt),           opt(r.delta_bias, pdt),     opt(r.h0, pdt)};
}

ref::SelectiveScanRefs make_inputs(const SelectiveScanCase& c, DType dt, Rng& rng) {
  const DType pdt = stat_dtype(dt);
  ref::SelectiveScanRefs r;
  r.delta_softplus = c.optional && !c.extreme_decays;
  r.u = rounded(random_ref({c.B, c.Dm, c.T}, rng), dt);
  r.delta = rounded(r.delta_softplus ? random_ref({c.B, c.Dm, c.T}, rng, -2, 1)
                                     : random_ref({c.B, c.Dm, c.T}, rng, 0.05, 1),
                    dt);
  r.A = random_ref({c.Dm, c.N}, rng, -2, -0.1);
  if (c.extreme_decays)  // exp(delta * A) between ~e^-50 and ~1 - 1e-5
    for (int64_t i = 0; i < r.A.numel(); ++i)
      r.A[i] = i % 2 ? -rng.uniform(50, 100) : -rng.uniform(1e-5, 1e-4);
  r.A = rounded(r.A, pdt);
  r.B = rounded(random_ref({c.B, c.G, c.N, c.T}, rng), dt);
  r.C = rounded(random_ref({c.B, c.G, c.N, c.T}, rng), dt);
  if (c.optional) {
    r.D = rounded(random_ref({c.Dm}, rng), pdt);
    r.z = rounded(random_ref({c.B, c.Dm, c.T}, rng, -2, 2), dt);
    r.delta_bias = rounded(random_ref({c.Dm}, rng, 0, 0.3), pdt);
    r.h0 = rounded(random_ref({c.B, c.Dm, c.N}, rng), pdt);
  }
  return r;
}

class SelectiveScan : public testing::TestWithParam<std::tuple<SelectiveScanCase, Backend>> {};

TEST_P(SelectiveScan, MatchesReference) {
  const auto& [c, backend] = GetParam();
  LONGCTX_SKIP_IF_UNAVAILABLE(backend.device);
  Context& ctx = context_for(backend.device);
  const Device dev = backend.device;
  const DType dt = backend.dtype, pdt = stat_dtype(dt);
  Rng rng(404);
  const ref::SelectiveScanRefs r = make_inputs(c, dt, rng);
  const SelectiveScanInputs in = to_device(r, dt, dev);
  const SelectiveScanParams params{r.delta_softplus};

  Tensor out = poisoned(r.u.shape, dt, dev, &ctx);
  Tensor last = poisoned({c.B, c.Dm, c.N}, pdt, dev, &ctx);
  selective_scan_fwd(ctx, out, last, in, params);
  const auto exact = ref::selective_scan_fwd<Oracle>(r, no_round);
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    const auto naive = ref::selective_scan_fwd<S>(r, rounding_for(dt));
    expect_close_2x(out, exact.out, naive.out, dt, "out");
    expect_close_2x(last, exact.last_state, naive.last_state, pdt, "last_state");
  });

  const Ref dout = rounded(random_ref(r.u.shape, rng), dt);
  const Ref dlast = rounded(random_ref({c.B, c.Dm, c.N}, rng), pdt);
  for (const bool with_dlast : {true, false}) {
    SCOPED_TRACE(with_dlast ? "with dlast_state" : "without dlast_state");
    auto maybe = [&](const Tensor& input, const Shape& shape, DType t) {
      return input.defined() ? poisoned(shape, t, dev, &ctx) : Tensor();
    };
    SelectiveScanGrads g{poisoned(r.u.shape, dt, dev, &ctx),  poisoned(r.u.shape, dt, dev, &ctx),
                         poisoned(r.A.shape, pdt, dev, &ctx), poisoned(r.B.shape, dt, dev, &ctx),
                         poisoned(r.C.shape, dt, dev, &ctx),  maybe(in.D, {c.Dm}, pdt),
                         maybe(in.z, r.u.shape, dt),          maybe(in.delta_bias, {c.Dm}, pdt),
                         maybe(in.h0, {c.B, c.Dm, c.N}, pdt)};
    selective_scan_bwd(ctx, g, from_ref(dout, dt, dev),
                       with_dlast ? from_ref(dlast, pdt, dev) : Tensor(), in, params);
    const Ref dl = with_dlast ? dlast : Ref();
    const auto e = ref::selective_scan_bwd<Oracle>(dout, dl, r, no_round);
    with_naive_type(dt, [&](auto tag) {
      using S = typename decltype(tag)::type;
      const auto n = ref::selective_scan_bwd<S>(dout, dl, r, rounding_for(dt));
      expect_close_2x(g.du, e.du, n.du, dt, "du");
      expect_close_2x(g.ddelta, e.ddelta, n.ddelta, dt, "ddelta");
      expect_close_2x(g.dA, e.dA, n.dA, pdt, "dA");
      expect_close_2x(g.dB, e.dB, n.dB, dt, "dB");
      expect_close_2x(g.dC, e.dC, n.dC, dt, "dC");
      if (c.optional) {
        expect_close_2x(g.dD, e.dD, n.dD, pdt, "dD");
        expect_close_2x(g.dz, e.dz, n.dz, dt, "dz");
        expect_close_2x(g.ddelta_bias, e.ddelta_bias, n.ddelta_bias, pdt, "ddelta_bias");
        expect_close_2x(g.dh0, e.dh0, n.dh0, pdt, "dh0");
      }
    });
  }
}

// T decode steps from h0 produce the full scan's outputs and its last state.
TEST_P(SelectiveScan, DecodeStepsEqualTheScan) {
  const auto& [c, backend] = GetParam();
  LONGCTX_SKIP_IF_UNAVAILABLE(backend.device);
  if (c.T > 80) GTEST_SKIP() << "decode steps are checked on the short cases";
  Context& ctx = context_for(backend.device);
  const Device dev = backend.device;
  const DType dt = backend.dtype, pdt = stat_dtype(dt);
  Rng rng(405);
  const ref::SelectiveScanRefs r = make_inputs(c, dt, rng);
  const SelectiveScanInputs in = to_device(r, dt, dev);
  Tensor state =
      r.h0.numel() ? from_ref(r.h0, pdt, dev) : Tensor::zeros({c.B, c.Dm, c.N}, pdt, dev, &ctx);
  auto column = [&](const Ref& x, int64_t t) {  // (..., T) -> (...)
    Shape s(x.shape.begin(), x.shape.end() - 1);
    Ref col(s);
    for (int64_t i = 0; i < col.numel(); ++i) col[i] = x[i * c.T + t];
    return col;
  };
  Ref stepped(r.u.shape);
  for (int64_t t = 0; t < c.T; ++t) {
    auto step = [&](const Ref& x) {
      return x.numel() ? from_ref(column(x, t), dt, dev) : Tensor();
    };
    Tensor yt = poisoned({c.B, c.Dm}, dt, dev, &ctx);
    selective_state_update(ctx, yt, state, step(r.u), step(r.delta), in.A, step(r.B), step(r.C),
                           in.D, step(r.z), in.delta_bias, {r.delta_softplus});
    const Ref y = to_ref(yt);
    for (int64_t i = 0; i < y.numel(); ++i) stepped[i * c.T + t] = y[i];
  }
  const auto exact = ref::selective_scan_fwd<Oracle>(r, no_round);
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    const auto naive = ref::selective_scan_fwd<S>(r, rounding_for(dt));
    expect_close_2x(from_ref(stepped, DType::f64), exact.out, naive.out, dt, "decode outputs");
    expect_close_2x(state, exact.last_state, naive.last_state, pdt, "decode state");
  });
}

INSTANTIATE_TEST_SUITE_P(Cases, SelectiveScan,
                         testing::Combine(testing::ValuesIn(kCases),
                                          testing::ValuesIn(all_backends())),
                         case_name<SelectiveScanCase>);

// B past 65535 on CUDA, where the kernels' grids put B on gridDim.y before kernels/common/grid.h.
// (The CPU backend is left out: its f64 ddelta_bias, summed over 65537 batches, is 4x the naive
// sum's error, 5.7e-14 against 1.4e-14, which the 2x rule rejects; a CPU matter of its own.)
const SelectiveScanCase kBatchPastGridY = {"batch_past_grid_y_65537", 65537, 1, 2, 1, 3, true};
INSTANTIATE_TEST_SUITE_P(CudaGrid, SelectiveScan,
                         testing::Combine(testing::Values(kBatchPastGridY),
                                          testing::ValuesIn(cuda_backends())),
                         case_name<SelectiveScanCase>);

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

// The refs of sequence [begin, end) of a packed batch (with its h0 row n), as a batch of one.
ref::SelectiveScanRefs sequence_refs(const ref::SelectiveScanRefs& r, int64_t n, int64_t begin,
                                     int64_t end) {
  ref::SelectiveScanRefs q = r;
  q.u = slice(r.u, 2, begin, end);
  q.delta = slice(r.delta, 2, begin, end);
  q.z = slice(r.z, 2, begin, end);
  q.B = slice(r.B, 3, begin, end);
  q.C = slice(r.C, 3, begin, end);
  q.h0 = slice(r.h0, 0, n, n + 1);
  return q;
}

SelectiveScanGrads poisoned_grads(const ref::SelectiveScanRefs& r, int64_t sequences, DType dt,
                                  Device dev, Context& ctx) {
  const DType pdt = stat_dtype(dt);
  const int64_t Dm = r.u.shape[1], N = r.A.shape[1];
  return {poisoned(r.u.shape, dt, dev, &ctx),          poisoned(r.u.shape, dt, dev, &ctx),
          poisoned(r.A.shape, pdt, dev, &ctx),         poisoned(r.B.shape, dt, dev, &ctx),
          poisoned(r.C.shape, dt, dev, &ctx),          poisoned({Dm}, pdt, dev, &ctx),
          poisoned(r.u.shape, dt, dev, &ctx),          poisoned({Dm}, pdt, dev, &ctx),
          poisoned({sequences, Dm, N}, pdt, dev, &ctx)};
}

class SelectiveScanPacked : public testing::TestWithParam<std::tuple<PackedCase, Backend>> {};

// A packed batch against the reference on each sequence alone (every optional input given);
// then the op on each sequence alone, and on a right-padded rectangular batch (dout = 0 in the
// padding, no dlast_state), gives the same bits.
TEST_P(SelectiveScanPacked, MatchesPerSequenceReferenceAndIsBatchInvariant) {
  const auto& [c, backend] = GetParam();
  LONGCTX_SKIP_IF_UNAVAILABLE(backend.device);
  Context& ctx = context_for(backend.device);
  DeterministicScope deterministic(ctx);
  const Device dev = backend.device;
  const DType dt = backend.dtype, pdt = stat_dtype(dt);
  const int64_t Dm = 6, N = 4, G = 2, S = int64_t(c.lengths.size());
  const std::vector<int32_t> cu = cu_seqlens_of(c.lengths);
  const int64_t T = cu.back();
  Rng rng(406);
  ref::SelectiveScanRefs r = make_inputs({"packed", 1, Dm, N, G, T, true}, dt, rng);
  r.h0 = rounded(random_ref({S, Dm, N}, rng), pdt);
  SelectiveScanInputs in = to_device(r, dt, dev);
  in.cu_seqlens = int_tensor(cu, {S + 1}, dev);
  const SelectiveScanParams params{r.delta_softplus};
  const Ref dout = rounded(random_ref(r.u.shape, rng), dt);
  const Ref dlast = rounded(random_ref({S, Dm, N}, rng), pdt);

  Tensor out = poisoned(r.u.shape, dt, dev, &ctx), last = poisoned({S, Dm, N}, pdt, dev, &ctx);
  selective_scan_fwd(ctx, out, last, in, params);
  const SelectiveScanGrads g = poisoned_grads(r, S, dt, dev, ctx);
  selective_scan_bwd(ctx, g, from_ref(dout, dt, dev), from_ref(dlast, pdt, dev), in, params);

  // The reference per sequence, assembled: per-sequence tensors pasted, parameter grads summed.
  with_naive_type(dt, [&](auto tag) {
    using S_ = typename decltype(tag)::type;
    ref::SelectiveScanOut exact{Ref(r.u.shape), Ref({S, Dm, N})}, naive = exact;
    ref::SelectiveScanGradRefs ge, gn;
    for (auto* gr : {&ge, &gn}) {
      gr->du = gr->ddelta = gr->dz = Ref(r.u.shape);
      gr->dB = gr->dC = Ref(r.B.shape);
      gr->dA = Ref(r.A.shape);
      gr->dD = gr->ddelta_bias = Ref({Dm});
      gr->dh0 = Ref({S, Dm, N});
    }
    for (int64_t n = 0; n < S; ++n) {
      const int64_t b = cu[size_t(n)], e = cu[size_t(n) + 1];
      const auto rn = sequence_refs(r, n, b, e);
      const Ref doutn = slice(dout, 2, b, e), dlastn = slice(dlast, 0, n, n + 1);
      const auto fe = ref::selective_scan_fwd<Oracle>(rn, no_round);
      const auto fn = ref::selective_scan_fwd<S_>(rn, rounding_for(dt));
      const auto be = ref::selective_scan_bwd<Oracle>(doutn, dlastn, rn, no_round);
      const auto bn = ref::selective_scan_bwd<S_>(doutn, dlastn, rn, rounding_for(dt));
      for (auto [f, gr, o, gg] : {std::tuple{&fe, &ge, &exact, &be}, {&fn, &gn, &naive, &bn}}) {
        paste(o->last_state, 0, n, f->last_state);
        paste(gr->dh0, 0, n, gg->dh0);
        if (e == b) continue;  // (the reference leaves an empty sequence's dz shapeless)
        paste(o->out, 2, b, f->out);
        paste(gr->du, 2, b, gg->du);
        paste(gr->ddelta, 2, b, gg->ddelta);
        paste(gr->dz, 2, b, gg->dz);
        paste(gr->dB, 3, b, gg->dB);
        paste(gr->dC, 3, b, gg->dC);
        for (int64_t i = 0; i < Dm * N; ++i) gr->dA[i] += gg->dA[i];
        for (int64_t i = 0; i < Dm; ++i) {
          gr->dD[i] += gg->dD[i];
          gr->ddelta_bias[i] += gg->ddelta_bias[i];
        }
      }
    }
    expect_close_2x(out, exact.out, naive.out, dt, "out");
    expect_close_2x(last, exact.last_state, naive.last_state, pdt, "last_state");
    expect_close_2x(g.du, ge.du, gn.du, dt, "du");
    expect_close_2x(g.ddelta, ge.ddelta, gn.ddelta, dt, "ddelta");
    expect_close_2x(g.dz, ge.dz, gn.dz, dt, "dz");
    expect_close_2x(g.dB, ge.dB, gn.dB, dt, "dB");
    expect_close_2x(g.dC, ge.dC, gn.dC, dt, "dC");
    expect_close_2x(g.dh0, ge.dh0, gn.dh0, pdt, "dh0");
    expect_close_2x(g.dA, ge.dA, gn.dA, pdt, "dA");
    expect_close_2x(g.dD, ge.dD, gn.dD, pdt, "dD");
    expect_close_2x(g.ddelta_bias, ge.ddelta_bias, gn.ddelta_bias, pdt, "ddelta_bias");
  });

  // Alone: each sequence as a batch of one, with dlast_state.
  const Ref got_out = to_ref(out), got_last = to_ref(last), got_du = to_ref(g.du),
            got_dB = to_ref(g.dB), got_dh0 = to_ref(g.dh0);
  for (int64_t n = 0; n < S; ++n) {
    SCOPED_TRACE("sequence " + std::to_string(n));
    const int64_t b = cu[size_t(n)], e = cu[size_t(n) + 1];
    if (e == b) continue;  // its states (h0 through, dlast_state back) are checked above
    const auto rn = sequence_refs(r, n, b, e);
    const SelectiveScanInputs inn = to_device(rn, dt, dev);
    Tensor o = poisoned(rn.u.shape, dt, dev, &ctx), l = poisoned({1, Dm, N}, pdt, dev, &ctx);
    selective_scan_fwd(ctx, o, l, inn, params);
    const SelectiveScanGrads gg = poisoned_grads(rn, 1, dt, dev, ctx);
    selective_scan_bwd(ctx, gg, from_ref(slice(dout, 2, b, e), dt, dev),
                       from_ref(slice(dlast, 0, n, n + 1), pdt, dev), inn, params);
    EXPECT_EQ(max_abs_diff(to_ref(o), slice(got_out, 2, b, e)), 0.0) << "out alone";
    EXPECT_EQ(max_abs_diff(to_ref(l), slice(got_last, 0, n, n + 1)), 0.0) << "last alone";
    EXPECT_EQ(max_abs_diff(to_ref(gg.du), slice(got_du, 2, b, e)), 0.0) << "du alone";
    EXPECT_EQ(max_abs_diff(to_ref(gg.dB), slice(got_dB, 3, b, e)), 0.0) << "dB alone";
    EXPECT_EQ(max_abs_diff(to_ref(gg.dh0), slice(got_dh0, 0, n, n + 1)), 0.0) << "dh0 alone";
  }

  // Padded: the sequences right-padded into a rectangular batch; packed and padded both without
  // dlast_state, and dout = 0 in the padding, so no gradient enters from the padded steps.
  const int64_t Tmax = *std::max_element(c.lengths.begin(), c.lengths.end());
  ref::SelectiveScanRefs p = r;
  p.u = p.delta = p.z = Ref({S, Dm, Tmax}, 0.5);
  p.B = p.C = Ref({S, G, N, Tmax}, 0.5);
  Ref pdout({S, Dm, Tmax}, 0.0);
  for (int64_t n = 0; n < S; ++n) {
    const int64_t b = cu[size_t(n)], len = c.lengths[size_t(n)];
    using Copy = std::tuple<Ref*, const Ref*, int64_t>;  // padded, packed, rows per sequence
    for (const auto& [dst, src, rows] :
         {Copy{&p.u, &r.u, Dm}, Copy{&p.delta, &r.delta, Dm}, Copy{&p.z, &r.z, Dm},
          Copy{&p.B, &r.B, G * N}, Copy{&p.C, &r.C, G * N}, Copy{&pdout, &dout, Dm}})
      for (int64_t row = 0; row < rows; ++row)
        for (int64_t t = 0; t < len; ++t)
          (*dst)[(n * rows + row) * Tmax + t] = (*src)[row * T + b + t];
  }
  const SelectiveScanInputs pin = to_device(p, dt, dev);
  Tensor po = poisoned(p.u.shape, dt, dev, &ctx);
  selective_scan_fwd(ctx, po, poisoned({S, Dm, N}, pdt, dev, &ctx), pin, params);
  const SelectiveScanGrads pg = poisoned_grads(p, S, dt, dev, ctx);
  selective_scan_bwd(ctx, pg, from_ref(pdout, dt, dev), Tensor(), pin, params);
  const SelectiveScanGrads g2 = poisoned_grads(r, S, dt, dev, ctx);
  selective_scan_bwd(ctx, g2, from_ref(dout, dt, dev), Tensor(), in, params);
  const Ref ppo = to_ref(po), pdu = to_ref(pg.du), pdB = to_ref(pg.dB), pdh0 = to_ref(pg.dh0);
  const Ref du2 = to_ref(g2.du), dB2 = to_ref(g2.dB);
  for (int64_t n = 0; n < S; ++n) {
    SCOPED_TRACE("padded row " + std::to_string(n));
    const int64_t b = cu[size_t(n)], len = c.lengths[size_t(n)];
    auto row = [&](const Ref& x, int dim) { return slice(slice(x, 0, n, n + 1), dim, 0, len); };
    EXPECT_EQ(max_abs_diff(row(ppo, 2), slice(got_out, 2, b, b + len)), 0.0) << "out padded";
    EXPECT_EQ(max_abs_diff(row(pdu, 2), slice(du2, 2, b, b + len)), 0.0) << "du padded";
    EXPECT_EQ(max_abs_diff(row(pdB, 3), slice(dB2, 3, b, b + len)), 0.0) << "dB padded";
  }
  EXPECT_EQ(max_abs_diff(pdh0, to_ref(g2.dh0)), 0.0) << "dh0 padded";
}

INSTANTIATE_TEST_SUITE_P(Cases, SelectiveScanPacked,
                         testing::Combine(testing::ValuesIn(packed_cases()),
                                          testing::ValuesIn(all_backends())),
                         case_name<PackedCase>);

TEST(SelectiveScanReference, GradientsMatchFiniteDifferences) {
  Rng rng(13);
  const SelectiveScanCase c{"fd", 2, 4, 3, 2, 5, true};
  for (const bool softplus : {true, false}) {
    ref::SelectiveScanRefs r = make_inputs(c, DType::f64, rng);
    r.delta_softplus = softplus;
    if (!softplus) r.delta = random_ref(r.u.shape, rng, 0.05, 1);  // decays below 1
    const Ref dout = random_ref(r.u.shape, rng), dlast = random_ref(r.h0.shape, rng);
    auto loss_for = [&](int which) {
      return [&, which](const std::vector<Ref>& x) {
        ref::SelectiveScanRefs q = r;
        Ref* fields[] = {&q.u, &q.delta, &q.A, &q.B, &q.C, &q.D, &q.z, &q.delta_bias, &q.h0};
        *fields[which] = x[0];
        const auto o = ref::selective_scan_fwd<double>(q, no_round);
        return dot(o.out, dout) + dot(o.last_state, dlast);
      };
    };
    const auto g = ref::selective_scan_bwd<double>(dout, dlast, r, no_round);
    const std::pair<const Ref*, const Ref*> pairs[] = {
        {&r.u, &g.du},  {&r.delta, &g.ddelta}, {&r.A, &g.dA}, {&r.B, &g.dB},
        {&r.C, &g.dC},  {&r.D, &g.dD},         {&r.z, &g.dz}, {&r.delta_bias, &g.ddelta_bias},
        {&r.h0, &g.dh0}};
    for (int i = 0; i < 9; ++i)
      EXPECT_LE(
          max_abs_diff(*pairs[i].second, finite_difference(loss_for(i), {*pairs[i].first}, 0)),
          1e-7)
          << "input " << i << (softplus ? " (softplus)" : "");
  }
}

TEST(SelectiveScanBadInput, NamesTheArgument) {
  Context& ctx = context_for(Device::cpu());
  const DType f32 = DType::f32;
  auto z = [&](const Shape& s, DType t = DType::f32) { return Tensor::zeros(s, t); };
  SelectiveScanInputs in{z({2, 6, 5}), z({2, 6, 5}), z({6, 4}), z({2, 3, 4, 5}), z({2, 3, 4, 5})};
  Tensor out = Tensor::empty({2, 6, 5}, f32), last = Tensor::empty({2, 6, 4}, f32);
  {
    SelectiveScanInputs bad = in;
    bad.B = bad.C = z({2, 4, 4, 5});
    EXPECT_LONGCTX_ERROR(selective_scan_fwd(ctx, out, last, bad), "selective_scan_fwd", "'B'",
                         "G = 4", "must divide the channel count Dm = 6");
  }
  {
    SelectiveScanInputs bad = in;
    bad.A = z({6, 257});
    EXPECT_LONGCTX_ERROR(selective_scan_fwd(ctx, out, last, bad), "'A'", "N <= 256", "got N = 257");
  }
  {
    SelectiveScanInputs bad = in;
    bad.A = z({6, 4}, DType::f64);
    EXPECT_LONGCTX_ERROR(selective_scan_fwd(ctx, out, last, bad), "'A'", "expected dtype f32");
  }
  {
    SelectiveScanInputs bad = in;
    bad.D = z({5});
    EXPECT_LONGCTX_ERROR(selective_scan_fwd(ctx, out, last, bad), "'D'", "expected shape (6,)");
  }
  EXPECT_LONGCTX_ERROR(selective_scan_fwd(ctx, in.u, last, in), "'out'", "overlaps input 'u'");
  SelectiveScanInputs with_d = in;
  with_d.D = z({6});
  SelectiveScanGrads g{z({2, 6, 5}), z({2, 6, 5}), z({6, 4}), z({2, 3, 4, 5}), z({2, 3, 4, 5})};
  EXPECT_LONGCTX_ERROR(selective_scan_bwd(ctx, g, z({2, 6, 5}), Tensor(), with_d),
                       "selective_scan_bwd", "'dD'", "required because 'D' was given");
  Tensor state = z({2, 6, 4});
  EXPECT_LONGCTX_ERROR(selective_state_update(ctx, z({2, 6}), state, z({2, 6}), z({2, 6}), in.A,
                                              z({2, 3, 9}), z({2, 3, 4})),
                       "selective_state_update", "'B'", "expected shape (2, 3, 4)");
  SelectiveScanInputs packed{z({1, 6, 5}), z({1, 6, 5}), z({6, 4}), z({1, 3, 4, 5}),
                             z({1, 3, 4, 5})};
  packed.cu_seqlens = int_tensor({0, 2, 5}, {3});
  EXPECT_LONGCTX_ERROR(selective_scan_fwd(ctx, z({1, 6, 5}), Tensor::empty({1, 6, 4}, f32), packed),
                       "'last_state'", "expected shape (2, 6, 4)");
  packed.cu_seqlens = int_tensor({0, 2, 4}, {3});
  EXPECT_LONGCTX_ERROR(selective_scan_fwd(ctx, z({1, 6, 5}), Tensor::empty({2, 6, 4}, f32), packed),
                       "'cu_seqlens'", "must end at the packed length T = 5");
  in.cu_seqlens = int_tensor({0, 5}, {2});
  EXPECT_LONGCTX_ERROR(selective_scan_fwd(ctx, out, last, in), "'u'",
                       "batch dimension 1 with cu_seqlens");
}

}  // namespace
}  // namespace longctx::test
