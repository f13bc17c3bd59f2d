// attention: every case x backend against the reference (forward, gradients, bitwise determinism);
// decode against full attention over the same cache; the reference against finite differences;
// a long sequence on the CPU checked on a sample of rows; NaN and inf on CUDA; launch grids past
// 65535 blocks on CUDA; the one table of CUDA head dims; bad inputs.
#include <chrono>
#include <cstring>
#include <functional>

#include "harness.h"
#include "kernels/attention/head_dims.h"
#include "longctx/ops/attention.h"
#include "reference/attention.h"
#include "src/cpu/isa.h"

namespace longctx::test {
namespace {

// ---- Helpers --------------------------------------------------------------------------------

// The rows that see no key have lse = -inf: those positions must agree exactly, the rest follow
// the 2x rule.
void expect_lse_close(const Ref& got_in, const Ref& exact, const Ref& naive, DType dtype) {
  Ref got = got_in, e = exact, n = naive;
  int mismatched = 0;
  for (int64_t i = 0; i < e.numel(); ++i) {
    const bool want_inf = std::isinf(e[i]) && e[i] < 0, got_inf = std::isinf(got[i]) && got[i] < 0;
    if (want_inf != got_inf && ++mismatched <= 3)
      ADD_FAILURE() << "lse[" << i << "] = " << got[i] << ", reference " << e[i];
    if (want_inf && got_inf) got[i] = e[i] = n[i] = 0;
  }
  expect_close_2x(from_ref(got, dtype), e, n, dtype, "lse");
}

// The rows `rows` (indices into the (B, H, Tq) layout) of a (B, T, H, D) tensor, as (rows, D).
Ref gather_rows(const Ref& x, const std::vector<int64_t>& rows) {
  const int64_t T = x.shape[1], H = x.shape[2], D = x.shape[3];
  Ref r({int64_t(rows.size()), D});
  for (size_t n = 0; n < rows.size(); ++n) {
    const int64_t i = rows[n] % T, b = rows[n] / T / H, h = rows[n] / T % H;
    for (int64_t d = 0; d < D; ++d) r[int64_t(n) * D + d] = x[((b * T + i) * H + h) * D + d];
  }
  return r;
}
Ref gather(const Ref& x, const std::vector<int64_t>& index) {
  Ref r({int64_t(index.size())});
  for (size_t n = 0; n < index.size(); ++n) r[int64_t(n)] = x[index[n]];
  return r;
}

AttentionParams with(AttentionParams p, const std::function<void(AttentionParams&)>& edit) {
  edit(p);
  return p;
}

uint64_t seed_of(const std::string& name) {
  return std::hash<std::string>{}(name) % 1000003;
}

// ---- Forward and backward, every case x backend -----------------------------------------------

struct AttentionCase {
  std::string name;
  int64_t B, Tq, Tk, H, Hkv, D;
  AttentionParams params;
  double range = 1.0;  // q, k, v uniform in [-range, range]
  bool grads = true;   // false: dq = dk = 0 exactly by cancellation, below the 2x rule's floor
};
LONGCTX_PRINTS_AS_NAME(AttentionCase)

AttentionParams causal() {
  return with({}, [](AttentionParams& p) { p.causal = true; });
}
AttentionParams window(int left, int right, bool is_causal = false) {
  return with({}, [&](AttentionParams& p) {
    p.window_left = left;
    p.window_right = right;
    p.causal = is_causal;
  });
}

// Real models' head layouts at test lengths. The CPU tiles are 128 queries x 256 keys: most
// lengths below fit one query tile, a few cross query tiles (130, 150, 300, 600) and key tiles
// (up to three per row).
const std::vector<AttentionCase> kCases = {
    {"llama2_7b_mha_causal", 1, 70, 70, 4, 4, 128, causal()},
    {"llama3_8b_gqa4_causal", 2, 65, 65, 8, 2, 128, causal()},
    {"falcon_7b_mqa_causal", 1, 80, 80, 4, 1, 64, causal()},
    {"bert_bidirectional_multi_tile", 1, 130, 520, 2, 2, 32, {}},
    {"chunked_prefill_tq_lt_tk", 1, 40, 333, 2, 1, 64, causal()},
    {"tq_gt_tk_causal_empty_rows", 1, 150, 37, 2, 2, 64, causal()},
    {"tq_gt_tk_noncausal", 1, 70, 20, 2, 1, 32, {}},
    {"mistral_sliding_window_scaled", 1, 300, 300, 4, 1, 32, window(40, 0, true)},
    // Eight query heads on two kv heads, one sequence: the backward's owners are (sequence, kv
    // head) pairs on 1 thread, (sequence, query head) pairs on 2 to 4, two passes on 8.
    {"gqa4_one_sequence_two_key_tiles", 1, 300, 300, 8, 2, 32, causal()},
    // Four (sequence, kv head) pairs over several query and key tiles: the forward's owners pack
    // their own K and V on 1 thread (4 pairs per thread), SeqPack packs them for all on 2 and 8.
    {"gqa2_two_sequences_noncausal_tiles", 2, 300, 300, 4, 2, 64, {}},
    // Non-causal, D = 20, 272 keys: the CPU backward's AVX-512 tiles form P and dS in their
    // products' registers (BwdTile::fused_products), here with a head dim not a multiple of 16 and
    // a last key block of 16 under 128 and under 2 query rows; against the AVX2 passes bitwise.
    {"noncausal_d20_last_key_block_16", 1, 130, 272, 2, 1, 20, {}},
    // 70000 keys: the CPU's f32 K and V packs (17.9 MB each) exceed what a thread keeps between
    // calls (16 MiB, src/cpu/attention.cpp's kKeptPackBytes), so each call packs into a fresh
    // buffer.
    {"long_keys_fresh_packs", 1, 2, 70000, 1, 1, 64, {}},
    // D = 5488: one key tile's packs for the CPU's fused backward (K and V panels, K rows: 16.9
    // MB) exceed what a thread keeps (16 MiB), so its owners pack into a fresh buffer; 4
    // sequences, so that 2 threads take the fused shape.
    {"huge_head_dim_fresh_tile_packs", 4, 3, 5, 1, 1, 5488, {}},
    {"window_left0_diagonal_only", 1, 70, 70, 2, 2, 32, window(0, 0), 1.0, /*grads=*/false},
    {"window_left0_right1", 1, 70, 70, 2, 2, 32, window(0, 1)},
    {"window_left0_future_only", 1, 70, 90, 2, 1, 32, window(0, -1)},
    {"window_right0_noncausal", 1, 50, 70, 2, 2, 32, window(-1, 0)},
    {"local_window_both_sides", 1, 100, 100, 2, 1, 64, window(5, 3)},
    {"gemma2_softcap50_window", 1, 50, 50, 4, 2, 256,
     with(window(20, 0, true), [](AttentionParams& p) { p.softcap = 50.f; }), 6.0},
    {"softcap_saturating", 1, 70, 70, 2, 2, 64,
     with(causal(), [](AttentionParams& p) { p.softcap = 1.f; }), 2.0},
    {"phi2_hdim80", 1, 50, 50, 2, 2, 80, causal()},
    {"phi3_hdim96_gqa", 1, 45, 45, 4, 2, 96, causal()},
    {"hdim32_custom_scale", 1, 70, 70, 2, 2, 32,
     with({}, [](AttentionParams& p) { p.softmax_scale = 0.3f; })},
    {"odd_hdim7", 2, 33, 21, 2, 1, 7, {}},
    // The CPU packs K 8 columns at a time by register transposes and the rest of D (here 4) and a
    // last panel of fewer than 16 keys (here 10) one float at a time: both in one panel.
    {"hdim20_pack_tail", 1, 70, 90, 2, 1, 20, {}},
    // Toy models' head dims (the presets shrunk for tests use 4 and 16): on CUDA, f32 runs them
    // in its smallest bucket, bf16 and f16 report them unsupported.
    {"tiny_model_hdim4_gqa", 2, 37, 37, 4, 2, 4, causal()},
    {"tiny_model_hdim16_window", 1, 70, 70, 2, 1, 16, window(20, 0, true)},
    {"hdim200_padded_bucket", 1, 40, 45, 2, 2, 200, {}},
    // Large logits across the CPU's key tiles (256 keys): the forward's running max moves
    // lazily, only where a later tile's scores exceed it by more than 8 (log2 domain). With
    // these ranges both steps occur after a row's first tile (counted on draws from the same
    // distributions, numpy, one seed: 8 exact and 252 lazy row-tiles per head non-causal, 48 and
    // 384 causal).
    {"large_logits_three_key_tiles", 1, 130, 700, 2, 1, 64, {}, 4.0},
    {"large_logits_causal_key_tiles", 1, 600, 600, 2, 2, 64, causal(), 6.0},
};

// Caps the CPU kernels' ISA for its lifetime (src/cpu/isa.h).
struct IsaCap {
  explicit IsaCap(cpu::CpuIsa cap) { cpu::set_cpu_isa_cap(cap); }
  ~IsaCap() { cpu::set_cpu_isa_cap(cpu::CpuIsa::avx512); }
};

class Attention : public testing::TestWithParam<std::tuple<AttentionCase, Backend>> {};

TEST_P(Attention, MatchesReference) {
  const auto& [c, backend] = GetParam();
  LONGCTX_SKIP_IF_UNAVAILABLE(backend.device);
  if (const std::string why = attention_supports(backend.device, backend.dtype, c.D); !why.empty())
    GTEST_SKIP() << "unsupported configuration: " << why;
  Context& ctx = context_for(backend.device);
  const Device dev = backend.device;
  const DType dt = backend.dtype, lse_dt = stat_dtype(dt);
  const Shape q_shape = {c.B, c.Tq, c.H, c.D}, kv_shape = {c.B, c.Tk, c.Hkv, c.D};
  Rng rng(seed_of(c.name));
  const Ref q = rounded(random_ref(q_shape, rng, -c.range, c.range), dt);
  const Ref k = rounded(random_ref(kv_shape, rng, -c.range, c.range), dt);
  const Ref v = rounded(random_ref(kv_shape, rng, -c.range, c.range), dt);
  const Ref dout = rounded(random_ref(q_shape, rng), dt);
  const Tensor tq = from_ref(q, dt, dev), tk = from_ref(k, dt, dev), tv = from_ref(v, dt, dev);
  const Tensor tdout = from_ref(dout, dt, dev);

  Tensor out = poisoned(q_shape, dt, dev, &ctx),
         lse = poisoned({c.B, c.H, c.Tq}, lse_dt, dev, &ctx);
  attention_fwd(ctx, out, lse, tq, tk, tv, c.params);
  const auto exact = ref::attention_fwd<Oracle>(q, k, v, c.params, no_round);
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    const auto naive = ref::attention_fwd<S>(q, k, v, c.params, rounding_for(dt));
    expect_close_2x(out, exact.out, naive.out, dt, "out");
    expect_lse_close(to_ref(lse), exact.lse, naive.lse, lse_dt);
  });

