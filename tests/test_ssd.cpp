// ssd (Mamba-2): every case x backend against the sequential reference (forward, and every
// gradient with and without dfinal_states), across chunk sizes and lengths that are not
// multiples of them (the CUDA chunk is 64 whatever chunk_size says; the CUDA kernels work on
// tiles of 64 channels p and 64 states n), each optional input present and absent; the backward
// is bitwise reproducible; decode steps equal the full scan; SSD equals the selective scan when P =
// 1 and A is shared across N; a 64k-token scan with decays near 0 and near 1; the reference against
// finite differences; bad inputs.
#include "harness.h"
#include "longctx/ops/selective_scan.h"
#include "longctx/ops/ssd.h"
#include "reference/selective_scan.h"
#include "reference/ssd.h"

namespace longctx::test {
namespace {

// Optional inputs an `optional` case leaves out.
enum Drop : unsigned { kNone = 0, kDropD = 1, kDropZ = 2, kDropBias = 4, kDropH0 = 8 };

struct SSDCase {
  std::string name;
  int64_t B, T, H, P, N, G, chunk;
  bool optional;  // D, z, dt_bias, initial_states and dt_softplus
  bool extreme_decays = false;
  unsigned drop = kNone;
};
LONGCTX_PRINTS_AS_NAME(SSDCase)

// mamba2-130m: 24 heads of head dim 64, d_state 128, one group, chunk 256; scaled down.
const std::vector<SSDCase> kCases = {
    {"mamba2_130m_scaled", 2, 100, 4, 16, 16, 1, 32, true},
    {"mamba2_headdim_64", 1, 70, 2, 64, 32, 2, 64, false},
    {"groups_3_of_6_heads", 1, 33, 6, 4, 8, 3, 16, true},
    {"chunk_1", 1, 9, 2, 3, 4, 1, 1, true},
    {"chunk_longer_than_T", 2, 50, 2, 5, 6, 1, 256, true},
    {"state_256", 1, 20, 2, 4, 256, 1, 8, false},
    {"decays_near_0_and_1_64k", 1, 65536, 2, 2, 4, 1, 64, true, true},
    // Mixed optional inputs; P = 40 is one full and one partial tile of 32 channels on CUDA.
    {"gate_and_bias_without_skip_and_h0", 2, 45, 4, 40, 16, 2, 16, true, false, kDropD | kDropH0},
    {"skip_and_h0_without_gate_and_bias", 1, 64, 2, 8, 8, 1, 32, true, false, kDropZ | kDropBias},
    // P = 80 is one full and one partial tile of 64 channels, T = 130 two full chunks of 64 and a
    // partial one.
    {"tensor_core_tiles_p80_t130", 1, 130, 2, 80, 48, 1, 64, true},
    // B = 1 across many chunks: 33 CUDA chunks (the last partial), 16 CPU chunks of 128.
    {"b1_33_chunks_t2100", 1, 2100, 2, 4, 8, 1, 128, true},
    {"b1_16_chunks_t1000", 1, 1000, 2, 8, 16, 1, 64, true},
    // mamba2-style heads of 64 with 128 states in 2 groups of 2 heads: two n-tiles on CUDA, dB and
    // dC summed over the heads of a group.
    {"b1_heads_4_groups_2_p64_n128", 1, 150, 4, 64, 128, 2, 64, true},
    // N = 256 (four n-tiles) with P = 72 (two p-tiles) and every optional input.
    {"state_256_p72_all_inputs", 1, 90, 2, 72, 256, 1, 64, true},
    // The CPU backward's recomputed chunk states in two segments (138 chunks of 8; a head's state
    // is 8192 elements, and its budget of 2^20 holds 128 chunks).
    {"state_segments_t1100_chunk8", 1, 1100, 2, 64, 128, 1, 8, true},
    // No tokens: the final state is the initial state, and its gradient passes straight back.
    {"empty_sequence", 2, 0, 2, 4, 8, 1, 16, true},
    // The CPU backward runs chunked in f32 when P * N > 64 (else the reverse scan), in chunks of
    // at most 32 tokens here: the edges above again with states of 128 entries.
    {"chunk_1_p8_n16", 1, 9, 2, 8, 16, 1, 1, true},
    {"shorter_than_the_backward_chunk_p8_n16", 2, 20, 2, 8, 16, 1, 256, true},
    {"decays_near_0_and_1_16k_p8_n16", 1, 16384, 2, 8, 16, 1, 64, true, true},
    {"groups_3_of_6_heads_p8_n16", 1, 33, 6, 8, 16, 3, 16, true},
    {"empty_sequence_p8_n16", 2, 0, 2, 8, 16, 1, 16, true},
};

SSDInputs to_device(const ref::SSDRefs& r, DType dt, Device dev) {
  const DType pdt = stat_dtype(dt);
  auto opt = [&](const Ref& x, DType t) { return x.numel() ? from_ref(x, t, dev) : Tensor(); };
  return {from_ref(r.x, dt, dev), from_ref(r.dt, dt, dev), from_ref(r.A, pdt, dev),
          from_ref(r.B, dt, dev), from_ref(r.C, dt, dev),  opt(r.D, pdt),
          opt(r.z, dt),           opt(r.dt_bias, pdt),     opt(r.initial_states, pdt)};
}

ref::SSDRefs make_inputs(const SSDCase& c, DType dt, Rng& rng) {
  const DType pdt = stat_dtype(dt);
  ref::SSDRefs r;
  r.dt_softplus = c.optional && !c.extreme_decays;
  r.x = rounded(random_ref({c.B, c.T, c.H, c.P}, rng), dt);
  r.dt = rounded(r.dt_softplus ? random_ref({c.B, c.T, c.H}, rng, -3, 0.5)
                               : random_ref({c.B, c.T, c.H}, rng, 0.05, 0.5),
                 dt);
  r.A = random_ref({c.H}, rng, -2, -0.1);
  if (c.extreme_decays)  // exp(dt * A) from ~e^-50 (even heads) to ~1 - 1e-5 (odd heads)
    for (int64_t h = 0; h < c.H; ++h)
      r.A[h] = h % 2 ? -rng.uniform(1e-5, 1e-4) : -rng.uniform(100, 200);
  r.A = rounded(r.A, pdt);
  r.B = rounded(random_ref({c.B, c.T, c.G, c.N}, rng), dt);
  r.C = rounded(random_ref({c.B, c.T, c.G, c.N}, rng), dt);
  if (c.optional) {
    r.D = rounded(random_ref({c.H}, rng), pdt);
    r.z = rounded(random_ref({c.B, c.T, c.H, c.P}, rng, -2, 2), dt);
    r.dt_bias = rounded(random_ref({c.H}, rng, 0, 0.3), pdt);
    r.initial_states = rounded(random_ref({c.B, c.H, c.P, c.N}, rng), pdt);
    if (c.drop & kDropD) r.D = Ref();
    if (c.drop & kDropZ) r.z = Ref();
    if (c.drop & kDropBias) r.dt_bias = Ref();
    if (c.drop & kDropH0) r.initial_states = Ref();
  }
  return r;
}

class SSD : public testing::TestWithParam<std::tuple<SSDCase, Backend>> {};

TEST_P(SSD, MatchesReference) {
  const auto& [c, backend] = GetParam();
  LONGCTX_SKIP_IF_UNAVAILABLE(backend.device);
  Context& ctx = context_for(backend.device);
  const Device dev = backend.device;
  const DType dt = backend.dtype, pdt = stat_dtype(dt);
  Rng rng(505);
  const ref::SSDRefs r = make_inputs(c, dt, rng);
  const SSDInputs in = to_device(r, dt, dev);
  const SSDParams params{c.chunk, r.dt_softplus};
  const Shape state_shape = {c.B, c.H, c.P, c.N};

  Tensor out = poisoned(r.x.shape, dt, dev, &ctx), fin = poisoned(state_shape, pdt, dev, &ctx);
  ssd_fwd(ctx, out, fin, in, params);
  const auto exact = ref::ssd_fwd<Oracle>(r, no_round);
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    const auto naive = ref::ssd_fwd<S>(r, rounding_for(dt));
    expect_close_2x(out, exact.out, naive.out, dt, "out");
    expect_close_2x(fin, exact.final_states, naive.final_states, pdt, "final_states");
  });

