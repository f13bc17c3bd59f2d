// causal_conv1d: every case x backend against the reference (forward, backward); a sequence of
// decode steps equals the full convolution; the reference against finite differences; bad inputs.
#include <cmath>

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
    // Past one CUDA tile of steps (1024) and a warp of channels (32, a partial second warp).
    {"past_a_tile_and_a_warp", 2, 45, 1100, 4, true, Activation::silu},
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

// ---- Channel-last views
// --------------------------------------------------------------------------

// A channel-first (B, D, T) Ref as a channel-last (B, T, D) view: columns [at, at + D) of a
// (B, T, D + extra) tensor whose other columns hold `fill`.
Tensor channel_last_view(const Ref& r, int64_t extra, int64_t at, double fill, DType dt,
                         Device dev) {
  const int64_t B = r.shape[0], D = r.shape[1], T = r.shape[2];
  Ref wide({B, T, D + extra}, fill);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t d = 0; d < D; ++d)
      for (int64_t t = 0; t < T; ++t)
        wide[(b * T + t) * (D + extra) + at + d] = r[(b * D + d) * T + t];
  return from_ref(wide, dt, dev).narrow(2, at, D);
}

// A channel-last (B, T, D) view as a contiguous channel-first (B, D, T) tensor.
Tensor channel_first(const Tensor& t, Context& ctx) {
  Tensor out = Tensor::empty({t.size(0), t.size(2), t.size(1)}, t.dtype(), t.device(), &ctx);
  out.copy_from(t.transpose(1, 2), &ctx);
  return out;
}

class CausalConv1dChannelLast
    : public testing::TestWithParam<std::tuple<CausalConv1dCase, Backend>> {};

// x and dout read from inside wider rows, dx written into the middle of wider rows (whose other
// columns must stay untouched), out contiguous: against the same reference as the channel-first
// layout.
TEST_P(CausalConv1dChannelLast, StridedRowsMatchReference) {
  const auto& [c, backend] = GetParam();
  LONGCTX_SKIP_IF_UNAVAILABLE(backend.device);
  Context& ctx = context_for(backend.device);
  const Device dev = backend.device;
  const DType dt = backend.dtype;
  const bool silu = c.act == Activation::silu;
  CausalConv1dParams params{c.act};
  params.channel_last = true;
  Rng rng(307);
  const Ref x = rounded(random_ref({c.B, c.D, c.T}, rng, -2, 2), dt);
  const Ref w = rounded(random_ref({c.D, c.W}, rng), dt);
  const Ref bias = c.bias ? rounded(random_ref({c.D}, rng), dt) : Ref();
  const Ref dout = rounded(random_ref({c.B, c.D, c.T}, rng), dt);
  const Tensor x_t = channel_last_view(x, 5, 2, 1e3, dt, dev), w_t = from_ref(w, dt, dev);
  const Tensor bias_t = c.bias ? from_ref(bias, dt, dev) : Tensor();

  Tensor out = poisoned({c.B, c.T, c.D}, dt, dev, &ctx);
  causal_conv1d_fwd(ctx, out, x_t, w_t, bias_t, params);
  Tensor dx_wide = poisoned({c.B, c.T, c.D + 3}, dt, dev, &ctx);
  Tensor dw = poisoned(w.shape, dt, dev, &ctx);
  Tensor dbias = c.bias ? poisoned({c.D}, dt, dev, &ctx) : Tensor();
  causal_conv1d_bwd(ctx, dx_wide.narrow(2, 1, c.D), dw, dbias,
                    channel_last_view(dout, 1, 0, -1e3, dt, dev), x_t, w_t, bias_t, params);
  const auto g = ref::causal_conv1d_bwd<Oracle>(dout, x, w, bias, silu, no_round);
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    expect_close_2x(channel_first(out, ctx),
                    ref::causal_conv1d_fwd<Oracle>(x, w, bias, silu, no_round),
                    ref::causal_conv1d_fwd<S>(x, w, bias, silu, rounding_for(dt)), dt, "out");
    const auto naive = ref::causal_conv1d_bwd<S>(dout, x, w, bias, silu, rounding_for(dt));
    expect_close_2x(channel_first(dx_wide.narrow(2, 1, c.D), ctx), g.dx, naive.dx, dt, "dx");
    expect_close_2x(dw, g.dweight, naive.dweight, dt, "dweight");
    if (c.bias) expect_close_2x(dbias, g.dbias, naive.dbias, dt, "dbias");
  });
  const Ref wide = to_ref(dx_wide);
  for (int64_t r = 0; r < c.B * c.T; ++r)
    for (const int64_t col : {int64_t(0), c.D + 1, c.D + 2})
      ASSERT_TRUE(std::isnan(wide[r * (c.D + 3) + col]))
          << "dx wrote outside its columns, row " << r;
}