  if (!c.grads) return;
  Tensor dq = poisoned(q_shape, dt, dev, &ctx), dk = poisoned(kv_shape, dt, dev, &ctx);
  Tensor dv = poisoned(kv_shape, dt, dev, &ctx);
  attention_bwd(ctx, dq, dk, dv, tdout, tq, tk, tv, out, lse, c.params);
  const auto grads = ref::attention_bwd<Oracle>(dout, q, k, v, c.params, no_round);
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    const auto naive = ref::attention_bwd<S>(dout, q, k, v, c.params, rounding_for(dt));
    expect_close_2x(dq, grads.dq, naive.dq, dt, "dq");
    expect_close_2x(dk, grads.dk, naive.dk, dt, "dk");
    expect_close_2x(dv, grads.dv, naive.dv, dt, "dv");
  });

  // Deterministic mode: bitwise the same on a second run (and, on the CPU, with one thread).
  AttentionParams det = c.params;
  det.deterministic = true;
  auto run_bwd = [&](const Context& run_ctx) {
    Tensor g[3] = {poisoned(q_shape, dt, dev, &ctx), poisoned(kv_shape, dt, dev, &ctx),
                   poisoned(kv_shape, dt, dev, &ctx)};
    attention_bwd(run_ctx, g[0], g[1], g[2], tdout, tq, tk, tv, out, lse, det);
    return std::vector<Tensor>(g, g + 3);
  };
  const auto first = run_bwd(ctx), second = run_bwd(ctx);
  for (int n = 0; n < 3; ++n) expect_equal(first[n], second[n], "deterministic bwd, run twice");
  if (dev.is_cpu()) {
    const Context one_thread(Device::cpu(), 1);
    const auto single = run_bwd(one_thread);
    for (int n = 0; n < 3; ++n) expect_equal(first[n], single[n], "deterministic bwd, 1 thread");
    // The backward's owners depend on the thread count (src/cpu/attention.cpp, bwd_impl): one
    // per (sequence, kv head), one per (sequence, query head) with the group's shares added after,
    // or two passes; 4 and 8 threads reach the latter two on batches with few sequences whatever
    // the machine's core count, and every shape must give the same bits.
    for (const int threads : {4, 8}) {
      const Context many(Device::cpu(), threads);
      const auto got = run_bwd(many);
      for (int n = 0; n < 3; ++n)
        expect_equal(first[n], got[n],
                     "deterministic bwd, " + std::to_string(threads) + " threads");
    }
    Tensor out1 = poisoned(q_shape, dt, dev, &ctx),
           lse1 = poisoned({c.B, c.H, c.Tq}, lse_dt, dev, &ctx);
    attention_fwd(one_thread, out1, lse1, tq, tk, tv, c.params);
    expect_equal(out, out1, "fwd, 1 thread");
    // The forward's packs depend on the thread count too (fwd_impl): per (sequence, kv head)
    // owner when there are 4 or more per thread, else one pass for all; 8 threads take the latter
    // on every case here.
    const Context eight(Device::cpu(), 8);
    Tensor out8 = poisoned(q_shape, dt, dev, &ctx),
           lse8 = poisoned({c.B, c.H, c.Tq}, lse_dt, dev, &ctx);
    attention_fwd(eight, out8, lse8, tq, tk, tv, c.params);
    expect_equal(out1, out8, "fwd, 8 threads");
    // Bytes, not values: an empty row's lse is -inf on both sides.
    EXPECT_EQ(std::memcmp(lse1.data(), lse8.data(), lse1.nbytes()), 0) << "lse, 8 threads";
  }

  // The AVX2 tile kernels on a CPU with AVX-512 (chosen at run time, src/cpu/isa.h): the same
  // sums in the same order as the AVX-512 ones, so bitwise the same results; with the checks
  // above, both sets of kernels meet the reference.
  if (dev.is_cpu() && cpu::cpu_isa() == cpu::CpuIsa::avx512) {
    Tensor out2 = poisoned(q_shape, dt, dev, &ctx),
           lse2 = poisoned({c.B, c.H, c.Tq}, lse_dt, dev, &ctx);
    std::vector<Tensor> avx2_grads;
    {
      const IsaCap avx2(cpu::CpuIsa::avx2);
      attention_fwd(ctx, out2, lse2, tq, tk, tv, c.params);
      avx2_grads = run_bwd(ctx);
    }
    // Bytes, not values: an empty row's lse is -inf on both sides.
    auto same_bits = [](const Tensor& a, const Tensor& b) {
      return a.nbytes() == b.nbytes() && std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
    };
    EXPECT_TRUE(same_bits(out, out2)) << "fwd, AVX2 kernels";
    EXPECT_TRUE(same_bits(lse, lse2)) << "lse, AVX2 kernels";
    for (int n = 0; n < 3; ++n)
      EXPECT_TRUE(same_bits(first[n], avx2_grads[n])) << "bwd, AVX2 kernels, gradient " << n;
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, Attention,
                         testing::Combine(testing::ValuesIn(kCases),
                                          testing::ValuesIn(all_backends())),
                         case_name<AttentionCase>);

// ---- Packed variable-length batches -----------------------------------------------------------

struct PackedAttentionCase {
  std::string name;
  std::vector<int64_t> q_lengths, k_lengths;  // per sequence
  int64_t H, Hkv, D;
  AttentionParams params;
};
LONGCTX_PRINTS_AS_NAME(PackedAttentionCase)

// Sequences with queries on their last keys (a prefix, Tq < Tk), an empty one, a key-only one (no
// queries), one token, and lengths across the CPU's tiles (128 queries, 256 keys).
const std::vector<PackedAttentionCase> kPackedCases = {
    {"causal_gqa_prefixes", {6, 0, 1, 70, 33}, {9, 4, 1, 70, 40}, 4, 2, 32, causal()},
    {"bidirectional_softcap",
     {5, 12, 1},
     {5, 30, 2},
     2,
     2,
     32,
     with({}, [](AttentionParams& p) { p.softcap = 5.f; })},
    {"sliding_window_mqa", {90, 7, 300}, {90, 7, 300}, 4, 1, 32, window(8, 0, true)},
    // Non-causal without softcap: the CPU backward's fused P/dS tiles on a packed batch.
    {"bidirectional_packed", {20, 130}, {48, 272}, 2, 2, 32, {}},
};

class AttentionPacked : public testing::TestWithParam<std::tuple<PackedAttentionCase, Backend>> {};

