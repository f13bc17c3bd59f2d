// Ring attention under `mpirun -np N`: one sequence split along T over the ranks (contiguous
// slices of unequal lengths, an empty one on four ranks, and the zigzag layout), each rank's
// rows of out, lse and dq and its slice of dk, dv against the plain reference over the whole
// sequence (2x rule, f64 and f32), for causal, non-causal, sliding windows on either side, GQA,
// MQA, softcap and a custom scale; two runs bitwise equal; bad input stops every rank with the
// message.
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
