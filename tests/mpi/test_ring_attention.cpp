// Ring attention under `mpirun -np N`: one sequence split along T over the ranks (contiguous
// slices of unequal lengths, an empty one on four ranks, and the zigzag layout), each rank's
// rows of out, lse and dq and its slice of dk, dv against the plain reference over the whole
// sequence (2x rule, f64 and f32), for causal, non-causal, sliding windows on either side, GQA,
// MQA, softcap and a custom scale; two runs bitwise equal; bad input stops every rank with the
// message. Packed batches (cu_seqlens): each rank's slice of the packed batch against the
// reference run sequence by sequence, sequences straddling 0 to 3 rank boundaries, empty ones.
#include "harness.h"
#include "longctx/dist/context_parallel.h"
#include "mpi/world.h"
#include "reference/attention.h"

namespace longctx::test {
namespace {

using dist::CpLayout;

// This rank's positions of a T-position sequence, as ranges in slice order: contiguous slices
// [T * r / n, T * (r + 1) / n), or the zigzag chunks.
std::vector<dist::SeqRange> my_ranges(const dist::Communicator& comm, int64_t T, CpLayout layout) {
  const int r = comm.rank(), n = comm.size();
  if (layout == CpLayout::contiguous) return {{T * r / n, T * (r + 1) / n}};
  const auto chunks = dist::zigzag_chunks(T, n, r);
  return {chunks[0], chunks[1]};
}

// The entries of dimension `dim` of x at `ranges`, back to back.
Ref take(const Ref& x, int dim, const std::vector<dist::SeqRange>& ranges) {
  Shape shape = x.shape;
  shape[size_t(dim)] = 0;
  for (const auto& r : ranges) shape[size_t(dim)] += r.length();
  Ref out(shape);
  int64_t at = 0;
  for (const auto& r : ranges) {
    paste(out, dim, at, slice(x, dim, r.begin, r.end));
    at += r.length();
  }
  return out;
}

AttentionParams make_params(bool causal, int left, int right, float softcap = 0.f,
                            float scale = 0.f) {
  AttentionParams p;
  p.causal = causal;
  p.window_left = left;
  p.window_right = right;
  p.softcap = softcap;
  p.softmax_scale = scale;
  return p;
}

struct RingCase {
  std::string name;
  int64_t B, T, H, Hkv, D;
  AttentionParams params;
};
LONGCTX_PRINTS_AS_NAME(RingCase)

// T = 29, 23, 37, 31, 19: slices not divisible by 2 or 4 (14/15, 7/7/7/8 ...). Windows of 5 and
// (3, 7) are shorter than a slice: blocks the mask hides entirely, and blocks only some rows or
// keys of which are visible. T = 3 on four ranks leaves rank 0 an empty slice (and the zigzag
// layout several empty chunks). T = 517: blocks of several of the CPU kernel's tiles.
const std::vector<RingCase> kCases = {
    {"causal_gqa", 2, 29, 4, 2, 8, make_params(true, -1, -1)},
    {"full_mqa", 1, 23, 3, 1, 5, make_params(false, -1, -1)},
    {"sliding_window_causal", 2, 37, 2, 2, 4, make_params(true, 5, -1)},
    {"window_both_sides_mqa", 1, 31, 2, 1, 6, make_params(false, 3, 7)},
    {"window_right_only", 1, 29, 2, 2, 4, make_params(false, -1, 2)},
    {"softcap_scale_gqa", 2, 19, 4, 2, 8, make_params(true, -1, -1, 1.5f, 0.9f)},
    {"diagonal_only", 1, 17, 2, 1, 4, make_params(false, 0, 0)},
    {"tiny_empty_slice", 1, 3, 2, 1, 4, make_params(true, -1, -1)},
    {"long_sliding_window_gqa", 1, 517, 4, 2, 16, make_params(true, 100, -1)},
};

// The inputs of a case, the same on every rank (the same seed): each rank takes its slice.
struct Inputs {
  Ref q, k, v, dout;
};

Inputs make_inputs(const RingCase& c, DType dt) {
  Rng rng(uint64_t(c.T * 1000 + c.H * 10 + c.D));
  Inputs in;
  in.q = rounded(random_ref({c.B, c.T, c.H, c.D}, rng), dt);
  in.k = rounded(random_ref({c.B, c.T, c.Hkv, c.D}, rng), dt);
  in.v = rounded(random_ref({c.B, c.T, c.Hkv, c.D}, rng), dt);
  in.dout = rounded(random_ref({c.B, c.T, c.H, c.D}, rng), dt);
  return in;
}

// One ring forward and backward of this rank's slice.
struct Results {
  Tensor out, lse, dq, dk, dv;
};

Results run_ring(const RingCase& c, DType dt, CpLayout layout, const Inputs& in) {
  dist::Communicator& comm = world();
  Context& ctx = context_for(Device::cpu());
  const auto ranges = my_ranges(comm, c.T, layout);
  const Tensor q = from_ref(take(in.q, 1, ranges), dt), k = from_ref(take(in.k, 1, ranges), dt);
  const Tensor v = from_ref(take(in.v, 1, ranges), dt);
  const Tensor dout = from_ref(take(in.dout, 1, ranges), dt);
  const int64_t Tr = q.size(1);
  Results r;
  r.out = poisoned(q.shape(), dt, Device::cpu(), &ctx);
  r.lse = poisoned({c.B, c.H, Tr}, stat_dtype(dt), Device::cpu(), &ctx);
  dist::attention_cp_fwd(comm, ctx, r.out, r.lse, q, k, v, c.params, layout);
  r.dq = poisoned(q.shape(), dt, Device::cpu(), &ctx);
  r.dk = poisoned(k.shape(), dt, Device::cpu(), &ctx);
  r.dv = poisoned(v.shape(), dt, Device::cpu(), &ctx);
  dist::attention_cp_bwd(comm, ctx, r.dq, r.dk, r.dv, dout, q, k, v, r.out, r.lse, c.params,
                         layout);
  return r;
}

class RingAttention : public testing::TestWithParam<std::tuple<RingCase, CpLayout, DType>> {};

TEST_P(RingAttention, SlicesMatchTheWholeSequence) {
  const auto& [c, layout, dt] = GetParam();
  const Inputs in = make_inputs(c, dt);
  const Results got = run_ring(c, dt, layout, in);
  const auto ranges = my_ranges(world(), c.T, layout);
  const auto exact = ref::attention_fwd<Oracle>(in.q, in.k, in.v, c.params, no_round);
  const auto grads = ref::attention_bwd<Oracle>(in.dout, in.q, in.k, in.v, c.params, no_round);
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    const auto naive = ref::attention_fwd<S>(in.q, in.k, in.v, c.params, rounding_for(dt));
    expect_close_2x(got.out, take(exact.out, 1, ranges), take(naive.out, 1, ranges), dt, "out");
    expect_close_2x(got.lse, take(exact.lse, 2, ranges), take(naive.lse, 2, ranges), dt, "lse");
    const auto ng = ref::attention_bwd<S>(in.dout, in.q, in.k, in.v, c.params, rounding_for(dt));
    expect_close_2x(got.dq, take(grads.dq, 1, ranges), take(ng.dq, 1, ranges), dt, "dq");
    expect_close_2x(got.dk, take(grads.dk, 1, ranges), take(ng.dk, 1, ranges), dt, "dk");
    expect_close_2x(got.dv, take(grads.dv, 1, ranges), take(ng.dv, 1, ranges), dt, "dv");
  });
}