// A packed batch against the reference on each sequence alone (causal and windows bottom-right
// aligned per sequence), then the op on each sequence alone: the same bits, forward and backward
// (deterministic mode).
TEST_P(AttentionPacked, MatchesPerSequenceReferenceAndIsBatchInvariant) {
  const auto& [c, backend] = GetParam();
  LONGCTX_SKIP_IF_UNAVAILABLE(backend.device);
  if (const std::string why = attention_supports(backend.device, backend.dtype, c.D); !why.empty())
    GTEST_SKIP() << "unsupported configuration: " << why;
  Context& ctx = context_for(backend.device);
  DeterministicScope deterministic(ctx);
  const Device dev = backend.device;
  const DType dt = backend.dtype, lse_dt = stat_dtype(dt);
  const std::vector<int32_t> cu_q = cu_seqlens_of(c.q_lengths), cu_k = cu_seqlens_of(c.k_lengths);
  const int64_t N = int64_t(c.q_lengths.size()), Tq = cu_q.back(), Tk = cu_k.back();
  const Shape q_shape = {1, Tq, c.H, c.D}, kv_shape = {1, Tk, c.Hkv, c.D};
  Rng rng(seed_of(c.name));
  const Ref q = rounded(random_ref(q_shape, rng), dt), k = rounded(random_ref(kv_shape, rng), dt);
  const Ref v = rounded(random_ref(kv_shape, rng), dt),
            dout = rounded(random_ref(q_shape, rng), dt);
  const Tensor tq = from_ref(q, dt, dev), tk = from_ref(k, dt, dev), tv = from_ref(v, dt, dev);
  const Tensor cq = int_tensor(cu_q, {N + 1}, dev), ck = int_tensor(cu_k, {N + 1}, dev);

  Tensor out = poisoned(q_shape, dt, dev, &ctx), lse = poisoned({1, c.H, Tq}, lse_dt, dev, &ctx);
  attention_fwd(ctx, out, lse, tq, tk, tv, c.params, cq, ck);
  Tensor dq = poisoned(q_shape, dt, dev, &ctx), dk = poisoned(kv_shape, dt, dev, &ctx);
  Tensor dv = poisoned(kv_shape, dt, dev, &ctx);
  attention_bwd(ctx, dq, dk, dv, from_ref(dout, dt, dev), tq, tk, tv, out, lse, c.params, cq, ck);
  const Ref got[] = {to_ref(out), to_ref(lse), to_ref(dq), to_ref(dk), to_ref(dv)};

  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    ref::AttentionOut exact{Ref(q_shape), Ref({1, c.H, Tq})}, naive = exact;
    ref::AttentionGrads ge{Ref(q_shape), Ref(kv_shape), Ref(kv_shape)}, gn = ge;
    for (int64_t n = 0; n < N; ++n) {
      const int64_t qb = cu_q[size_t(n)], qe = cu_q[size_t(n) + 1];
      const int64_t kb = cu_k[size_t(n)], ke = cu_k[size_t(n) + 1];
      const Ref qn = slice(q, 1, qb, qe), kn = slice(k, 1, kb, ke), vn = slice(v, 1, kb, ke);
      const Ref doutn = slice(dout, 1, qb, qe);
      const auto fe = ref::attention_fwd<Oracle>(qn, kn, vn, c.params, no_round);
      const auto fn = ref::attention_fwd<S>(qn, kn, vn, c.params, rounding_for(dt));
      const auto be = ref::attention_bwd<Oracle>(doutn, qn, kn, vn, c.params, no_round);
      const auto bn = ref::attention_bwd<S>(doutn, qn, kn, vn, c.params, rounding_for(dt));
      for (auto [f, o, g, gg] : {std::tuple{&fe, &exact, &be, &ge}, {&fn, &naive, &bn, &gn}}) {
        paste(o->out, 1, qb, f->out);
        paste(o->lse, 2, qb, f->lse);
        paste(gg->dq, 1, qb, g->dq);
        paste(gg->dk, 1, kb, g->dk);
        paste(gg->dv, 1, kb, g->dv);
      }
    }
    expect_close_2x(out, exact.out, naive.out, dt, "out");
    expect_lse_close(got[1], exact.lse, naive.lse, lse_dt);
    expect_close_2x(dq, ge.dq, gn.dq, dt, "dq");
    expect_close_2x(dk, ge.dk, gn.dk, dt, "dk");
    expect_close_2x(dv, ge.dv, gn.dv, dt, "dv");
  });

  for (int64_t n = 0; n < N; ++n) {
    SCOPED_TRACE("sequence " + std::to_string(n));
    const int64_t qb = cu_q[size_t(n)], qe = cu_q[size_t(n) + 1];
    const int64_t kb = cu_k[size_t(n)], ke = cu_k[size_t(n) + 1];
    const Shape qs = {1, qe - qb, c.H, c.D}, ks = {1, ke - kb, c.Hkv, c.D};
    const Tensor aq = from_ref(slice(q, 1, qb, qe), dt, dev);
    const Tensor ak = from_ref(slice(k, 1, kb, ke), dt, dev);
    const Tensor av = from_ref(slice(v, 1, kb, ke), dt, dev);
    Tensor o = poisoned(qs, dt, dev, &ctx), l = poisoned({1, c.H, qe - qb}, lse_dt, dev, &ctx);
    attention_fwd(ctx, o, l, aq, ak, av, c.params);
    Tensor gq = poisoned(qs, dt, dev, &ctx), gk = poisoned(ks, dt, dev, &ctx);
    Tensor gv = poisoned(ks, dt, dev, &ctx);
    attention_bwd(ctx, gq, gk, gv, from_ref(slice(dout, 1, qb, qe), dt, dev), aq, ak, av, o, l,
                  c.params);
    // Bitwise, -inf lse included (to_ref keeps it; -inf - -inf would be NaN, so compare as bits).
    auto same = [](const Ref& x, const Ref& y) {
      return x.v.size() == y.v.size() &&
             std::equal(x.v.begin(), x.v.end(), y.v.begin(), [](double a, double b) {
               return a == b || (std::isnan(a) && std::isnan(b));
             });
    };
    EXPECT_TRUE(same(to_ref(o), slice(got[0], 1, qb, qe))) << "out alone";
    EXPECT_TRUE(same(to_ref(l), slice(got[1], 2, qb, qe))) << "lse alone";
    EXPECT_TRUE(same(to_ref(gq), slice(got[2], 1, qb, qe))) << "dq alone";
    EXPECT_TRUE(same(to_ref(gk), slice(got[3], 1, kb, ke))) << "dk alone";
    EXPECT_TRUE(same(to_ref(gv), slice(got[4], 1, kb, ke))) << "dv alone";
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, AttentionPacked,
                         testing::Combine(testing::ValuesIn(kPackedCases),
                                          testing::ValuesIn(all_backends())),
                         case_name<PackedAttentionCase>);

TEST(AttentionPackedBadInput, NamesTheRule) {
  Context& ctx = context_for(Device::cpu());
  auto z = [](const Shape& s) { return Tensor::zeros(s, DType::f32); };
  const Tensor q = z({1, 6, 2, 8}), k = z({1, 9, 2, 8});
  Tensor out = Tensor::empty({1, 6, 2, 8}, DType::f32), lse = Tensor::empty({1, 2, 6}, DType::f32);
  const Tensor cq = int_tensor({0, 2, 6}, {3}), ck = int_tensor({0, 4, 9}, {3});
  EXPECT_LONGCTX_ERROR(attention_fwd(ctx, out, lse, q, k, k, {}, cq, {}), "attention_fwd",
                       "'cu_seqlens_q' and 'cu_seqlens_k' must be given together");
  EXPECT_LONGCTX_ERROR(attention_fwd(ctx, out, lse, q, k, k, {}, cq, int_tensor({0, 9}, {2})),
                       "'cu_seqlens_k'", "as many entries as 'cu_seqlens_q'");
  EXPECT_LONGCTX_ERROR(attention_fwd(ctx, out, lse, q, k, k, {}, cq, int_tensor({0, 4, 8}, {3})),
                       "'cu_seqlens_k'", "must end at the packed length T = 9");
  EXPECT_LONGCTX_ERROR(attention_fwd(ctx, Tensor::empty({2, 3, 2, 8}, DType::f32),
                                     Tensor::empty({2, 2, 3}, DType::f32), z({2, 3, 2, 8}),
                                     z({2, 9, 2, 8}), z({2, 9, 2, 8}), {}, cq, ck),
                       "'q'", "batch dimension 1 with cu_seqlens_q");
}

// ---- Decode ---------------------------------------------------------------------------------

struct DecodeCase {
  std::string name;
  int64_t Tq, Tmax, H, Hkv, D;
  std::vector<int> cache_seqlens;  // one per batch
  bool append;
  int num_splits;
  AttentionParams params;
};
LONGCTX_PRINTS_AS_NAME(DecodeCase)

const std::vector<DecodeCase> kDecodeCases = {
    {"llama3_gqa_1tok_append_auto_splits", 1, 300, 8, 2, 64, {150, 37}, true, 0, causal()},
    {"llama3_gqa_1tok_no_append_3_splits", 1, 300, 8, 2, 64, {299, 64}, false, 3, causal()},
    {"llama2_mha_1tok_1_split", 1, 200, 4, 4, 128, {199, 1}, true, 1, causal()},
    {"speculative_4tok_causal_5_splits", 4, 300, 4, 2, 64, {200, 57}, true, 5, causal()},
    {"mistral_window_decode", 2, 400, 4, 1, 32, {390, 100}, true, 2, window(32, 0, true)},
    {"mistral_window_1tok", 1, 400, 4, 1, 32, {390, 100}, true, 2, window(32, 0, true)},
    {"falcon_mqa_more_splits_than_keys", 1, 64, 4, 1, 64, {0, 20}, true, 16, causal()},
    {"empty_cache_no_append", 2, 64, 2, 1, 32, {0, 5}, false, 2, causal()},
    {"tiny_model_hdim16_decode", 1, 100, 4, 2, 16, {60, 99}, true, 3, causal()},
    // The f32 one-query kernel's head dims: a partial last chunk of 8 (D = 20: one full, one
    // partial; D = 44: a pass of 4 chunks, then a full and a partial; D = 3: the partial alone)
    // and key counts not a multiple of its 8-key step; one split (written in place).
    {"hdim20_partial_chunk_1_split", 1, 64, 2, 1, 20, {13, 50}, true, 1, causal()},
    {"hdim44_partial_chunk_auto_splits", 1, 300, 4, 2, 44, {270, 9}, true, 0, causal()},
    {"hdim3_partial_chunk_2_splits", 1, 40, 2, 2, 3, {30, 6}, false, 2, causal()},
    {"speculative_3tok_1_split", 3, 200, 4, 2, 32, {150, 17}, true, 1, causal()},
    {"gemma2_softcap_decode",
     1,
     100,
     4,
     2,
     256,
     {70, 99},
     true,
     3,
     with(causal(), [](AttentionParams& p) { p.softcap = 50.f; })},
};

class AttentionDecode : public testing::TestWithParam<std::tuple<DecodeCase, Backend>> {};