  const Ref dout = rounded(random_ref(r.x.shape, rng), dt);
  const Ref dfin = rounded(random_ref(state_shape, rng), pdt);
  for (const bool with_dfin : {true, false}) {
    SCOPED_TRACE(with_dfin ? "with dfinal_states" : "without dfinal_states");
    auto maybe = [&](const Tensor& input, const Shape& shape, DType t) {
      return input.defined() ? poisoned(shape, t, dev, &ctx) : Tensor();
    };
    SSDGrads g{poisoned(r.x.shape, dt, dev, &ctx),
               poisoned(r.dt.shape, dt, dev, &ctx),
               poisoned(r.A.shape, pdt, dev, &ctx),
               poisoned(r.B.shape, dt, dev, &ctx),
               poisoned(r.C.shape, dt, dev, &ctx),
               maybe(in.D, {c.H}, pdt),
               maybe(in.z, r.x.shape, dt),
               maybe(in.dt_bias, {c.H}, pdt),
               maybe(in.initial_states, state_shape, pdt)};
    ssd_bwd(ctx, g, from_ref(dout, dt, dev), with_dfin ? from_ref(dfin, pdt, dev) : Tensor(), in,
            params);
    const Ref df = with_dfin ? dfin : Ref();
    const auto e = ref::ssd_bwd<Oracle>(dout, df, r, no_round);
    with_naive_type(dt, [&](auto tag) {
      using S = typename decltype(tag)::type;
      const auto n = ref::ssd_bwd<S>(dout, df, r, rounding_for(dt));
      expect_close_2x(g.dx, e.dx, n.dx, dt, "dx");
      expect_close_2x(g.ddt, e.ddt, n.ddt, dt, "ddt");
      expect_close_2x(g.dA, e.dA, n.dA, pdt, "dA");
      expect_close_2x(g.dB, e.dB, n.dB, dt, "dB");
      expect_close_2x(g.dC, e.dC, n.dC, dt, "dC");
      if (in.D.defined()) expect_close_2x(g.dD, e.dD, n.dD, pdt, "dD");
      if (in.z.defined()) expect_close_2x(g.dz, e.dz, n.dz, dt, "dz");
      if (in.dt_bias.defined())
        expect_close_2x(g.ddt_bias, e.ddt_bias, n.ddt_bias, pdt, "ddt_bias");
      if (in.initial_states.defined())
        expect_close_2x(g.dinitial_states, e.dinitial_states, n.dinitial_states, pdt,
                        "dinitial_states");
    });
  }
}

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