INSTANTIATE_TEST_SUITE_P(Cases, CausalConv1dChannelLast,
                         testing::Combine(testing::ValuesIn(kCases),
                                          testing::ValuesIn(all_backends())),
                         case_name<CausalConv1dCase>);

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

class CausalConv1dPacked : public testing::TestWithParam<std::tuple<PackedCase, Backend>> {};

// A packed batch (1, D, T) against the reference on each sequence alone; the op on each sequence
// alone and in a right-padded rectangular batch gives the same out and dx bits.
TEST_P(CausalConv1dPacked, MatchesPerSequenceReferenceAndIsBatchInvariant) {
  const auto& [c, backend] = GetParam();
  LONGCTX_SKIP_IF_UNAVAILABLE(backend.device);
  Context& ctx = context_for(backend.device);
  DeterministicScope deterministic(ctx);
  const Device dev = backend.device;
  const DType dt = backend.dtype;
  const int64_t D = 12, W = 4, N = int64_t(c.lengths.size());
  const CausalConv1dParams params{Activation::silu};
  const std::vector<int32_t> cu = cu_seqlens_of(c.lengths);
  const int64_t T = cu.back();
  Rng rng(41);
  const Ref x = rounded(random_ref({1, D, T}, rng, -2, 2), dt);
  const Ref w = rounded(random_ref({D, W}, rng), dt), bias = rounded(random_ref({D}, rng), dt);
  const Ref dout = rounded(random_ref({1, D, T}, rng), dt);
  const Tensor w_t = from_ref(w, dt, dev), bias_t = from_ref(bias, dt, dev);
  const Tensor cu_t = int_tensor(cu, {N + 1}, dev);

  Tensor out = poisoned({1, D, T}, dt, dev, &ctx);
  const Tensor x_t = from_ref(x, dt, dev);
  causal_conv1d_fwd(ctx, out, x_t, w_t, bias_t, params, cu_t);
  Tensor dx = poisoned({1, D, T}, dt, dev, &ctx), dw = poisoned({D, W}, dt, dev, &ctx);
  Tensor dbias = poisoned({D}, dt, dev, &ctx);
  causal_conv1d_bwd(ctx, dx, dw, dbias, from_ref(dout, dt, dev), x_t, w_t, bias_t, params, cu_t);
  const Ref got_out = to_ref(out), got_dx = to_ref(dx);

  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    Ref exact_out({1, D, T}), naive_out({1, D, T}), exact_dx({1, D, T}), naive_dx({1, D, T});
    Ref exact_dw({D, W}), naive_dw({D, W}), exact_db({D}), naive_db({D});
    for (int64_t n = 0; n < N; ++n) {
      const Ref xn = slice(x, 2, cu[size_t(n)], cu[size_t(n) + 1]);
      const Ref doutn = slice(dout, 2, cu[size_t(n)], cu[size_t(n) + 1]);
      paste(exact_out, 2, cu[size_t(n)],
            ref::causal_conv1d_fwd<Oracle>(xn, w, bias, true, no_round));
      paste(naive_out, 2, cu[size_t(n)],
            ref::causal_conv1d_fwd<S>(xn, w, bias, true, rounding_for(dt)));
      const auto e = ref::causal_conv1d_bwd<Oracle>(doutn, xn, w, bias, true, no_round);
      const auto v = ref::causal_conv1d_bwd<S>(doutn, xn, w, bias, true, rounding_for(dt));
      paste(exact_dx, 2, cu[size_t(n)], e.dx);
      paste(naive_dx, 2, cu[size_t(n)], v.dx);
      for (int64_t i = 0; i < D * W; ++i) {  // the weight gradients sum over the sequences
        exact_dw[i] += e.dweight[i];
        naive_dw[i] += v.dweight[i];
      }
      for (int64_t i = 0; i < D; ++i) {
        exact_db[i] += e.dbias[i];
        naive_db[i] += v.dbias[i];
      }
    }
    expect_close_2x(out, exact_out, naive_out, dt, "out");
    expect_close_2x(dx, exact_dx, naive_dx, dt, "dx");
    expect_close_2x(dw, exact_dw, naive_dw, dt, "dweight");
    expect_close_2x(dbias, exact_db, naive_db, dt, "dbias");

    // The same packed batch channel-last, x and dout inside wider rows.
    CausalConv1dParams last = params;
    last.channel_last = true;
    const Tensor x_cl = channel_last_view(x, 3, 1, 1e3, dt, dev);
    Tensor out_cl = poisoned({1, T, D}, dt, dev, &ctx), dx_cl = poisoned({1, T, D}, dt, dev, &ctx);
    causal_conv1d_fwd(ctx, out_cl, x_cl, w_t, bias_t, last, cu_t);
    Tensor dw_cl = poisoned({D, W}, dt, dev, &ctx), db_cl = poisoned({D}, dt, dev, &ctx);
    causal_conv1d_bwd(ctx, dx_cl, dw_cl, db_cl, channel_last_view(dout, 2, 2, -1e3, dt, dev), x_cl,
                      w_t, bias_t, last, cu_t);
    expect_close_2x(channel_first(out_cl, ctx), exact_out, naive_out, dt, "channel-last out");
    expect_close_2x(channel_first(dx_cl, ctx), exact_dx, naive_dx, dt, "channel-last dx");
    expect_close_2x(dw_cl, exact_dw, naive_dw, dt, "channel-last dweight");
    expect_close_2x(db_cl, exact_db, naive_db, dt, "channel-last dbias");
  });

  const int64_t Tmax = *std::max_element(c.lengths.begin(), c.lengths.end());
  Ref pad_x({N, D, Tmax}, 0.0), pad_dout({N, D, Tmax}, 0.0);
  for (int64_t n = 0; n < N; ++n) {
    SCOPED_TRACE("sequence " + std::to_string(n));
    const int64_t begin = cu[size_t(n)], len = c.lengths[size_t(n)];
    const Ref xn = slice(x, 2, begin, begin + len), doutn = slice(dout, 2, begin, begin + len);
    for (int64_t d = 0; d < D; ++d)
      for (int64_t t = 0; t < len; ++t) {
        pad_x[(n * D + d) * Tmax + t] = xn[d * len + t];
        pad_dout[(n * D + d) * Tmax + t] = doutn[d * len + t];
      }
    Tensor o = poisoned({1, D, len}, dt, dev, &ctx);
    const Tensor xn_t = from_ref(xn, dt, dev);
    causal_conv1d_fwd(ctx, o, xn_t, w_t, bias_t, params);
    Tensor dxn = poisoned({1, D, len}, dt, dev, &ctx);
    causal_conv1d_bwd(ctx, dxn, poisoned({D, W}, dt, dev, &ctx), poisoned({D}, dt, dev, &ctx),
                      from_ref(doutn, dt, dev), xn_t, w_t, bias_t, params);
    EXPECT_EQ(max_abs_diff(to_ref(o), slice(got_out, 2, begin, begin + len)), 0.0) << "out alone";
    EXPECT_EQ(max_abs_diff(to_ref(dxn), slice(got_dx, 2, begin, begin + len)), 0.0) << "dx alone";
  }
  Tensor o = poisoned({N, D, Tmax}, dt, dev, &ctx), pdx = poisoned({N, D, Tmax}, dt, dev, &ctx);
  const Tensor px = from_ref(pad_x, dt, dev);
  causal_conv1d_fwd(ctx, o, px, w_t, bias_t, params);
  causal_conv1d_bwd(ctx, pdx, poisoned({D, W}, dt, dev, &ctx), poisoned({D}, dt, dev, &ctx),
                    from_ref(pad_dout, dt, dev), px, w_t, bias_t, params);
  const Ref po = to_ref(o), ppdx = to_ref(pdx);
  for (int64_t n = 0; n < N; ++n) {
    SCOPED_TRACE("padded row " + std::to_string(n));
    const int64_t begin = cu[size_t(n)], len = c.lengths[size_t(n)];
    auto row = [&](const Ref& r) { return slice(slice(r, 0, n, n + 1), 2, 0, len); };
    EXPECT_EQ(max_abs_diff(row(po), slice(got_out, 2, begin, begin + len)), 0.0) << "out padded";
    EXPECT_EQ(max_abs_diff(row(ppdx), slice(got_dx, 2, begin, begin + len)), 0.0) << "dx padded";
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, CausalConv1dPacked,
                         testing::Combine(testing::ValuesIn(packed_cases()),
                                          testing::ValuesIn(all_backends())),
                         case_name<PackedCase>);