TEST_P(AttentionDecode, MatchesFullAttentionOverTheCache) {
  const auto& [c, backend] = GetParam();
  LONGCTX_SKIP_IF_UNAVAILABLE(backend.device);
  if (const std::string why = attention_supports(backend.device, backend.dtype, c.D); !why.empty())
    GTEST_SKIP() << "unsupported configuration: " << why;
  Context& ctx = context_for(backend.device);
  const Device dev = backend.device;
  const DType dt = backend.dtype, lse_dt = stat_dtype(dt);
  const int64_t B = int64_t(c.cache_seqlens.size());
  const Shape q_shape = {B, c.Tq, c.H, c.D}, cache_shape = {B, c.Tmax, c.Hkv, c.D};
  Rng rng(seed_of(c.name));
  const Ref q = rounded(random_ref(q_shape, rng), dt);
  const Ref k_cache = rounded(random_ref(cache_shape, rng), dt);
  const Ref v_cache = rounded(random_ref(cache_shape, rng), dt);
  const Ref k_new = rounded(random_ref({B, c.Tq, c.Hkv, c.D}, rng), dt);
  const Ref v_new = rounded(random_ref({B, c.Tq, c.Hkv, c.D}, rng), dt);
  Ref lens({B});
  for (int64_t b = 0; b < B; ++b) lens[b] = c.cache_seqlens[size_t(b)];

  const Tensor tk_cache = from_ref(k_cache, dt, dev), tv_cache = from_ref(v_cache, dt, dev);
  Tensor lens_host = Tensor::empty({B}, DType::i32);
  for (int64_t b = 0; b < B; ++b) lens_host.data_as<int32_t>()[b] = c.cache_seqlens[size_t(b)];
  const Tensor tlens = dev.is_cpu() ? lens_host : lens_host.to(dev, &ctx);
  Tensor out = poisoned(q_shape, dt, dev, &ctx), lse = poisoned({B, c.H, c.Tq}, lse_dt, dev, &ctx);
  attention_decode(ctx, out, lse, from_ref(q, dt, dev), tk_cache, tv_cache, tlens,
                   c.append ? from_ref(k_new, dt, dev) : Tensor(),
                   c.append ? from_ref(v_new, dt, dev) : Tensor(), c.params, c.num_splits);

  const Ref* kn = c.append ? &k_new : nullptr;
  const Ref* vn = c.append ? &v_new : nullptr;
  const auto exact = ref::attention_decode<Oracle>(q, k_cache, v_cache, c.cache_seqlens, kn, vn,
                                                   c.params, no_round);
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    const auto naive = ref::attention_decode<S>(q, k_cache, v_cache, c.cache_seqlens, kn, vn,
                                                c.params, rounding_for(dt));
    expect_close_2x(out, exact.out, naive.out, dt, "out");
    expect_lse_close(to_ref(lse), exact.lse, naive.lse, lse_dt);
  });
  // The append wrote k_new/v_new at [len, len + Tq) and nothing else.
  EXPECT_EQ(max_abs_diff(to_ref(tk_cache), exact.k_cache), 0.0) << "k_cache after the append";
  EXPECT_EQ(max_abs_diff(to_ref(tv_cache), exact.v_cache), 0.0) << "v_cache after the append";
  EXPECT_EQ(max_abs_diff(to_ref(tlens), lens), 0.0) << "cache_seqlens must not change";
}

INSTANTIATE_TEST_SUITE_P(Cases, AttentionDecode,
                         testing::Combine(testing::ValuesIn(kDecodeCases),
                                          testing::ValuesIn(all_backends())),
                         case_name<DecodeCase>);

// ---- Non-finite inputs ------------------------------------------------------------------------

// `got` has exactly the oracle's NaN and ±inf entries, and its finite entries follow the 2x rule.
// Returns how many entries of the oracle are not finite.
int64_t expect_nonfinite_as_reference(const Tensor& got, const Ref& exact, const Ref& naive,
                                      DType dtype, const std::string& what) {
  Ref g = to_ref(got), e = exact, n = naive;
  int64_t nonfinite = 0, mismatched = 0;
  for (int64_t i = 0; i < e.numel(); ++i) {
    const bool same = std::isnan(e[i])   ? std::isnan(g[i])
                      : std::isinf(e[i]) ? g[i] == e[i]
                                         : std::isfinite(g[i]);
    if (!same && ++mismatched <= 3)
      ADD_FAILURE() << what << "[" << i << "] = " << g[i] << ", reference " << e[i];
    if (!std::isfinite(e[i])) ++nonfinite;
    if (!std::isfinite(e[i]) || !same) g[i] = e[i] = n[i] = 0;
    if (!std::isfinite(n[i])) n[i] = e[i];  // the naive rounding overflowed: no allowance
  }
  expect_close_2x(from_ref(g, dtype), e, n, dtype, what);
  return nonfinite;
}

// One non-finite value in one input. A NaN in a q row gave that row out = 0 and lse = -inf
// where the reference is NaN, +inf in k likewise, and a NaN in k gave NaN in dq (through a
// masked key's 0 x NaN) where the forward showed none. Now the NaN and inf entries of every
// output and gradient are exactly the reference's: the visible positions a value reaches, and
// nothing masked.
struct NonFiniteCase {
  std::string name;
  std::string tensor;  // q, k, v or dout
  int64_t t, h, d;     // where in it: position, head, channel
  double value;
  AttentionParams params;
};
LONGCTX_PRINTS_AS_NAME(NonFiniteCase)

const std::vector<NonFiniteCase> kNonFiniteCases = {
    {"nan_in_q_causal", "q", 150, 1, 3, NAN, causal()},
    {"nan_in_q_noncausal", "q", 7, 0, 0, NAN, {}},
    {"pos_inf_in_k_causal", "k", 150, 0, 5, INFINITY, causal()},
    {"neg_inf_in_k_noncausal", "k", 269, 0, 5, -INFINITY, {}},
    {"nan_in_k_causal", "k", 150, 0, 2, NAN, causal()},
    {"nan_in_k_sliding_window", "k", 150, 0, 2, NAN, window(20, 0, true)},
    {"nan_in_v_causal", "v", 150, 0, 9, NAN, causal()},
    {"inf_in_v_window_both_sides", "v", 40, 0, 9, INFINITY, window(5, 3)},
    // Channel 18 of 20: in the finite check's vector tail on both ISAs (16 and 8 lanes).
    {"inf_in_v_tail_channel_causal", "v", 150, 0, 18, INFINITY, causal()},
    {"neg_inf_in_q_causal", "q", 200, 0, 0, -INFINITY, causal()},
    {"inf_in_q_softcap", "q", 100, 1, 4, INFINITY,
     with(causal(), [](AttentionParams& p) { p.softcap = 5.f; })},
    {"nan_in_dout_causal", "dout", 150, 1, 0, NAN, causal()},
};

class AttentionNonFinite : public testing::TestWithParam<std::tuple<NonFiniteCase, DType>> {};

// Two layouts: one sequence (the forward packs K and V once for all its heads), and four
// sequences on one thread (a pack per sequence and kv head, whose V is checked for finiteness
// once: PackedKV::v_finite), the value in the first sequence only.
void check_nonfinite_propagation(const NonFiniteCase& c, DType dt, int64_t B, Context& ctx) {
  SCOPED_TRACE(testing::Message() << "B " << B << ", " << ctx.cpu_threads() << " thread(s)");
  const DType lse_dt = stat_dtype(dt);
  // Two heads on one kv head, 270 tokens: three query tiles and two key tiles (128 x 256),
  // masked and full ones; D = 20 leaves a tail past 16 and 8 lanes.
  const int64_t T = 270, H = 2, Hkv = 1, D = 20;
  const Shape q_shape = {B, T, H, D}, kv_shape = {B, T, Hkv, D};
  Rng rng(seed_of(c.name));
  Ref q = rounded(random_ref(q_shape, rng), dt), k = rounded(random_ref(kv_shape, rng), dt);
  Ref v = rounded(random_ref(kv_shape, rng), dt), dout = rounded(random_ref(q_shape, rng), dt);
  Ref& target = c.tensor == "q" ? q : c.tensor == "k" ? k : c.tensor == "v" ? v : dout;
  target[(c.t * target.shape[2] + c.h) * D + c.d] = c.value;
  const Tensor tq = from_ref(q, dt), tk = from_ref(k, dt), tv = from_ref(v, dt);
  const auto exact = ref::attention_fwd<Oracle>(q, k, v, c.params, no_round);
  const auto grads = ref::attention_bwd<Oracle>(dout, q, k, v, c.params, no_round);

  // The kernels of the widest ISA, then the AVX2 ones on a CPU with AVX-512 (their finite checks
  // and tails are their own code).
  auto run_and_check = [&](const char* isa) {
    SCOPED_TRACE(isa);
    Tensor out = poisoned(q_shape, dt, Device::cpu(), &ctx);
    Tensor lse = poisoned({B, H, T}, lse_dt, Device::cpu(), &ctx);
    attention_fwd(ctx, out, lse, tq, tk, tv, c.params);
    Tensor dq = poisoned(q_shape, dt, Device::cpu(), &ctx);
    Tensor dk = poisoned(kv_shape, dt, Device::cpu(), &ctx);
    Tensor dv = poisoned(kv_shape, dt, Device::cpu(), &ctx);
    attention_bwd(ctx, dq, dk, dv, from_ref(dout, dt), tq, tk, tv, out, lse, c.params);
    int64_t nonfinite = 0;
    with_naive_type(dt, [&](auto tag) {
      using S = typename decltype(tag)::type;
      const auto naive = ref::attention_fwd<S>(q, k, v, c.params, rounding_for(dt));
      const auto naive_grads = ref::attention_bwd<S>(dout, q, k, v, c.params, rounding_for(dt));
      nonfinite += expect_nonfinite_as_reference(out, exact.out, naive.out, dt, "out");
      nonfinite += expect_nonfinite_as_reference(lse, exact.lse, naive.lse, lse_dt, "lse");
      nonfinite += expect_nonfinite_as_reference(dq, grads.dq, naive_grads.dq, dt, "dq");
      nonfinite += expect_nonfinite_as_reference(dk, grads.dk, naive_grads.dk, dt, "dk");
      nonfinite += expect_nonfinite_as_reference(dv, grads.dv, naive_grads.dv, dt, "dv");
    });
    EXPECT_GT(nonfinite, 0) << "the value reached no output: the case tests nothing";
  };
  run_and_check("widest ISA");
  if (cpu::cpu_isa() == cpu::CpuIsa::avx512) {
    const IsaCap avx2(cpu::CpuIsa::avx2);
    run_and_check("AVX2 kernels");
  }
}