// Sequence [begin, end) of a packed batch's refs, with its initial state row n, as a batch of one.
ref::SSDRefs sequence_refs(const ref::SSDRefs& r, int64_t n, int64_t begin, int64_t end) {
  ref::SSDRefs q = r;
  for (auto [dst, src] :
       {std::pair{&q.x, &r.x}, {&q.dt, &r.dt}, {&q.B, &r.B}, {&q.C, &r.C}, {&q.z, &r.z}})
    *dst = slice(*src, 1, begin, end);
  q.initial_states = slice(r.initial_states, 0, n, n + 1);
  return q;
}

SSDGrads poisoned_grads(const ref::SSDRefs& r, int64_t sequences, DType dt, Device dev,
                        Context& ctx) {
  const DType pdt = stat_dtype(dt);
  const int64_t H = r.x.shape[2], P = r.x.shape[3], N = r.B.shape[3];
  return {poisoned(r.x.shape, dt, dev, &ctx),
          poisoned(r.dt.shape, dt, dev, &ctx),
          poisoned({H}, pdt, dev, &ctx),
          poisoned(r.B.shape, dt, dev, &ctx),
          poisoned(r.C.shape, dt, dev, &ctx),
          poisoned({H}, pdt, dev, &ctx),
          poisoned(r.x.shape, dt, dev, &ctx),
          poisoned({H}, pdt, dev, &ctx),
          poisoned({sequences, H, P, N}, pdt, dev, &ctx)};
}

class SSDPacked : public testing::TestWithParam<std::tuple<PackedCase, Backend>> {};