INSTANTIATE_TEST_SUITE_P(Cases, RingAttention,
                         testing::Combine(testing::ValuesIn(kCases),
                                          testing::Values(CpLayout::contiguous, CpLayout::zigzag),
                                          testing::Values(DType::f64, DType::f32)),
                         [](const auto& info) {
                           return std::get<0>(info.param).name +
                                  (std::get<1>(info.param) == CpLayout::zigzag ? "_zigzag_"
                                                                               : "_contiguous_") +
                                  dtype_name(std::get<2>(info.param));
                         });

// The blocks are merged in ring order on every rank, whatever the messages' timing: a second run
// gives the same bits.
TEST(RingAttentionDeterminism, TwoRunsAreBitwiseEqual) {
  for (CpLayout layout : {CpLayout::contiguous, CpLayout::zigzag}) {
    const RingCase& c = kCases[0];
    const Inputs in = make_inputs(c, DType::f32);
    const Results a = run_ring(c, DType::f32, layout, in), b = run_ring(c, DType::f32, layout, in);
    expect_equal(a.out, b.out, "out");
    expect_equal(a.lse, b.lse, "lse");
    expect_equal(a.dq, b.dq, "dq");
    expect_equal(a.dk, b.dk, "dk");
    expect_equal(a.dv, b.dv, "dv");
  }
}