TEST_P(AttentionNonFinite, PropagatesAsTheReference) {
  const auto& [c, dt] = GetParam();
  check_nonfinite_propagation(c, dt, 1, context_for(Device::cpu()));
  Context one_thread(Device::cpu(), 1);
  check_nonfinite_propagation(c, dt, 4, one_thread);
}

INSTANTIATE_TEST_SUITE_P(Cases, AttentionNonFinite,
                         testing::Combine(testing::ValuesIn(kNonFiniteCases),
                                          testing::Values(DType::f32, DType::f64)),
                         [](const testing::TestParamInfo<std::tuple<NonFiniteCase, DType>>& info) {
                           return std::get<0>(info.param).name + "_" +
                                  dtype_name(std::get<1>(info.param));
                         });

// Decode: a NaN in the cache beyond a row's length is never read; +inf within it makes the rows
// that see it NaN, whatever the number of splits (the combine carries NaN, and a row whose keys
// all score -inf is NaN, not out = 0).
TEST(AttentionNonFiniteDecode, PropagatesAsTheReference) {
  Context& ctx = context_for(Device::cpu());
  for (const DType dt : {DType::f32, DType::f64})
    for (const int splits : {1, 3}) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + ", " + std::to_string(splits) + " splits");
      const int64_t Tq = 1, Tmax = 64, H = 2, Hkv = 1, D = 16;
      const std::vector<int> lens = {40, 50, 30};
      const int64_t B = int64_t(lens.size());
      Rng rng(5);
      const Ref q = rounded(random_ref({B, Tq, H, D}, rng), dt);
      Ref k = rounded(random_ref({B, Tmax, Hkv, D}, rng), dt);
      const Ref v = rounded(random_ref({B, Tmax, Hkv, D}, rng), dt);
      k[((0 * Tmax + 45) * Hkv) * D + 3] = NAN;       // batch 0: past its 40 keys
      k[((1 * Tmax + 10) * Hkv) * D + 3] = INFINITY;  // batch 1: within its 50
      // Batch 2: every key's first channel +inf against a q whose first channel is -inf: every
      // visible score is -inf.
      Ref q2 = q;
      for (int64_t h = 0; h < H; ++h) q2[((2 * Tq) * H + h) * D] = -INFINITY;
      for (int64_t j = 0; j < Tmax; ++j) k[((2 * Tmax + j) * Hkv) * D] = INFINITY;
      Tensor lens_t = Tensor::empty({B}, DType::i32);
      for (int64_t b = 0; b < B; ++b) lens_t.data_as<int32_t>()[b] = lens[size_t(b)];
      Tensor out = poisoned({B, Tq, H, D}, dt, Device::cpu(), &ctx);
      Tensor lse = poisoned({B, H, Tq}, stat_dtype(dt), Device::cpu(), &ctx);
      attention_decode(ctx, out, lse, from_ref(q2, dt), from_ref(k, dt), from_ref(v, dt), lens_t,
                       {}, {}, causal(), splits);
      const auto exact =
          ref::attention_decode<Oracle>(q2, k, v, lens, nullptr, nullptr, causal(), no_round);
      with_naive_type(dt, [&](auto tag) {
        using S = typename decltype(tag)::type;
        const auto naive =
            ref::attention_decode<S>(q2, k, v, lens, nullptr, nullptr, causal(), rounding_for(dt));
        EXPECT_GT(expect_nonfinite_as_reference(out, exact.out, naive.out, dt, "out"), 0);
        expect_nonfinite_as_reference(lse, exact.lse, naive.lse, stat_dtype(dt), "lse");
      });
      const Ref got = to_ref(out);
      for (int64_t x = 0; x < H * D; ++x) EXPECT_TRUE(std::isfinite(got[x])) << "batch 0";
      for (int64_t x = 2 * H * D; x < 3 * H * D; ++x) EXPECT_TRUE(std::isnan(got[x])) << "batch 2";
    }
}

// ---- The reference against finite differences -----------------------------------------------

TEST(AttentionReference, GradientsMatchFiniteDifferences) {
  const std::vector<std::pair<const char*, AttentionParams>> variants = {
      {"plain", {}},
      {"causal_tq_lt_tk", causal()},
      {"window_softcap", with(window(2, 1), [](AttentionParams& p) { p.softcap = 1.5f; })},
  };
  for (const auto& [what, params] : variants) {
    Rng rng(11);
    const Ref q = random_ref({1, 3, 2, 4}, rng, -2, 2), k = random_ref({1, 5, 1, 4}, rng, -2, 2);
    const Ref v = random_ref({1, 5, 1, 4}, rng), dout = random_ref({1, 3, 2, 4}, rng);
    auto loss = [&, p = params](const std::vector<Ref>& in) {
      return dot(ref::attention_fwd<double>(in[0], in[1], in[2], p, no_round).out, dout);
    };
    const auto g = ref::attention_bwd<double>(dout, q, k, v, params, no_round);
    EXPECT_LE(max_abs_diff(g.dq, finite_difference(loss, {q, k, v}, 0)), 1e-8) << what;
    EXPECT_LE(max_abs_diff(g.dk, finite_difference(loss, {q, k, v}, 1)), 1e-8) << what;
    EXPECT_LE(max_abs_diff(g.dv, finite_difference(loss, {q, k, v}, 2)), 1e-8) << what;
  }
}

// ---- A long sequence on the CPU, checked on a sample of rows ----------------------------------

// Forward at T = 32768, backward at T = 8192 (the backward's memory is O(T) as well, but at 32k it
// takes ~10x the forward's time, too long for a unit test under a sanitizer).
void check_long_causal(int64_t T, bool backward) {
  Context& ctx = context_for(Device::cpu());
  const int64_t H = 1, D = 64;
  const DType dt = DType::f32;
  const AttentionParams params = causal();
  Rng rng{uint64_t(T)};
  const Ref q = rounded(random_ref({1, T, H, D}, rng), dt);
  const Ref k = rounded(random_ref({1, T, H, D}, rng), dt);
  const Ref v = rounded(random_ref({1, T, H, D}, rng), dt);
  const Ref dout = rounded(random_ref({1, T, H, D}, rng), dt);
  const Tensor tq = from_ref(q, dt), tk = from_ref(k, dt), tv = from_ref(v, dt);
  Tensor out = poisoned({1, T, H, D}, dt, Device::cpu(), &ctx);
  Tensor lse = poisoned({1, H, T}, dt, Device::cpu(), &ctx);
  const auto t0 = std::chrono::steady_clock::now();
  attention_fwd(ctx, out, lse, tq, tk, tv, params);
  std::printf("T = %ld causal, H = 1, D = 64: fwd %.2f s\n", long(T),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());

  // Rows at tile edges, the first and last, and a few at random.
  std::vector<int64_t> rows = {0, 1, 63, 64, 127, 128, 255, 256, 4097, T - 1};
  for (int n = 0; n < 4; ++n) rows.push_back(rng.integer(0, T - 1));
  const auto exact = ref::attention_fwd<Oracle>(q, k, v, params, no_round, rows);
  const auto naive = ref::attention_fwd<float>(q, k, v, params, rounding_for(dt), rows);
  expect_close_2x(from_ref(gather_rows(to_ref(out), rows), dt), gather_rows(exact.out, rows),
                  gather_rows(naive.out, rows), dt, "out (sampled rows)");
  expect_lse_close(gather(to_ref(lse), rows), gather(exact.lse, rows), gather(naive.lse, rows), dt);
  if (!backward) return;

  Tensor dq = poisoned({1, T, H, D}, dt, Device::cpu(), &ctx);
  Tensor dk = poisoned({1, T, H, D}, dt, Device::cpu(), &ctx);
  Tensor dv = poisoned({1, T, H, D}, dt, Device::cpu(), &ctx);
  const auto t1 = std::chrono::steady_clock::now();
  attention_bwd(ctx, dq, dk, dv, from_ref(dout, dt), tq, tk, tv, out, lse, params);
  std::printf("T = %ld causal, H = 1, D = 64: bwd %.2f s\n", long(T),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count());
  const auto g_exact = ref::attention_bwd<Oracle>(dout, q, k, v, params, no_round, rows);
  const auto g_naive = ref::attention_bwd<float>(dout, q, k, v, params, rounding_for(dt), rows);
  expect_close_2x(from_ref(gather_rows(to_ref(dq), rows), dt), gather_rows(g_exact.dq, rows),
                  gather_rows(g_naive.dq, rows), dt, "dq (sampled rows)");
  // dk and dv of a key need every query's probabilities; the whole-sequence checks of those are
  // the cases above. Here: every entry was written (the poison is NaN), and finite.
  for (const Tensor* t : {&dk, &dv}) {
    const Ref r = to_ref(*t);
    int64_t bad = 0;
    for (double x : r.v) bad += !std::isfinite(x);
    EXPECT_EQ(bad, 0) << "non-finite entries in dk/dv";
  }
}

TEST(AttentionLong, Causal32kForwardOnTheCpuMatchesSampledRows) {
  check_long_causal(32768, /*backward=*/false);
}

TEST(AttentionLong, Causal8kBackwardOnTheCpuMatchesSampledRows) {
  check_long_causal(8192, /*backward=*/true);
}

// ---- NaN and inf on CUDA ---------------------------------------------------------------------

// CUDA backends only (cuda_backends()): the CPU backend's NaN propagation is its own change with
// its own tests.