// A packed batch (every optional input given, 2 groups of 2 heads) against the reference run on
// each sequence alone; then the op on each sequence alone gives the same bits, forward and
// backward. (Chunks start at each sequence's first step. A right-padded rectangular batch is not
// bitwise the same: its chunk products have other shapes, and a GEMM's rounding depends on its
// shape.)
TEST_P(SSDPacked, MatchesPerSequenceReferenceAndIsBatchInvariant) {
  const auto& [c, backend] = GetParam();
  LONGCTX_SKIP_IF_UNAVAILABLE(backend.device);
  Context& ctx = context_for(backend.device);
  DeterministicScope deterministic(ctx);
  const Device dev = backend.device;
  const DType dt = backend.dtype, pdt = stat_dtype(dt);
  const int64_t H = 4, P = 8, N = 16, G = 2, S = int64_t(c.lengths.size());
  const std::vector<int32_t> cu = cu_seqlens_of(c.lengths);
  const int64_t T = cu.back();
  Rng rng(509);
  ref::SSDRefs r = make_inputs({"packed", 1, T, H, P, N, G, 64, true}, dt, rng);
  r.initial_states = rounded(random_ref({S, H, P, N}, rng), pdt);
  SSDInputs in = to_device(r, dt, dev);
  in.cu_seqlens = int_tensor(cu, {S + 1}, dev);
  const SSDParams params{64, r.dt_softplus};
  const Ref dout = rounded(random_ref(r.x.shape, rng), dt);
  const Ref dfin = rounded(random_ref({S, H, P, N}, rng), pdt);

  Tensor out = poisoned(r.x.shape, dt, dev, &ctx), fin = poisoned({S, H, P, N}, pdt, dev, &ctx);
  ssd_fwd(ctx, out, fin, in, params);
  const SSDGrads g = poisoned_grads(r, S, dt, dev, ctx);
  ssd_bwd(ctx, g, from_ref(dout, dt, dev), from_ref(dfin, pdt, dev), in, params);

  with_naive_type(dt, [&](auto tag) {
    using S_ = typename decltype(tag)::type;
    ref::SSDOut exact{Ref(r.x.shape), Ref({S, H, P, N})}, naive = exact;
    ref::SSDGradRefs ge, gn;
    for (auto* gr : {&ge, &gn}) {
      gr->dx = gr->dz = Ref(r.x.shape);
      gr->ddt = Ref(r.dt.shape);
      gr->dB = gr->dC = Ref(r.B.shape);
      gr->dA = gr->dD = gr->ddt_bias = Ref({H});
      gr->dinitial_states = Ref({S, H, P, N});
    }
    for (int64_t n = 0; n < S; ++n) {
      const int64_t b = cu[size_t(n)], e = cu[size_t(n) + 1];
      const auto rn = sequence_refs(r, n, b, e);
      const Ref doutn = slice(dout, 1, b, e), dfinn = slice(dfin, 0, n, n + 1);
      const auto fe = ref::ssd_fwd<Oracle>(rn, no_round);
      const auto fv = ref::ssd_fwd<S_>(rn, rounding_for(dt));
      const auto be = ref::ssd_bwd<Oracle>(doutn, dfinn, rn, no_round);
      const auto bv = ref::ssd_bwd<S_>(doutn, dfinn, rn, rounding_for(dt));
      for (auto [f, gr, o, gg] : {std::tuple{&fe, &ge, &exact, &be}, {&fv, &gn, &naive, &bv}}) {
        paste(o->final_states, 0, n, f->final_states);
        paste(gr->dinitial_states, 0, n, gg->dinitial_states);
        for (int64_t h = 0; h < H; ++h) {
          gr->dA[h] += gg->dA[h];
          gr->dD[h] += gg->dD[h];
          gr->ddt_bias[h] += gg->ddt_bias[h];
        }
        if (e == b) continue;  // (the reference leaves an empty sequence's gradients shapeless)
        paste(o->out, 1, b, f->out);
        paste(gr->dx, 1, b, gg->dx);
        paste(gr->dz, 1, b, gg->dz);
        paste(gr->ddt, 1, b, gg->ddt);
        paste(gr->dB, 1, b, gg->dB);
        paste(gr->dC, 1, b, gg->dC);
      }
    }
    expect_close_2x(out, exact.out, naive.out, dt, "out");
    expect_close_2x(fin, exact.final_states, naive.final_states, pdt, "final_states");
    expect_close_2x(g.dx, ge.dx, gn.dx, dt, "dx");
    expect_close_2x(g.ddt, ge.ddt, gn.ddt, dt, "ddt");
    expect_close_2x(g.dz, ge.dz, gn.dz, dt, "dz");
    expect_close_2x(g.dB, ge.dB, gn.dB, dt, "dB");
    expect_close_2x(g.dC, ge.dC, gn.dC, dt, "dC");
    expect_close_2x(g.dinitial_states, ge.dinitial_states, gn.dinitial_states, pdt,
                    "dinitial_states");
    expect_close_2x(g.dA, ge.dA, gn.dA, pdt, "dA");
    expect_close_2x(g.dD, ge.dD, gn.dD, pdt, "dD");
    expect_close_2x(g.ddt_bias, ge.ddt_bias, gn.ddt_bias, pdt, "ddt_bias");
  });

  const Ref got_out = to_ref(out), got_fin = to_ref(fin), got_dx = to_ref(g.dx),
            got_ddt = to_ref(g.ddt), got_dB = to_ref(g.dB), got_dinit = to_ref(g.dinitial_states);
  for (int64_t n = 0; n < S; ++n) {
    SCOPED_TRACE("sequence " + std::to_string(n));
    const int64_t b = cu[size_t(n)], e = cu[size_t(n) + 1];
    if (e == b) continue;  // its states (through, and back) are checked above
    const auto rn = sequence_refs(r, n, b, e);
    const SSDInputs inn = to_device(rn, dt, dev);
    Tensor o = poisoned(rn.x.shape, dt, dev, &ctx), f = poisoned({1, H, P, N}, pdt, dev, &ctx);
    ssd_fwd(ctx, o, f, inn, params);
    const SSDGrads gg = poisoned_grads(rn, 1, dt, dev, ctx);
    ssd_bwd(ctx, gg, from_ref(slice(dout, 1, b, e), dt, dev),
            from_ref(slice(dfin, 0, n, n + 1), pdt, dev), inn, params);
    EXPECT_EQ(max_abs_diff(to_ref(o), slice(got_out, 1, b, e)), 0.0) << "out alone";
    EXPECT_EQ(max_abs_diff(to_ref(f), slice(got_fin, 0, n, n + 1)), 0.0) << "final alone";
    EXPECT_EQ(max_abs_diff(to_ref(gg.dx), slice(got_dx, 1, b, e)), 0.0) << "dx alone";
    EXPECT_EQ(max_abs_diff(to_ref(gg.ddt), slice(got_ddt, 1, b, e)), 0.0) << "ddt alone";
    EXPECT_EQ(max_abs_diff(to_ref(gg.dB), slice(got_dB, 1, b, e)), 0.0) << "dB alone";
    EXPECT_EQ(max_abs_diff(to_ref(gg.dinitial_states), slice(got_dinit, 0, n, n + 1)), 0.0)
        << "dinitial_states alone";
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, SSDPacked,
                         testing::Combine(testing::ValuesIn(packed_cases()),
                                          testing::ValuesIn(all_backends())),
                         case_name<PackedCase>);

TEST(SSDPackedBadInput, NamesTheRule) {
  Context& ctx = context_for(Device::cpu());
  auto z = [&](const Shape& s) { return Tensor::zeros(s, DType::f32); };
  SSDInputs in{z({1, 6, 2, 4}), z({1, 6, 2}), z({2}), z({1, 6, 1, 8}), z({1, 6, 1, 8})};
  in.cu_seqlens = int_tensor({0, 2, 6}, {3});
  EXPECT_LONGCTX_ERROR(ssd_fwd(ctx, z({1, 6, 2, 4}), z({1, 2, 4, 8}), in), "ssd_fwd",
                       "'final_states'", "expected shape (2, 2, 4, 8)");
  in.cu_seqlens = int_tensor({0, 7}, {2});
  EXPECT_LONGCTX_ERROR(ssd_fwd(ctx, z({1, 6, 2, 4}), z({1, 2, 4, 8}), in), "'cu_seqlens'",
                       "must end at the packed length T = 6", "cu_seqlens[1] = 7");
}

// Two backward runs on the same inputs agree bit for bit (no atomics, fixed-order sums).
TEST_P(SSD, BackwardIsBitwiseReproducible) {
  const auto& [c, backend] = GetParam();
  LONGCTX_SKIP_IF_UNAVAILABLE(backend.device);
  if (c.T > 4096) GTEST_SKIP() << "checked on the cases up to 4096 steps";
  Context& ctx = context_for(backend.device);
  const Device dev = backend.device;
  const DType dt = backend.dtype, pdt = stat_dtype(dt);
  Rng rng(508);
  const ref::SSDRefs r = make_inputs(c, dt, rng);
  const SSDInputs in = to_device(r, dt, dev);
  const Shape state_shape = {c.B, c.H, c.P, c.N};
  const Tensor dout = from_ref(rounded(random_ref(r.x.shape, rng), dt), dt, dev);
  const Tensor dfin = from_ref(rounded(random_ref(state_shape, rng), pdt), pdt, dev);
  auto run = [&] {
    auto maybe = [&](const Tensor& input, const Shape& shape, DType t) {
      return input.defined() ? poisoned(shape, t, dev, &ctx) : Tensor();
    };
    SSDGrads g{poisoned(r.x.shape, dt, dev, &ctx),
               poisoned(r.dt.shape, dt, dev, &ctx),
               poisoned(r.A.shape, pdt, dev, &ctx),
               poisoned(r.B.shape, dt, dev, &ctx),
               poisoned(r.C.shape, dt, dev, &ctx),
               maybe(in.D, {c.H}, pdt),
               maybe(in.z, r.x.shape, dt),
               maybe(in.dt_bias, {c.H}, pdt),
               maybe(in.initial_states, state_shape, pdt)};
    ssd_bwd(ctx, g, dout, dfin, in, {c.chunk, r.dt_softplus});
    return g;
  };
  const SSDGrads a = run(), b = run();
  const std::pair<const Tensor*, const Tensor*> pairs[] = {
      {&a.dx, &b.dx},
      {&a.ddt, &b.ddt},
      {&a.dA, &b.dA},
      {&a.dB, &b.dB},
      {&a.dC, &b.dC},
      {&a.dD, &b.dD},
      {&a.dz, &b.dz},
      {&a.ddt_bias, &b.ddt_bias},
      {&a.dinitial_states, &b.dinitial_states}};
  for (const auto& [x, y] : pairs)
    if (x->defined()) expect_equal(*x, *y, "ssd_bwd gradient");
}

// T decode steps from the initial state produce the full scan's outputs and final state.
TEST_P(SSD, DecodeStepsEqualTheScan) {
  const auto& [c, backend] = GetParam();
  LONGCTX_SKIP_IF_UNAVAILABLE(backend.device);
  if (c.T > 80) GTEST_SKIP() << "decode steps are checked on the short cases";
  Context& ctx = context_for(backend.device);
  const Device dev = backend.device;
  const DType dt = backend.dtype, pdt = stat_dtype(dt);
  Rng rng(506);
  const ref::SSDRefs r = make_inputs(c, dt, rng);
  const SSDInputs in = to_device(r, dt, dev);
  Tensor state = r.initial_states.numel() ? from_ref(r.initial_states, pdt, dev)
                                          : Tensor::zeros({c.B, c.H, c.P, c.N}, pdt, dev, &ctx);
  auto at = [&](const Ref& x, int64_t t) {  // (B, T, ...) -> (B, ...)
    if (!x.numel()) return Tensor();
    Shape s = x.shape;
    s.erase(s.begin() + 1);
    Ref slice(s);
    const int64_t inner = slice.numel() / c.B;
    for (int64_t b = 0; b < c.B; ++b)
      for (int64_t i = 0; i < inner; ++i) slice[b * inner + i] = x[(b * c.T + t) * inner + i];
    return from_ref(slice, dt, dev);
  };
  Ref stepped(r.x.shape);
  const int64_t inner = c.H * c.P;
  for (int64_t t = 0; t < c.T; ++t) {
    Tensor yt = poisoned({c.B, c.H, c.P}, dt, dev, &ctx);
    ssd_state_update(ctx, yt, state, at(r.x, t), at(r.dt, t), in.A, at(r.B, t), at(r.C, t), in.D,
                     at(r.z, t), in.dt_bias, {c.chunk, r.dt_softplus});
    const Ref y = to_ref(yt);
    for (int64_t b = 0; b < c.B; ++b)
      for (int64_t i = 0; i < inner; ++i) stepped[(b * c.T + t) * inner + i] = y[b * inner + i];
  }
  const auto exact = ref::ssd_fwd<Oracle>(r, no_round);
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    const auto naive = ref::ssd_fwd<S>(r, rounding_for(dt));
    expect_close_2x(from_ref(stepped, DType::f64), exact.out, naive.out, dt, "decode outputs");
    expect_close_2x(state, exact.final_states, naive.final_states, pdt, "decode state");
  });
}