// The zigzag chunks of all ranks cover the sequence once, chunk r and 2n - 1 - r on rank r.
TEST(RingAttentionZigzag, ChunksPartitionTheSequence) {
  for (int n : {1, 2, 3, 4})
    for (int64_t T : {0, 1, 5, 8, 13, 100}) {
      std::vector<int> covered(size_t(T), 0);
      for (int r = 0; r < n; ++r) {
        const auto chunks = dist::zigzag_chunks(T, n, r);
        EXPECT_EQ(chunks[0].begin, T * r / (2 * n));
        EXPECT_EQ(chunks[1].end, T * (2 * n - r) / (2 * n));
        for (const auto& ch : chunks)
          for (int64_t t = ch.begin; t < ch.end; ++t) ++covered[size_t(t)];
      }
      for (int64_t t = 0; t < T; ++t) EXPECT_EQ(covered[size_t(t)], 1) << "T " << T << " t " << t;
    }
  EXPECT_LONGCTX_ERROR(dist::zigzag_chunks(10, 2, 2), "zigzag_chunks", "rank");
}

// ---- Packed batches (cu_seqlens) ------------------------------------------------------------

struct PackedCase {
  std::string name;
  int64_t H, Hkv, D;
  std::vector<int32_t> cu;  // the whole batch's cu_seqlens; T = cu.back()
  AttentionParams params;
};
LONGCTX_PRINTS_AS_NAME(PackedCase)

// Slices [T * r / n, T * (r + 1) / n) as in my_ranges. T = 40 on four ranks has boundaries 10,
// 20, 30 (on two, 20): "straddles" counts the four-rank boundaries a sequence crosses.
const std::vector<PackedCase> kPackedCases = {
    // [0, 4) [4, 4) empty [4, 9) inside slice 0; [9, 13) straddles 1; [13, 33) straddles 2;
    // [33, 40) none.
    {"causal_gqa_empty_sequence", 4, 2, 8, {0, 4, 4, 9, 13, 33, 40}, make_params(true, -1, -1)},
    // [2, 38) straddles all 3; short sequences at either end.
    {"sliding_window_mqa_straddles_3", 3, 1, 4, {0, 2, 38, 40}, make_params(true, 5, -1)},
    // Not causal, a window on both sides; an empty sequence at the start and at the end.
    {"window_both_sides", 2, 2, 4, {0, 0, 1, 21, 37, 37}, make_params(false, 3, 7)},
    {"full_gqa", 4, 2, 4, {0, 11, 11, 29}, make_params(false, -1, -1)},
    // Many sequences, one slice holding several whole ones; a window longer than some of them.
    {"many_sequences_window_gqa",
     4,
     2,
     8,
     {0, 3, 5, 6, 17, 30, 31, 50, 52, 53, 90, 97},
     make_params(true, 20, -1)},
    {"one_sequence", 2, 1, 4, {0, 23}, make_params(true, -1, -1)},
};

struct PackedRef {
  Ref out, lse, dq, dk, dv;
};

// The packed batch's results sequence by sequence, each through the plain reference alone (the
// reference has no cu_seqlens): an independent statement of what varlen attention computes.
template <class S>
PackedRef packed_reference(const Inputs& in, const std::vector<int32_t>& cu,
                           const AttentionParams& params, const Round& round) {
  PackedRef r{Ref(in.q.shape), Ref({1, in.q.shape[2], in.q.shape[1]}), Ref(in.q.shape),
              Ref(in.k.shape), Ref(in.v.shape)};
  for (size_t n = 0; n + 1 < cu.size(); ++n) {
    const int64_t b = cu[n], e = cu[n + 1];
    if (b == e) continue;
    const Ref q = slice(in.q, 1, b, e), k = slice(in.k, 1, b, e), v = slice(in.v, 1, b, e);
    const auto f = ref::attention_fwd<S>(q, k, v, params, round);
    const auto g = ref::attention_bwd<S>(slice(in.dout, 1, b, e), q, k, v, params, round);
    paste(r.out, 1, b, f.out);
    paste(r.lse, 2, b, f.lse);
    paste(r.dq, 1, b, g.dq);
    paste(r.dk, 1, b, g.dk);
    paste(r.dv, 1, b, g.dv);
  }
  return r;
}