// Where the reference is NaN or +-inf, `actual` holds the same (NaN, or the same infinity); where
// the reference is finite, `actual` is finite and follows the 2x rule. Returns the number of
// non-finite reference elements, so that a case can assert it tested some.
int64_t expect_same_non_finite(const Tensor& actual, const Ref& exact, const Ref& naive,
                               DType dtype, const std::string& what) {
  Ref got = to_ref(actual), e = exact, n = naive;
  int64_t non_finite = 0, mismatched = 0;
  for (int64_t i = 0; i < e.numel(); ++i) {
    const bool same = std::isnan(e[i])   ? std::isnan(got[i])
                      : std::isinf(e[i]) ? got[i] == e[i]
                                         : std::isfinite(got[i]);
    if (!same && ++mismatched <= 3)
      ADD_FAILURE() << what << "[" << i << "] = " << got[i] << ", reference " << e[i];
    if (!std::isfinite(e[i])) {
      ++non_finite;
      got[i] = e[i] = n[i] = 0;
    }
  }
  EXPECT_EQ(mismatched, 0) << what << ": elements whose finiteness differs from the reference";
  if (mismatched == 0) expect_close_2x(from_ref(got, dtype), e, n, dtype, what);
  return non_finite;
}

// One non-finite element planted in q, k or v (issue 20, item 8). The cases put it where every
// query of its group gives it a nonzero weight (a query row; key 0 under a causal mask with
// Tq = Tk, which every query sees): there the tile products of the kernels and the reference's
// per-element sums agree exactly. Where a non-finite value meets a zero weight inside a tile
// (a masked key, a -inf score), CUDA's products give 0 * inf = NaN where the reference skips the
// term; attention.h states it, and the case marked forward_only below shows the forward exact.
struct PlantedCase {
  std::string name;
  int64_t B, Tq, Tk, H, Hkv, D;
  AttentionParams params;
  char tensor;         // 'q', 'k' or 'v'
  int64_t b, t, h, d;  // the planted element (h is a kv head for k and v)
  double value;        // NaN or +inf
  int score_sign;      // k = +inf: +1 (-1) makes q[., ., h, d] > 0 (< 0) for the group's heads
  bool forward_only;   // the backward meets 0 * inf in dQ = dS K: not comparable
};
LONGCTX_PRINTS_AS_NAME(PlantedCase)

const std::vector<PlantedCase> kPlantedCases = {
    {"nan_in_q_bidirectional", 2, 40, 50, 4, 2, 64, {}, 'q', 1, 7, 3, 5, NAN, 0, false},
    {"nan_in_k_seen_by_all_causal", 2, 45, 45, 4, 2, 64, causal(), 'k', 0, 0, 1, 9, NAN, 0, false},
    {"pos_inf_in_k_positive_scores", 1, 45, 45, 4, 2, 64, causal(), 'k', 0, 0, 0, 3, INFINITY, 1,
     false},
    // Every score on key 0 is -inf: query 0 sees only key 0, so its row is NaN (exp(-inf - -inf));
    // the other rows leave key 0 out. dQ of those rows would add 0 * inf.
    {"pos_inf_in_k_negative_scores", 1, 45, 45, 4, 2, 64, causal(), 'k', 0, 0, 0, 3, INFINITY, -1,
     true},
    {"nan_in_v_seen_by_all_causal", 1, 45, 45, 4, 1, 64, causal(), 'v', 0, 0, 0, 11, NAN, 0, false},
};

class AttentionPlantedNonFinite : public testing::TestWithParam<std::tuple<PlantedCase, Backend>> {
};

TEST_P(AttentionPlantedNonFinite, PropagatesAsTheReference) {
  const auto& [c, backend] = GetParam();
  LONGCTX_SKIP_IF_UNAVAILABLE(backend.device);
  if (const std::string why = attention_supports(backend.device, backend.dtype, c.D); !why.empty())
    GTEST_SKIP() << "unsupported configuration: " << why;
  Context& ctx = context_for(backend.device);
  const Device dev = backend.device;
  const DType dt = backend.dtype, lse_dt = stat_dtype(dt);
  const Shape q_shape = {c.B, c.Tq, c.H, c.D}, kv_shape = {c.B, c.Tk, c.Hkv, c.D};
  Rng rng(seed_of(c.name));
  Ref q = rounded(random_ref(q_shape, rng), dt), k = rounded(random_ref(kv_shape, rng), dt);
  Ref v = rounded(random_ref(kv_shape, rng), dt);
  const Ref dout = rounded(random_ref(q_shape, rng), dt);
  if (c.tensor == 'q') q[((c.b * c.Tq + c.t) * c.H + c.h) * c.D + c.d] = c.value;
  if (c.tensor == 'k') k[((c.b * c.Tk + c.t) * c.Hkv + c.h) * c.D + c.d] = c.value;
  if (c.tensor == 'v') v[((c.b * c.Tk + c.t) * c.Hkv + c.h) * c.D + c.d] = c.value;
  const int64_t G = c.H / c.Hkv;
  if (c.score_sign != 0)
    for (int64_t t = 0; t < c.Tq; ++t)
      for (int64_t h = c.h * G; h < (c.h + 1) * G; ++h) {
        double& x = q[((c.b * c.Tq + t) * c.H + h) * c.D + c.d];
        x = c.score_sign * std::abs(x);
      }
  const Tensor tq = from_ref(q, dt, dev), tk = from_ref(k, dt, dev), tv = from_ref(v, dt, dev);

  Tensor out = poisoned(q_shape, dt, dev, &ctx),
         lse = poisoned({c.B, c.H, c.Tq}, lse_dt, dev, &ctx);
  attention_fwd(ctx, out, lse, tq, tk, tv, c.params);
  const auto exact = ref::attention_fwd<Oracle>(q, k, v, c.params, no_round);
  int64_t non_finite = 0;
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    const auto naive = ref::attention_fwd<S>(q, k, v, c.params, rounding_for(dt));
    non_finite += expect_same_non_finite(out, exact.out, naive.out, dt, "out");
    expect_same_non_finite(lse, exact.lse, naive.lse, lse_dt, "lse");
  });
  EXPECT_GT(non_finite, 0) << "the planted value reached no output: the case tests nothing";
  EXPECT_LT(non_finite, exact.out.numel()) << "every output is non-finite: the case is too coarse";
  if (c.forward_only) return;

  Tensor dq = poisoned(q_shape, dt, dev, &ctx), dk = poisoned(kv_shape, dt, dev, &ctx);
  Tensor dv = poisoned(kv_shape, dt, dev, &ctx);
  attention_bwd(ctx, dq, dk, dv, from_ref(dout, dt, dev), tq, tk, tv, out, lse, c.params);
  const auto grads = ref::attention_bwd<Oracle>(dout, q, k, v, c.params, no_round);
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    const auto naive = ref::attention_bwd<S>(dout, q, k, v, c.params, rounding_for(dt));
    expect_same_non_finite(dq, grads.dq, naive.dq, dt, "dq");
    expect_same_non_finite(dk, grads.dk, naive.dk, dt, "dk");
    expect_same_non_finite(dv, grads.dv, naive.dv, dt, "dv");
  });
}

INSTANTIATE_TEST_SUITE_P(Cases, AttentionPlantedNonFinite,
                         testing::Combine(testing::ValuesIn(kPlantedCases),
                                          testing::ValuesIn(cuda_backends())),
                         case_name<PlantedCase>);

// Decode: a NaN query row, a non-finite cache entry that every query sees, split-KV combine over
// them; and NaN poison in the cache past each batch's length, which no query may read.
TEST(AttentionNonFiniteDecode, PropagatesAsTheReferenceAndIgnoresTheUnusedCache) {
  for (const Backend& backend : cuda_backends()) {
    LONGCTX_SKIP_IF_UNAVAILABLE(backend.device);
    Context& ctx = context_for(backend.device);
    const Device dev = backend.device;
    const DType dt = backend.dtype, lse_dt = stat_dtype(dt);
    const int64_t B = 3, Tq = 1, Tmax = 300, H = 4, Hkv = 2, D = 64;
    const std::vector<int> lens = {250, 120, 200};
    Rng rng(77);
    Ref q = rounded(random_ref({B, Tq, H, D}, rng), dt);
    Ref k_cache = rounded(random_ref({B, Tmax, Hkv, D}, rng), dt);
    Ref v_cache = rounded(random_ref({B, Tmax, Hkv, D}, rng), dt);
    const Ref k_new = rounded(random_ref({B, Tq, Hkv, D}, rng), dt);
    const Ref v_new = rounded(random_ref({B, Tq, Hkv, D}, rng), dt);
    q[((0 * Tq + 0) * H + 2) * D + 5] = NAN;                   // batch 0, head 2
    k_cache[((1 * Tmax + 17) * Hkv + 0) * D + 3] = NAN;        // batch 1, kv head 0, key 17
    v_cache[((2 * Tmax + 199) * Hkv + 1) * D + 8] = INFINITY;  // batch 2, kv head 1, key 199
    for (int64_t b = 0; b < B; ++b)  // past the keys after the append: never read
      for (int64_t t = lens[size_t(b)] + Tq; t < Tmax; ++t)
        for (int64_t x = 0; x < Hkv * D; ++x) {
          k_cache[(b * Tmax + t) * Hkv * D + x] = NAN;
          v_cache[(b * Tmax + t) * Hkv * D + x] = NAN;
        }
    Tensor lens_host = Tensor::empty({B}, DType::i32);
    for (int64_t b = 0; b < B; ++b) lens_host.data_as<int32_t>()[b] = lens[size_t(b)];
    for (int splits : {1, 4}) {
      const std::string what = std::string(dtype_name(dt)) + ", splits " + std::to_string(splits);
      Tensor out = poisoned({B, Tq, H, D}, dt, dev, &ctx);
      Tensor lse = poisoned({B, H, Tq}, lse_dt, dev, &ctx);
      attention_decode(ctx, out, lse, from_ref(q, dt, dev), from_ref(k_cache, dt, dev),
                       from_ref(v_cache, dt, dev), lens_host.to(dev, &ctx),
                       from_ref(k_new, dt, dev), from_ref(v_new, dt, dev), causal(), splits);
      const auto exact = ref::attention_decode<Oracle>(q, k_cache, v_cache, lens, &k_new, &v_new,
                                                       causal(), no_round);
      with_naive_type(dt, [&](auto tag) {
        using S = typename decltype(tag)::type;
        const auto naive = ref::attention_decode<S>(q, k_cache, v_cache, lens, &k_new, &v_new,
                                                    causal(), rounding_for(dt));
        const int64_t nan_out =
            expect_same_non_finite(out, exact.out, naive.out, dt, "out, " + what);
        const int64_t nan_lse =
            expect_same_non_finite(lse, exact.lse, naive.lse, lse_dt, "lse, " + what);
        // Head 2 of batch 0 (q) and heads 0, 1 of batch 1 (k): whole rows, lse too; heads 2, 3 of
        // batch 2 (v): column 8 of out only, +inf.
        EXPECT_EQ(nan_out, (1 + 2) * D + 2) << what;
        EXPECT_EQ(nan_lse, 1 + 2) << what;
      });
    }
  }
}