// With P = 1 and A shared across the N states, SSD is the selective scan over Dm = H channels:
// u[b, h, t] = x[b, t, h, 0], delta = dt, A_ss[h, n] = A[h], B_ss[b, g, n, t] = B[b, t, g, n].
TEST_P(SSD, EqualsSelectiveScanWhenHeadDimIsOne) {
  auto [c, backend] = GetParam();
  LONGCTX_SKIP_IF_UNAVAILABLE(backend.device);
  if (c.T > 256) GTEST_SKIP() << "checked on the short cases";
  c.P = 1;
  Context& ctx = context_for(backend.device);
  const Device dev = backend.device;
  const DType dt = backend.dtype, pdt = stat_dtype(dt);
  Rng rng(507);
  const ref::SSDRefs r = make_inputs(c, dt, rng);
  ref::SelectiveScanRefs s;
  s.delta_softplus = r.dt_softplus;
  s.u = Ref({c.B, c.H, c.T});
  s.delta = Ref({c.B, c.H, c.T});
  s.A = Ref({c.H, c.N});
  s.B = Ref({c.B, c.G, c.N, c.T});
  s.C = Ref({c.B, c.G, c.N, c.T});
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t t = 0; t < c.T; ++t) {
      for (int64_t h = 0; h < c.H; ++h) {
        s.u[(b * c.H + h) * c.T + t] = r.x[(b * c.T + t) * c.H + h];
        s.delta[(b * c.H + h) * c.T + t] = r.dt[(b * c.T + t) * c.H + h];
        if (r.z.numel()) {
          if (!s.z.numel()) s.z = Ref({c.B, c.H, c.T});
          s.z[(b * c.H + h) * c.T + t] = r.z[(b * c.T + t) * c.H + h];
        }
      }
      for (int64_t g = 0; g < c.G; ++g)
        for (int64_t n = 0; n < c.N; ++n) {
          s.B[((b * c.G + g) * c.N + n) * c.T + t] = r.B[((b * c.T + t) * c.G + g) * c.N + n];
          s.C[((b * c.G + g) * c.N + n) * c.T + t] = r.C[((b * c.T + t) * c.G + g) * c.N + n];
        }
    }
  for (int64_t h = 0; h < c.H; ++h)
    for (int64_t n = 0; n < c.N; ++n) s.A[h * c.N + n] = r.A[h];
  s.D = r.D;
  s.delta_bias = r.dt_bias;
  if (r.initial_states.numel()) {
    s.h0 = r.initial_states;
    s.h0.shape = {c.B, c.H, c.N};  // (B, H, 1, N) -> (B, Dm, N), same order
  }
  auto opt = [&](const Ref& x, DType t) { return x.numel() ? from_ref(x, t, dev) : Tensor(); };
  const SelectiveScanInputs in{
      from_ref(s.u, dt, dev), from_ref(s.delta, dt, dev), from_ref(s.A, pdt, dev),
      from_ref(s.B, dt, dev), from_ref(s.C, dt, dev),     opt(s.D, pdt),
      opt(s.z, dt),           opt(s.delta_bias, pdt),     opt(s.h0, pdt)};
  Tensor out = poisoned({c.B, c.H, c.T}, dt, dev, &ctx);
  Tensor last = poisoned({c.B, c.H, c.N}, pdt, dev, &ctx);
  selective_scan_fwd(ctx, out, last, in, {s.delta_softplus});
  // The selective scan's output, transposed back to (B, T, H, 1), against the SSD reference.
  const Ref o = to_ref(out);
  Ref as_ssd(r.x.shape);
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t h = 0; h < c.H; ++h)
      for (int64_t t = 0; t < c.T; ++t)
        as_ssd[(b * c.T + t) * c.H + h] = o[(b * c.H + h) * c.T + t];
  const auto exact = ref::ssd_fwd<Oracle>(r, no_round);
  Ref exact_state = exact.final_states;
  exact_state.shape = {c.B, c.H, c.N};
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    const auto naive = ref::ssd_fwd<S>(r, rounding_for(dt));
    Ref naive_state = naive.final_states;
    naive_state.shape = {c.B, c.H, c.N};
    expect_close_2x(from_ref(as_ssd, DType::f64), exact.out, naive.out, dt, "selective scan out");
    expect_close_2x(last, exact_state, naive_state, pdt, "selective scan last_state");
  });
}