Results run_packed_ring(const PackedCase& c, DType dt, const Inputs& in) {
  dist::Communicator& comm = world();
  Context& ctx = context_for(Device::cpu());
  const int64_t T = c.cu.back();
  const auto ranges = my_ranges(comm, T, CpLayout::contiguous);
  const Tensor cu = int_tensor(c.cu, {int64_t(c.cu.size())});
  const Tensor q = from_ref(take(in.q, 1, ranges), dt), k = from_ref(take(in.k, 1, ranges), dt);
  const Tensor v = from_ref(take(in.v, 1, ranges), dt);
  const Tensor dout = from_ref(take(in.dout, 1, ranges), dt);
  Results r;
  r.out = poisoned(q.shape(), dt, Device::cpu(), &ctx);
  r.lse = poisoned({1, c.H, q.size(1)}, stat_dtype(dt), Device::cpu(), &ctx);
  dist::attention_cp_fwd(comm, ctx, r.out, r.lse, q, k, v, c.params, CpLayout::contiguous, cu);
  r.dq = poisoned(q.shape(), dt, Device::cpu(), &ctx);
  r.dk = poisoned(k.shape(), dt, Device::cpu(), &ctx);
  r.dv = poisoned(v.shape(), dt, Device::cpu(), &ctx);
  dist::attention_cp_bwd(comm, ctx, r.dq, r.dk, r.dv, dout, q, k, v, r.out, r.lse, c.params,
                         CpLayout::contiguous, cu);
  return r;
}

class PackedRingAttention : public testing::TestWithParam<std::tuple<PackedCase, DType>> {};

TEST_P(PackedRingAttention, SlicesMatchTheWholePackedBatch) {
  const auto& [c, dt] = GetParam();
  const RingCase shape{c.name, 1, c.cu.back(), c.H, c.Hkv, c.D, c.params};
  const Inputs in = make_inputs(shape, dt);
  const Results got = run_packed_ring(c, dt, in);
  const auto ranges = my_ranges(world(), c.cu.back(), CpLayout::contiguous);
  const PackedRef exact = packed_reference<Oracle>(in, c.cu, c.params, no_round);
  with_naive_type(dt, [&](auto tag) {
    using S = typename decltype(tag)::type;
    const PackedRef naive = packed_reference<S>(in, c.cu, c.params, rounding_for(dt));
    expect_close_2x(got.out, take(exact.out, 1, ranges), take(naive.out, 1, ranges), dt, "out");
    expect_close_2x(got.lse, take(exact.lse, 2, ranges), take(naive.lse, 2, ranges), dt, "lse");
    expect_close_2x(got.dq, take(exact.dq, 1, ranges), take(naive.dq, 1, ranges), dt, "dq");
    expect_close_2x(got.dk, take(exact.dk, 1, ranges), take(naive.dk, 1, ranges), dt, "dk");
    expect_close_2x(got.dv, take(exact.dv, 1, ranges), take(naive.dv, 1, ranges), dt, "dv");
  });
}

INSTANTIATE_TEST_SUITE_P(Cases, PackedRingAttention,
                         testing::Combine(testing::ValuesIn(kPackedCases),
                                          testing::Values(DType::f64, DType::f32)),
                         [](const auto& info) {
                           return std::get<0>(info.param).name + "_" +
                                  dtype_name(std::get<1>(info.param));
                         });