TEST(CausalConv1dPackedBadInput, NamesTheRule) {
  Context& ctx = context_for(Device::cpu());
  const DType f32 = DType::f32;
  Tensor x = Tensor::zeros({1, 8, 5}, f32), w = Tensor::zeros({8, 4}, f32);
  Tensor out = Tensor::empty({1, 8, 5}, f32);
  EXPECT_LONGCTX_ERROR(causal_conv1d_fwd(ctx, out, x, w, {}, {}, int_tensor({0, 2, 4}, {3})),
                       "causal_conv1d_fwd", "'cu_seqlens'", "must end at the packed length T = 5");
  Tensor x2 = Tensor::zeros({2, 8, 5}, f32);
  EXPECT_LONGCTX_ERROR(
      causal_conv1d_fwd(ctx, Tensor::empty({2, 8, 5}, f32), x2, w, {}, {}, int_tensor({0, 5}, {2})),
      "'x'", "batch dimension 1 with cu_seqlens");
}

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
  // Channel-last: (B, T, D) with unit-stride channels; a transposed channel-first tensor is not.
  CausalConv1dParams last;
  last.channel_last = true;
  Tensor x_cl = Tensor::zeros({2, 5, 8}, f32), out_cl = Tensor::empty({2, 5, 8}, f32);
  EXPECT_LONGCTX_ERROR(causal_conv1d_fwd(ctx, out_cl, x.transpose(1, 2), w, {}, last), "'x'",
                       "must be channel-last (B, T, D) with unit-stride channels",
                       "got strides (40, 1, 5)");
  EXPECT_LONGCTX_ERROR(causal_conv1d_fwd(ctx, out_cl, x_cl, w.narrow(0, 0, 5), {}, last),
                       "'weight'", "expected shape (8, 4)");
  EXPECT_LONGCTX_ERROR(causal_conv1d_fwd(ctx, out, x_cl, w, {}, last), "'out'",
                       "expected shape (2, 5, 8)");
}