INSTANTIATE_TEST_SUITE_P(Cases, SSD,
                         testing::Combine(testing::ValuesIn(kCases),
                                          testing::ValuesIn(all_backends())),
                         case_name<SSDCase>);

TEST(SSDReference, GradientsMatchFiniteDifferences) {
  Rng rng(17);
  const SSDCase c{"fd", 2, 5, 4, 2, 3, 2, 2, true};
  for (const bool softplus : {true, false}) {
    ref::SSDRefs r = make_inputs(c, DType::f64, rng);
    r.dt_softplus = softplus;
    if (!softplus) r.dt = random_ref(r.dt.shape, rng, 0.05, 0.5);
    const Ref dout = random_ref(r.x.shape, rng), dfin = random_ref(r.initial_states.shape, rng);
    auto loss_for = [&](int which) {
      return [&, which](const std::vector<Ref>& v) {
        ref::SSDRefs q = r;
        Ref* fields[] = {&q.x, &q.dt, &q.A, &q.B, &q.C, &q.D, &q.z, &q.dt_bias, &q.initial_states};
        *fields[which] = v[0];
        const auto o = ref::ssd_fwd<double>(q, no_round);
        return dot(o.out, dout) + dot(o.final_states, dfin);
      };
    };
    const auto g = ref::ssd_bwd<double>(dout, dfin, r, no_round);
    const std::pair<const Ref*, const Ref*> pairs[] = {{&r.x, &g.dx},
                                                       {&r.dt, &g.ddt},
                                                       {&r.A, &g.dA},
                                                       {&r.B, &g.dB},
                                                       {&r.C, &g.dC},
                                                       {&r.D, &g.dD},
                                                       {&r.z, &g.dz},
                                                       {&r.dt_bias, &g.ddt_bias},
                                                       {&r.initial_states, &g.dinitial_states}};
    for (int i = 0; i < 9; ++i)
      EXPECT_LE(
          max_abs_diff(*pairs[i].second, finite_difference(loss_for(i), {*pairs[i].first}, 0)),
          1e-7)
          << "input " << i << (softplus ? " (softplus)" : "");
  }
}