// Packed input the ring cannot take stops every rank with the message: the zigzag layout, B > 1,
// a cu_seqlens that does not end at the sum of the slices, and ranks that disagree on it.
TEST(PackedRingAttentionBadInput, EveryRankStops) {
  dist::Communicator& comm = world();
  Context& ctx = context_for(Device::cpu());
  Rng rng(7);
  const int64_t T = 4, H = 2, D = 4, n = comm.size();
  const Tensor q = random_tensor({1, T, H, D}, DType::f64, rng);
  const Tensor k = random_tensor({1, T, 1, D}, DType::f64, rng);
  Tensor out = Tensor::empty({1, T, H, D}, DType::f64), lse = Tensor::empty({1, H, T}, DType::f64);
  const Tensor cu = int_tensor({0, 1, int32_t(T * n)}, {3});
  EXPECT_LONGCTX_ERROR(
      dist::attention_cp_fwd(comm, ctx, out, lse, q, k, k, {}, CpLayout::zigzag, cu),
      "attention_cp_fwd", "cu_seqlens", "contiguous layout");
  const Tensor short_cu = int_tensor({0, 1, int32_t(T * n - 1)}, {3});
  EXPECT_LONGCTX_ERROR(
      dist::attention_cp_fwd(comm, ctx, out, lse, q, k, k, {}, CpLayout::contiguous, short_cu),
      "attention_cp_fwd", "cu_seqlens");
  const Tensor q2 = random_tensor({2, T, H, D}, DType::f64, rng);
  const Tensor k2 = random_tensor({2, T, 1, D}, DType::f64, rng);
  Tensor out2 = Tensor::empty(q2.shape(), DType::f64), lse2 = Tensor::empty({2, H, T}, DType::f64);
  EXPECT_LONGCTX_ERROR(
      dist::attention_cp_fwd(comm, ctx, out2, lse2, q2, k2, k2, {}, CpLayout::contiguous, cu),
      "attention_cp_fwd", "'q'", "B = 1");
  if (n > 1) {
    const Tensor mine = int_tensor({0, int32_t(1 + (comm.rank() == 0)), int32_t(T * n)}, {3});
    EXPECT_LONGCTX_ERROR(
        dist::attention_cp_fwd(comm, ctx, out, lse, q, k, k, {}, CpLayout::contiguous, mine),
        "attention_cp_fwd", "same cu_seqlens");
  }
}

// Bad input on one rank stops every rank with an Error (none is left waiting in the ring): the
// rank with the bad argument names it, the others name that rank.
TEST(RingAttentionBadInput, EveryRankStops) {
  dist::Communicator& comm = world();
  Context& ctx = context_for(Device::cpu());
  const int bad = comm.size() - 1;
  Rng rng(5);
  const int64_t B = 1, T = 4, H = 2, D = 4;
  const Tensor q = random_tensor({B, T, H, D}, DType::f64, rng);
  const Tensor k = random_tensor({B, T, 1, comm.rank() == bad ? D + 1 : D}, DType::f64, rng);
  const Tensor v = random_tensor({B, T, 1, D}, DType::f64, rng);
  Tensor out = Tensor::empty({B, T, H, D}, DType::f64), lse = Tensor::empty({B, H, T}, DType::f64);
  if (comm.rank() == bad)
    EXPECT_LONGCTX_ERROR(dist::attention_cp_fwd(comm, ctx, out, lse, q, k, v), "attention_cp_fwd",
                         "'k'", "expected shape");
  else
    EXPECT_LONGCTX_ERROR(dist::attention_cp_fwd(comm, ctx, out, lse, q, k, v), "attention_cp_fwd",
                         "rank ", "arguments are invalid");

  // The ranks disagree on the mask.
  const Tensor k_ok = random_tensor({B, T, 1, D}, DType::f64, rng);
  AttentionParams params;
  params.causal = comm.rank() == bad;
  if (comm.size() > 1)
    EXPECT_LONGCTX_ERROR(dist::attention_cp_fwd(comm, ctx, out, lse, q, k_ok, v, params),
                         "attention_cp_fwd", "same causal");

  // f32 out for f64 inputs, in the backward.
  const Tensor dq = Tensor::empty({B, T, H, D}, DType::f32);
  const Tensor dk = Tensor::empty({B, T, 1, D}, DType::f64),
               dv = Tensor::empty(dk.shape(), DType::f64);
  EXPECT_LONGCTX_ERROR(dist::attention_cp_bwd(comm, ctx, dq, dk, dv, out, q, k_ok, v, out, lse),
                       "attention_cp_bwd", "'dq'", "dtype");

  // Contiguous slices called as zigzag (4 positions each: not the zigzag split of 4n).
  if (comm.size() > 1) {
    const Tensor q5 = random_tensor({B, comm.rank() == 0 ? 5 : 3, H, D}, DType::f64, rng);
    const Tensor k5 = random_tensor({B, q5.size(1), 1, D}, DType::f64, rng);
    Tensor out5 = Tensor::empty(q5.shape(), DType::f64);
    Tensor lse5 = Tensor::empty({B, H, q5.size(1)}, DType::f64);
    EXPECT_LONGCTX_ERROR(
        dist::attention_cp_fwd(comm, ctx, out5, lse5, q5, k5, k5, {}, CpLayout::zigzag),
        "attention_cp_fwd", "zigzag", "zigzag_chunks");
  }
}

}  // namespace
}  // namespace longctx::test