// Channel-last, out written into other columns of x's own buffer (x = columns [0, 8) of rows
// 16 wide, out columns [8, 16)): separate memory, though the two byte ranges interleave. It was
// refused as overlapping; columns [4, 12) do overlap x and still are.
TEST(CausalConv1dChannelLastInOneBuffer, DisjointColumnsAreSeparateMemory) {
  Context& ctx = context_for(Device::cpu());
  CausalConv1dParams last;
  last.channel_last = true;
  Rng rng(311);
  const Tensor buffer = random_tensor({2, 5, 16}, DType::f64, rng);
  const Tensor w = random_tensor({8, 4}, DType::f64, rng);
  const Tensor x = buffer.narrow(2, 0, 8);
  const Tensor separate = Tensor::empty({2, 5, 8}, DType::f64);
  causal_conv1d_fwd(ctx, separate, x, w, {}, last);
  causal_conv1d_fwd(ctx, buffer.narrow(2, 8, 8), x, w, {}, last);
  EXPECT_EQ(max_abs_diff(to_ref(buffer.narrow(2, 8, 8)), to_ref(separate)), 0.0);
  EXPECT_LONGCTX_ERROR(causal_conv1d_fwd(ctx, buffer.narrow(2, 4, 8), x, w, {}, last), "'out'",
                       "overlaps input 'x'");
}

}  // namespace
}  // namespace longctx::test