TEST(SSDBadInput, NamesTheArgument) {
  Context& ctx = context_for(Device::cpu());
  auto z = [&](const Shape& s, DType t = DType::f32) { return Tensor::zeros(s, t); };
  SSDInputs in{z({1, 5, 6, 2}), z({1, 5, 6}), z({6}), z({1, 5, 3, 4}), z({1, 5, 3, 4})};
  Tensor out = Tensor::empty({1, 5, 6, 2}, DType::f32),
         fin = Tensor::empty({1, 6, 2, 4}, DType::f32);
  {
    SSDInputs bad = in;
    bad.B = bad.C = z({1, 5, 4, 4});
    EXPECT_LONGCTX_ERROR(ssd_fwd(ctx, out, fin, bad), "ssd_fwd", "'B'", "G = 4",
                         "must divide the head count H = 6");
  }
  {
    SSDInputs bad = in;
    bad.B = bad.C = z({1, 5, 3, 300});
    EXPECT_LONGCTX_ERROR(ssd_fwd(ctx, out, fin, bad), "'B'", "N <= 256", "got N = 300");
  }
  EXPECT_LONGCTX_ERROR(ssd_fwd(ctx, out, fin, in, {/*chunk_size=*/0}), "'chunk_size'",
                       "must be >= 1");
  {
    SSDInputs bad = in;
    bad.A = z({6}, DType::f64);
    EXPECT_LONGCTX_ERROR(ssd_fwd(ctx, out, fin, bad), "'A'", "expected dtype f32");
  }
  EXPECT_LONGCTX_ERROR(ssd_fwd(ctx, in.x, fin, in), "'out'", "overlaps input 'x'");
  SSDInputs with_z = in;
  with_z.z = z({1, 5, 6, 2});
  SSDGrads g{z({1, 5, 6, 2}), z({1, 5, 6}), z({6}), z({1, 5, 3, 4}), z({1, 5, 3, 4})};
  EXPECT_LONGCTX_ERROR(ssd_bwd(ctx, g, z({1, 5, 6, 2}), Tensor(), with_z), "ssd_bwd", "'dz'",
                       "required because 'z' was given");
  EXPECT_LONGCTX_ERROR(ssd_state_update(ctx, z({1, 6, 2}), z({1, 6, 2, 4}), z({1, 6, 2}), z({1, 6}),
                                        in.A, z({1, 3, 5}), z({1, 3, 4})),
                       "ssd_state_update", "'C'", "expected shape (1, 3, 5)");
}

}  // namespace
}  // namespace longctx::test