// ---- Launch grids past 65535 blocks on CUDA ---------------------------------------------------

// B * num_splits = 300 * 256 blocks of the decode forward, and B = 65537 in the backward: both
// pass gridDim.y/z's limit of 65535 (kernels/common/grid.h lays them out on x).
TEST(AttentionGrid, DecodeWithMoreBatchTimesSplitBlocksThanGridZAllows) {
  for (const Backend& backend : cuda_backends()) {
    LONGCTX_SKIP_IF_UNAVAILABLE(backend.device);
    Context& ctx = context_for(backend.device);
    const Device dev = backend.device;
    const DType dt = backend.dtype;
    const int64_t B = 300, Tq = 1, Tmax = 40, H = 2, Hkv = 1, D = 32;
    Rng rng(5);
    std::vector<int> lens(static_cast<size_t>(B));
    for (int& len : lens) len = int(rng.integer(0, Tmax - 1));
    const Ref q = rounded(random_ref({B, Tq, H, D}, rng), dt);
    const Ref kc = rounded(random_ref({B, Tmax, Hkv, D}, rng), dt);
    const Ref vc = rounded(random_ref({B, Tmax, Hkv, D}, rng), dt);
    const Ref kn = rounded(random_ref({B, Tq, Hkv, D}, rng), dt);
    const Ref vn = rounded(random_ref({B, Tq, Hkv, D}, rng), dt);
    Tensor lens_host = Tensor::empty({B}, DType::i32);
    for (int64_t b = 0; b < B; ++b) lens_host.data_as<int32_t>()[b] = lens[size_t(b)];
    Tensor out = poisoned({B, Tq, H, D}, dt, dev, &ctx);
    Tensor lse = poisoned({B, H, Tq}, stat_dtype(dt), dev, &ctx);
    attention_decode(ctx, out, lse, from_ref(q, dt, dev), from_ref(kc, dt, dev),
                     from_ref(vc, dt, dev), lens_host.to(dev, &ctx), from_ref(kn, dt, dev),
                     from_ref(vn, dt, dev), causal(), /*num_splits=*/256);
    const auto exact = ref::attention_decode<Oracle>(q, kc, vc, lens, &kn, &vn, causal(), no_round);
    with_naive_type(dt, [&](auto tag) {
      using S = typename decltype(tag)::type;
      const auto naive =
          ref::attention_decode<S>(q, kc, vc, lens, &kn, &vn, causal(), rounding_for(dt));
      expect_close_2x(out, exact.out, naive.out, dt, std::string("out ") + dtype_name(dt));
      expect_lse_close(to_ref(lse), exact.lse, naive.lse, stat_dtype(dt));
    });
  }
}

TEST(AttentionGrid, BackwardWithMoreBatchesThanGridZAllows) {
  for (const Backend& backend : cuda_backends()) {
    LONGCTX_SKIP_IF_UNAVAILABLE(backend.device);
    Context& ctx = context_for(backend.device);
    const Device dev = backend.device;
    const DType dt = backend.dtype;
    const int64_t B = 65537, T = 2, H = 2, Hkv = 1, D = 32;
    const AttentionParams params = causal();
    Rng rng(6);
    const Ref q = rounded(random_ref({B, T, H, D}, rng), dt);
    const Ref k = rounded(random_ref({B, T, Hkv, D}, rng), dt);
    const Ref v = rounded(random_ref({B, T, Hkv, D}, rng), dt);
    const Ref dout = rounded(random_ref({B, T, H, D}, rng), dt);
    const Tensor tq = from_ref(q, dt, dev), tk = from_ref(k, dt, dev), tv = from_ref(v, dt, dev);
    Tensor out = poisoned({B, T, H, D}, dt, dev, &ctx);
    Tensor lse = poisoned({B, H, T}, stat_dtype(dt), dev, &ctx);
    attention_fwd(ctx, out, lse, tq, tk, tv, params);
    Tensor dq = poisoned({B, T, H, D}, dt, dev, &ctx), dk = poisoned({B, T, Hkv, D}, dt, dev, &ctx);
    Tensor dv = poisoned({B, T, Hkv, D}, dt, dev, &ctx);
    attention_bwd(ctx, dq, dk, dv, from_ref(dout, dt, dev), tq, tk, tv, out, lse, params);
    const auto exact = ref::attention_fwd<Oracle>(q, k, v, params, no_round);
    const auto grads = ref::attention_bwd<Oracle>(dout, q, k, v, params, no_round);
    with_naive_type(dt, [&](auto tag) {
      using S = typename decltype(tag)::type;
      const auto naive = ref::attention_fwd<S>(q, k, v, params, rounding_for(dt));
      const auto naive_g = ref::attention_bwd<S>(dout, q, k, v, params, rounding_for(dt));
      const std::string name = dtype_name(dt);
      expect_close_2x(out, exact.out, naive.out, dt, "out " + name);
      expect_close_2x(dq, grads.dq, naive_g.dq, dt, "dq " + name);
      expect_close_2x(dk, grads.dk, naive_g.dk, dt, "dk " + name);
      expect_close_2x(dv, grads.dv, naive_g.dv, dt, "dv " + name);
    });
  }
}

// ---- The one table of CUDA head dims ----------------------------------------------------------

// attention_supports, the dispatch and the instantiations read kernels/attention/head_dims.h:
// f32 takes every head dim 1 .. 256 in the smallest bucket that holds it, bf16 and f16 exactly
// the tensor-core list.
TEST(AttentionSupports, CudaHeadDimsFollowTheOneTable) {
  using cuda::attn::f32_head_dim_bucket;
  using cuda::attn::is_tensor_core_head_dim;
  const std::vector<int64_t> tensor_core = {32, 64, 96, 128, 256};
  for (int64_t D = -1; D <= 300; ++D) {
    const bool f32_ok = attention_supports(Device::cuda(0), DType::f32, D).empty();
    EXPECT_EQ(f32_ok, D >= 1 && D <= 256) << "f32, D = " << D;
    if (f32_ok) {
      const int bucket = f32_head_dim_bucket(D);
      EXPECT_GE(bucket, D);
      for (int smaller : cuda::attn::kF32HeadDimBuckets)
        EXPECT_FALSE(smaller >= D && smaller < bucket) << "D = " << D << " fits bucket " << smaller;
    } else {
      EXPECT_EQ(f32_head_dim_bucket(D), 0) << "D = " << D;
    }
    const bool listed = std::count(tensor_core.begin(), tensor_core.end(), D) == 1;
    EXPECT_EQ(is_tensor_core_head_dim(D), listed) << "D = " << D;
    for (DType dt : {DType::bf16, DType::f16})
      EXPECT_EQ(attention_supports(Device::cuda(0), dt, D).empty(), listed)
          << dtype_name(dt) << ", D = " << D;
  }
  const std::string why = attention_supports(Device::cuda(0), DType::f32, 300);
  for (const char* fragment : {"f32 head dims 1 .. 256", "got 300"})
    EXPECT_NE(why.find(fragment), std::string::npos) << why;
}

// ---- Bad inputs -----------------------------------------------------------------------------

