// Empty dimensions on the ops `longctx op` does not run (test_cli's CliEmptyDims sweeps the
// others against the outside reference): add, neg_exp, rglru_gate and the three decode steps,
// each with every size set to zero in turn, on the CPU. The result is what the op's formula
// gives for no elements — empty outputs, a sum over no rows of 0, a state with nothing to shift —
// never a crash. (These ops handled it already; the sweep makes "every op" hold as ops change.)
#include <functional>

#include "harness.h"
#include "longctx/ops/add.h"
#include "longctx/ops/causal_conv1d.h"
#include "longctx/ops/elementwise.h"
#include "longctx/ops/rglru_gate.h"
#include "longctx/ops/selective_scan.h"
#include "longctx/ops/ssd.h"

namespace longctx::test {
namespace {

// The sizes of a case with size `zeroed` (an index into `sizes`) set to 0.
std::vector<int64_t> with_zero(std::vector<int64_t> sizes, size_t zeroed) {
  sizes[zeroed] = 0;
  return sizes;
}

Tensor rand(const Shape& shape, Rng& rng) {
  return random_tensor(shape, DType::f64, rng);
}

// Every entry of `t` is `value` (an empty tensor passes).
void expect_all(const Tensor& t, double value, const std::string& what) {
  const Ref r = to_ref(t);
  for (int64_t i = 0; i < r.numel(); ++i) ASSERT_EQ(r[i], value) << what << "[" << i << "]";
}

TEST(EmptyDims, ElementwiseOps) {
  Context& ctx = context_for(Device::cpu());
  for (size_t z = 0; z < 3; ++z) {
    const auto s = with_zero({2, 3, 5}, z);
    Rng rng(z);
    const Shape shape = {s[0], s[1], s[2]};
    const Tensor a = rand(shape, rng), b = rand(shape, rng), out = rand(shape, rng);
    add_fwd(ctx, out, a, b);
    neg_exp_fwd(ctx, out, a);
    neg_exp_bwd(ctx, rand(shape, rng), b, out);
    EXPECT_EQ(out.numel(), 0);
  }
}

// rglru_gate: rows (..., D) and lambda (D). With no rows, dlambda is a sum over no rows: 0.
TEST(EmptyDims, RglruGate) {
  Context& ctx = context_for(Device::cpu());
  for (size_t z = 0; z < 3; ++z) {
    const auto s = with_zero({2, 3, 4}, z);
    Rng rng(z);
    const Shape rows = {s[0], s[1], s[2]};
    const Tensor x = rand(rows, rng), ga = rand(rows, rng), gx = rand(rows, rng);
    const Tensor lambda = rand({s[2]}, rng);
    const Tensor a = poisoned(rows, DType::f64, Device::cpu(), &ctx);
    const Tensor b = poisoned(rows, DType::f64, Device::cpu(), &ctx);
    rglru_gate_fwd(ctx, a, b, x, ga, gx, lambda);
    const Tensor dlambda = poisoned({s[2]}, DType::f64, Device::cpu(), &ctx);
    rglru_gate_bwd(ctx, rand(rows, rng), rand(rows, rng), rand(rows, rng), dlambda, rand(rows, rng),
                   rand(rows, rng), x, ga, gx, lambda);
    expect_all(dlambda, 0.0, "dlambda with no rows");
  }
}

// causal_conv1d_update: x, out (B, D); conv_state (B, D, W - 1); weight (D, W). W = 1 leaves an
// empty state: out = x * weight[:, 0] + bias.
TEST(EmptyDims, CausalConv1dUpdate) {
  Context& ctx = context_for(Device::cpu());
  for (size_t z = 0; z < 3; ++z) {
    const auto s = with_zero({2, 3, 2}, z);  // B, D, W - 1
    const int64_t B = s[0], D = s[1], W = s[2] + 1;
    Rng rng(z);
    const Tensor x = rand({B, D}, rng), weight = rand({D, W}, rng), bias = rand({D}, rng);
    const Tensor state = rand({B, D, W - 1}, rng);
    const Tensor out = poisoned({B, D}, DType::f64, Device::cpu(), &ctx);
    causal_conv1d_update(ctx, out, state, x, weight, bias);
    if (W != 1) continue;  // B or D zero: everything is empty
    const Ref got = to_ref(out), rx = to_ref(x), rw = to_ref(weight), rb = to_ref(bias);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t d = 0; d < D; ++d)
        EXPECT_NEAR(got[b * D + d], rx[b * D + d] * rw[d] + rb[d], 1e-15) << b << ", " << d;
  }
}

// selective_state_update: out, u, delta (B, Dm); state (B, Dm, N); A (Dm, N); B, C (B, G, N).
TEST(EmptyDims, SelectiveStateUpdate) {
  Context& ctx = context_for(Device::cpu());
  for (size_t z = 0; z < 2; ++z) {
    const auto s = with_zero({2, 4}, z);  // B, Dm (G = 1, N = 3)
    const int64_t B = s[0], Dm = s[1], N = 3;
    Rng rng(z);
    const Tensor state = rand({B, Dm, N}, rng), out = rand({B, Dm}, rng);
    selective_state_update(ctx, out, state, rand({B, Dm}, rng), rand({B, Dm}, rng),
                           rand({Dm, N}, rng), rand({B, 1, N}, rng), rand({B, 1, N}, rng));
    EXPECT_EQ(out.numel(), 0);
  }
}

// ssd_state_update: out, x (B, H, P); state (B, H, P, N); dt (B, H); A (H); B, C (B, G, N).
TEST(EmptyDims, SsdStateUpdate) {
  Context& ctx = context_for(Device::cpu());
  for (size_t z = 0; z < 3; ++z) {
    const auto s = with_zero({2, 4, 3}, z);  // B, H, P (G = 1, N = 5)
    const int64_t B = s[0], H = s[1], P = s[2], N = 5;
    Rng rng(z);
    const Tensor state = rand({B, H, P, N}, rng), out = rand({B, H, P}, rng);
    ssd_state_update(ctx, out, state, rand({B, H, P}, rng), rand({B, H}, rng), rand({H}, rng),
                     rand({B, 1, N}, rng), rand({B, 1, N}, rng));
    EXPECT_EQ(out.numel(), 0);
  }
}

// A packed batch of no sequences: cu_seqlens = [0], T = 0, the state tensors (0, ...) as the
// headers give them (N = 0 rows). selective_scan and ssd asked for states of one sequence
// instead, and left such a tensor unwritten.
TEST(EmptyDims, PackedBatchOfNoSequences) {
  Context& ctx = context_for(Device::cpu());
  Rng rng(7);
  const Tensor cu_seqlens = Tensor::zeros({1}, DType::i32);
  {
    const int64_t Dm = 4, N = 3;
    SelectiveScanInputs in;
    in.u = rand({1, Dm, 0}, rng), in.delta = rand({1, Dm, 0}, rng), in.A = rand({Dm, N}, rng);
    in.B = rand({1, 1, N, 0}, rng), in.C = rand({1, 1, N, 0}, rng);
    in.h0 = rand({0, Dm, N}, rng), in.cu_seqlens = cu_seqlens;
    selective_scan_fwd(ctx, rand({1, Dm, 0}, rng), rand({0, Dm, N}, rng), in);
    SelectiveScanGrads g;
    g.du = rand({1, Dm, 0}, rng), g.ddelta = rand({1, Dm, 0}, rng), g.dA = rand({Dm, N}, rng);
    g.dB = rand({1, 1, N, 0}, rng), g.dC = rand({1, 1, N, 0}, rng), g.dh0 = rand({0, Dm, N}, rng);
    selective_scan_bwd(ctx, g, rand({1, Dm, 0}, rng), rand({0, Dm, N}, rng), in);
    expect_all(g.dA, 0.0, "selective_scan dA");
  }
  {
    const int64_t H = 2, P = 3, N = 4;
    SSDInputs in;
    in.x = rand({1, 0, H, P}, rng), in.dt = rand({1, 0, H}, rng), in.A = rand({H}, rng);
    in.B = rand({1, 0, 1, N}, rng), in.C = rand({1, 0, 1, N}, rng);
    in.initial_states = rand({0, H, P, N}, rng), in.cu_seqlens = cu_seqlens;
    ssd_fwd(ctx, rand({1, 0, H, P}, rng), rand({0, H, P, N}, rng), in);
    SSDGrads g;
    g.dx = rand({1, 0, H, P}, rng), g.ddt = rand({1, 0, H}, rng), g.dA = rand({H}, rng);
    g.dB = rand({1, 0, 1, N}, rng), g.dC = rand({1, 0, 1, N}, rng);
    g.dinitial_states = rand({0, H, P, N}, rng);
    ssd_bwd(ctx, g, rand({1, 0, H, P}, rng), rand({0, H, P, N}, rng), in);
    expect_all(g.dA, 0.0, "ssd dA");
  }
}

// causal_conv1d channel-last with no time steps: a contiguous (2, 0, 8) has strides (0, 8, 1),
// which were read as rows 0 apart and refused (the channel-first (2, 8, 0) was accepted).
TEST(EmptyDims, CausalConv1dChannelLast) {
  Context& ctx = context_for(Device::cpu());
  CausalConv1dParams last;
  last.channel_last = true;
  for (size_t z = 0; z < 3; ++z) {
    const auto s = with_zero({2, 5, 8}, z);  // B, T, D (W = 4)
    const Shape shape = {s[0], s[1], s[2]};
    Rng rng(z);
    const Tensor x = rand(shape, rng), w = rand({s[2], 4}, rng);
    causal_conv1d_fwd(ctx, rand(shape, rng), x, w, {}, last);
    const Tensor dw = rand({s[2], 4}, rng);
    causal_conv1d_bwd(ctx, rand(shape, rng), dw, {}, rand(shape, rng), x, w, {}, last);
    if (s[0] == 0 || s[1] == 0) expect_all(dw, 0.0, "dweight");
  }
}

}  // namespace
}  // namespace longctx::test