TEST(AttentionBadInput, NamesTheArgument) {
  Context& ctx = context_for(Device::cpu());
  const DType f32 = DType::f32;
  Tensor q = Tensor::zeros({1, 4, 6, 8}, f32), k = Tensor::zeros({1, 5, 2, 8}, f32);
  Tensor v = Tensor::zeros({1, 5, 2, 8}, f32);
  Tensor out = Tensor::empty({1, 4, 6, 8}, f32), lse = Tensor::empty({1, 6, 4}, f32);
  Tensor k4 = Tensor::zeros({1, 5, 4, 8}, f32);
  EXPECT_LONGCTX_ERROR(attention_fwd(ctx, out, lse, q, k4, k4), "attention_fwd", "'k'", "Hkv = 4",
                       "H = 6");
  EXPECT_LONGCTX_ERROR(attention_fwd(ctx, out, Tensor::empty({1, 6, 4}, DType::f64), q, k, v),
                       "'lse'", "expected dtype f32", "got f64");
  EXPECT_LONGCTX_ERROR(attention_fwd(ctx, out, lse, q, k, Tensor::zeros({1, 5, 2, 9}, f32)), "'v'",
                       "expected shape (1, 5, 2, 8)");
  EXPECT_LONGCTX_ERROR(attention_fwd(ctx, out, lse, q.to_dtype(DType::bf16), k, v), "'q'", "bf16",
                       "supported: f32, f64");
  EXPECT_LONGCTX_ERROR(attention_fwd(ctx, q, lse, q, k, v), "'out'", "overlaps input 'q'");
  EXPECT_LONGCTX_ERROR(attention_fwd(ctx, out, lse, q, k, v, window(-2, 0)), "'window_left'",
                       "must be >= -1");
  EXPECT_LONGCTX_ERROR(
      attention_fwd(ctx, out, lse, q, k, v, with({}, [](AttentionParams& p) { p.softcap = -1; })),
      "'softcap'", "must be >= 0");
  Tensor dq = Tensor::empty({1, 4, 6, 8}, f32), dk = Tensor::empty({1, 5, 2, 8}, f32);
  Tensor dv = Tensor::empty({1, 5, 2, 8}, f32);
  EXPECT_LONGCTX_ERROR(attention_bwd(ctx, q, dk, dv, out, q, k, v, out, lse, {}), "attention_bwd",
                       "'dq'", "overlaps input 'q'");
  EXPECT_LONGCTX_ERROR(attention_bwd(ctx, dq, dk, dk, out, q, k, v, out, lse, {}), "'dk'",
                       "overlaps");

  // Head dims on CUDA: the one table says what is supported.
  const std::string why = attention_supports(Device::cuda(0), DType::bf16, 80);
  for (const char* fragment : {"head dims 32, 64, 96, 128 and 256", "got 80"})
    EXPECT_NE(why.find(fragment), std::string::npos) << why;
  EXPECT_EQ(attention_supports(Device::cuda(0), DType::f16, 128), "");
  EXPECT_EQ(attention_supports(Device::cpu(), DType::f32, 80), "");
  EXPECT_NE(attention_supports(Device::cpu(), DType::bf16, 64), "");
  if (cached_cuda_status().available()) {
    Context& gpu = context_for(Device::cuda(0));
    const Shape s = {1, 4, 2, 80};
    Tensor g = Tensor::zeros(s, DType::bf16, Device::cuda(0), &gpu);
    Tensor g_out = Tensor::empty(s, DType::bf16, Device::cuda(0), &gpu);
    Tensor g_lse = Tensor::empty({1, 2, 4}, f32, Device::cuda(0), &gpu);
    EXPECT_LONGCTX_ERROR(attention_fwd(gpu, g_out, g_lse, g, g, g), "attention_fwd",
                         "head dims 32, 64, 96, 128 and 256", "got 80");
  }
}

// The decode step's two-heads path (AVX-512, f32, an even GQA group: attend_two_f32) gives
// attend_one's bits on each head: against the same call with the ISA capped to AVX2 (one head at
// a time), over splits, windows, softcap, head dims up to kOneQueryMaxD (512), keys of different
// lengths, and pairs where one head's blocks all score -inf (or its query is NaN) while the
// other's do not (each head then adds its own blocks alone); those also against the reference's
// non-finite rules.
TEST(AttentionDecode, TwoHeadsAtOnceGiveOneHeadsBits) {
  if (cpu::cpu_isa() != cpu::CpuIsa::avx512) GTEST_SKIP() << "no AVX-512 on this machine";
  Context& ctx = context_for(Device::cpu());
  const DType dt = DType::f32;
  const int64_t B = 3, Tmax = 700;
  const std::vector<int> lens = {650, 1, 300};
  struct Case {
    int64_t H, Hkv;
    AttentionParams p;
  };
  const std::vector<Case> shapes = {
      {4, 2, causal()},
      {8, 2, window(40, 0, true)},
      {4, 2, with(causal(), [](AttentionParams& p) { p.softcap = 5.f; })},
      {2, 1, with(window(70, 3), [](AttentionParams& p) { p.softcap = 30.f; })},
  };
  int seed = 0;
  for (const Case& c : shapes)
    for (int64_t D : {3, 20, 64, 512})
      for (int splits : {1, 3, 0})
        for (int nonfinite : {0, 1, 2}) {
          SCOPED_TRACE(testing::Message() << "H " << c.H << " Hkv " << c.Hkv << " D " << D
                                          << " splits " << splits << " nonfinite " << nonfinite);
          Rng rng(1100 + seed++);
          Ref q = random_ref({B, 1, c.H, D}, rng, -3, 3);
          Ref k = random_ref({B, Tmax, c.Hkv, D}, rng, -3, 3);
          const Ref v = random_ref({B, Tmax, c.Hkv, D}, rng);
          if (nonfinite) {
            // Batch 0: head 0's query -inf in channel 0 and keys [0, 200) positive there, so its
            // first blocks score -inf and its later ones +inf. Batch 2: head 1 all -inf.
            for (int64_t j = 0; j < Tmax; ++j)
              for (int64_t g = 0; g < c.Hkv; ++g) {
                k[((0 * Tmax + j) * c.Hkv + g) * D] = j < 200 ? 1.0 : -1.0;
                k[((2 * Tmax + j) * c.Hkv + g) * D] = 1.0;
              }
            q[(0 * c.H + 0) * D] = -INFINITY;
            q[(2 * c.H + 1) * D] = -INFINITY;
            if (nonfinite == 2) q[(1 * c.H + 0) * D + D - 1] = NAN;
          }
          Tensor lengths = Tensor::empty({B}, DType::i32);
          for (int64_t b = 0; b < B; ++b) lengths.data_as<int32_t>()[b] = lens[size_t(b)];
          const Tensor tq = from_ref(q, dt), tk = from_ref(k, dt), tv = from_ref(v, dt);
          Tensor out2 = poisoned({B, 1, c.H, D}, dt, Device::cpu(), &ctx);
          Tensor lse2 = poisoned({B, c.H, 1}, dt, Device::cpu(), &ctx);
          Tensor out1 = poisoned({B, 1, c.H, D}, dt, Device::cpu(), &ctx);
          Tensor lse1 = poisoned({B, c.H, 1}, dt, Device::cpu(), &ctx);
          attention_decode(ctx, out2, lse2, tq, tk, tv, lengths, {}, {}, c.p, splits);
          {
            const IsaCap avx2(cpu::CpuIsa::avx2);
            attention_decode(ctx, out1, lse1, tq, tk, tv, lengths, {}, {}, c.p, splits);
          }
          EXPECT_EQ(std::memcmp(out2.data(), out1.data(), out1.nbytes()), 0) << "out";
          EXPECT_EQ(std::memcmp(lse2.data(), lse1.data(), lse1.nbytes()), 0) << "lse";
          if (nonfinite) {
            const auto exact =
                ref::attention_decode<Oracle>(q, k, v, lens, nullptr, nullptr, c.p, no_round);
            const auto naive = ref::attention_decode<float>(q, k, v, lens, nullptr, nullptr, c.p,
                                                            rounding_for(dt));
            expect_nonfinite_as_reference(out2, exact.out, naive.out, dt, "out");
            expect_nonfinite_as_reference(lse2, exact.lse, naive.lse, dt, "lse");
          }
        }
}

TEST(AttentionBadInput, DecodeNamesTheArgument) {
  Context& ctx = context_for(Device::cpu());
  const DType f32 = DType::f32;
  Tensor q = Tensor::zeros({2, 3, 4, 8}, f32), cache_k = Tensor::zeros({2, 10, 2, 8}, f32);
  Tensor cache_v = Tensor::zeros({2, 10, 2, 8}, f32), kn = Tensor::zeros({2, 3, 2, 8}, f32);
  Tensor out = Tensor::empty({2, 3, 4, 8}, f32), lse = Tensor::empty({2, 4, 3}, f32);
  Tensor lens = Tensor::zeros({2}, DType::i32);
  lens.data_as<int32_t>()[1] = 8;
  EXPECT_LONGCTX_ERROR(attention_decode(ctx, out, lse, q, cache_k, cache_v, lens, kn, Tensor()),
                       "attention_decode", "'k_new' without 'v_new'");
  EXPECT_LONGCTX_ERROR(attention_decode(ctx, out, lse, q, cache_k, cache_v, lens, kn, kn),
                       "cache_seqlens", "[1] = 8", "Tq = 3", "exceeds the cache length Tmax = 10");
  EXPECT_LONGCTX_ERROR(
      attention_decode(ctx, out, lse, q, cache_k, cache_v, Tensor::zeros({2}, DType::i64)),
      "'cache_seqlens'", "expected dtype i32", "got i64");
  lens.data_as<int32_t>()[1] = -1;
  EXPECT_LONGCTX_ERROR(attention_decode(ctx, out, lse, q, cache_k, cache_v, lens), "cache_seqlens",
                       "[1] = -1", "outside [0, Tmax = 10]");
  lens.data_as<int32_t>()[1] = 2;
  EXPECT_LONGCTX_ERROR(attention_decode(ctx, out, lse, q, cache_k, cache_v, lens, {}, {}, {}, -1),
                       "'num_splits'", "must be in [0, max(1, Tmax = 10)]", "got -1");
  // More splits than cache rows: 2^31 - 1 of them allocated gigabytes for nothing.
  EXPECT_LONGCTX_ERROR(
      attention_decode(ctx, out, lse, q, cache_k, cache_v, lens, {}, {}, {}, 2147483647),
      "'num_splits'", "Tmax = 10", "got 2147483647");
  EXPECT_LONGCTX_ERROR(attention_decode(ctx, out, lse, q, cache_k, cache_k, lens), "'k_cache'",
                       "overlaps input 'v_cache'");
  EXPECT_LONGCTX_ERROR(
      attention_decode(ctx, out, lse, q, cache_k, cache_v, lens, Tensor::zeros({2, 3, 2, 7}, f32),
                       Tensor::zeros({2, 3, 2, 7}, f32)),
      "'k_new'", "expected shape (2, 3, 2, 8)");
}

}  // namespace
}  // namespace longctx::test
