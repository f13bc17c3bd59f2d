// gated_delta_rule: validation in front of both backends, then dispatch (see
// include/longctx/ops/gated_delta_rule.h).
#include "src/ops/gated_delta_rule.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "src/ops/scan_checks.h"

namespace longctx {

namespace {

// The CPU path's scratch grows as chunk_size² (x K for KDA: 17 MB per thread at 256, K = 128).
constexpr int64_t kMaxChunk = 256;

// The chunk both backends run: chunk_size tokens, at most kChunkPerK · K. A chunk forms its
// transition (up to C factors I − β k̂ k̂ᵀ) before applying it: each row of U subtracts the
// entering state's part (γ ⊙ K̂) S and the solve adds most of it back, and when C is several times
// K what is left is a strong contraction of S, at the roundoff of S rather than of the token
// loop's contracted state (f32 and f64 alike). Measured with the op (l2norm, Gated DeltaNet,
// HV = 2, V = 8; per output max error / the 2x rule's tolerance, the worst output's mean over 20
// seeds at T = 200, f32): K = 1: 0.45 at C = 1, 0.48 at 2, 0.62 at 4, 0.77 at 8, 1.97 at 64;
// K = 2: 0.43 at 1, 0.45 at 4, 0.73 at 16, 1.09 at 64; K = 4: 0.35 at 4, 0.40 at 8, 0.59 at 32;
// K = 8 and 16: 0.36 .. 0.51 at every C up to 64. The worst single run at T = 1000 over 8 seeds:
// C = 2 K at most 0.79 for K = 1, 2, 4; C = 64 4.3 (K = 1), 2.0 (K = 2), 1.4 (K = 4); K = 1 in
// f64 0.75 against 5.6, KDA 0.61 against 3.1. 2 K keeps every K within ~10% of the token order's
// (C = 1) figure and leaves K >= 32 (the models' 64 .. 256) at the default 64.
constexpr int64_t kChunkPerK = 2;

void check_like(const Context& ctx, const char* op, const char* name, const Tensor& t,
                const Tensor& like) {
  check_arg(op, name, t).shape(like.shape()).dtype(like.dtype()).device(ctx.device());
  check_arg(op, name, t).contiguous();
}

// Checks q, k, v, g, beta of the chunked op (`seq`: a T dimension after B) or of the decode step
// (none); the params they determine. `lead` is (B, T) or (B).
GatedDeltaRuleArgs check_inputs(const Context& ctx, const char* op, const Tensor& q,
                                const Tensor& k, const Tensor& v, const Tensor& g,
                                const Tensor& beta, const GatedDeltaRuleParams& params, bool seq) {
  const int lead = seq ? 2 : 1;  // leading dimensions before the head dimension
  check_backend(ctx, op, "q", q);
  check_arg(op, "q", q).rank(lead + 2).contiguous();
  const Device dev = ctx.device();
  const DType dt = q.dtype(), sdt = stat_dtype(dt);
  Shape prefix = {q.size(0)};
  if (seq) prefix.push_back(q.size(1));
  auto with = [&](std::initializer_list<int64_t> tail) {
    Shape s = prefix;
    s.insert(s.end(), tail);
    return s;
  };
  const int64_t H = q.size(lead), K = q.size(lead + 1);
  check_arg(op, "k", k).shape(q.shape()).dtype(dt).device(dev).contiguous();
  check_arg(op, "v", v).rank(lead + 2).dtype(dt).device(dev).contiguous();
  const int64_t HV = v.size(lead), V = v.size(lead + 1);
  check_arg(op, "v", v).shape(with({HV, V}));
  check_value(op, "v", HV >= 1 && H >= 1 && HV % H == 0, "has HV = ", HV,
              " value heads, which must be a positive multiple of the H = ", H,
              " q/k heads (value head hv reads q/k head hv / (HV / H))");
  const std::string why = gated_delta_rule_supports(dev, dt, K, V);
  check_value(op, "q", why.empty(), "has key head dim K = ", K, " and v value head dim V = ", V,
              ": ", why);
  check_arg(op, "g", g).dtype(sdt).device(dev).contiguous();
  const bool channel_gate = g.dim() == lead + 2;
  check_value(op, "g", g.shape() == with({HV}) || g.shape() == with({HV, K}), "expected shape ",
              shape_str(with({HV})), " (one decay per head) or ", shape_str(with({HV, K})),
              " (one per key channel), got ", shape_str(g.shape()));
  check_arg(op, "beta", beta).shape(with({HV})).dtype(dt).device(dev).contiguous();
  check_value(op, "chunk_size", 1 <= params.chunk_size && params.chunk_size <= kMaxChunk,
              "must be in [1, ", kMaxChunk, "], got ", params.chunk_size);
  check_value(op, "scale", std::isfinite(params.scale), "must be finite, got ", params.scale);

  GatedDeltaRuleArgs args;
  args.dtype = dt;
  args.B = q.size(0);
  args.T = seq ? q.size(1) : 1;
  args.H = H;
  args.HV = HV;
  args.K = K;
  args.V = V;
  args.channel_gate = channel_gate;
  args.scale = params.scale != 0 ? params.scale : 1.0 / std::sqrt(double(K));
  args.l2norm = params.use_qk_l2norm;
  args.chunk_size = std::min(params.chunk_size, kChunkPerK * K);
  args.q = q.data();
  args.k = k.data();
  args.v = v.data();
  args.g = g.data();
  args.beta = beta.data();
  return args;
}

// The chunked op's inputs, cu_seqlens (whose values `host` keeps for the call) and initial_state.
GatedDeltaRuleArgs check_inputs(const Context& ctx, const char* op, const GatedDeltaRuleInputs& in,
                                const GatedDeltaRuleParams& params, std::vector<int32_t>& host) {
  GatedDeltaRuleArgs args =
      check_inputs(ctx, op, in.q, in.k, in.v, in.g, in.beta, params, /*seq=*/true);
  if_given(in.cu_seqlens, [&] {
    check_value(op, "q", args.B == 1, "must have batch dimension 1 with cu_seqlens (a packed ",
                "batch), got shape ", shape_str(in.q.shape()));
    host = check_cu_seqlens(ctx, op, "cu_seqlens", in.cu_seqlens, args.T);
  });
  args.seqs = sequences_of(in.cu_seqlens, host, args.B, args.T);
  args.initial_state = data_or_null(in.initial_state);
  return args;
}

// A state tensor of the chunked op: (N, HV, K, V), N the number of sequences.
void check_state(const Context& ctx, const char* op, const char* name, const Tensor& t,
                 const GatedDeltaRuleArgs& args) {
  check_arg(op, name, t).shape({args.seqs.count, args.HV, args.K, args.V});
  check_arg(op, name, t).dtype(stat_dtype(args.dtype)).device(ctx.device()).contiguous();
}

std::vector<NamedTensor> inputs_of(const GatedDeltaRuleInputs& in) {
  return {{"q", &in.q},
          {"k", &in.k},
          {"v", &in.v},
          {"g", &in.g},
          {"beta", &in.beta},
          {"initial_state", &in.initial_state},
          {"cu_seqlens", &in.cu_seqlens}};
}

}  // namespace

std::string gated_delta_rule_supports(Device device, DType dtype, int64_t K, int64_t V) {
  if (K < 1 || V < 1)
    return detail::concat("gated_delta_rule needs head dims K >= 1 and V >= 1, got K = ", K,
                          ", V = ", V);
  return dtype_supports("gated_delta_rule", device, dtype);
}

void gated_delta_rule_fwd(const Context& ctx, const Tensor& out, const Tensor& final_state,
                          const GatedDeltaRuleInputs& in, const GatedDeltaRuleParams& params) {
  const char* op = "gated_delta_rule_fwd";
  std::vector<int32_t> host;
  GatedDeltaRuleArgs args = check_inputs(ctx, op, in, params, host);
  if_given(in.initial_state,
           [&] { check_state(ctx, op, "initial_state", in.initial_state, args); });
  check_like(ctx, op, "out", out, in.v);
  if_given(final_state, [&] { check_state(ctx, op, "final_state", final_state, args); });
  check_disjoint(op, {{"out", &out}, {"final_state", &final_state}}, inputs_of(in));
  args.out = out.data();
  args.final_state = data_or_null(final_state);
  LONGCTX_DISPATCH(ctx, gated_delta_rule_fwd, ctx, args);
}

void gated_delta_rule_bwd(const Context& ctx, const GatedDeltaRuleGrads& grads, const Tensor& dout,
                          const Tensor& dfinal_state, const GatedDeltaRuleInputs& in,
                          const GatedDeltaRuleParams& params) {
  const char* op = "gated_delta_rule_bwd";
  std::vector<int32_t> host;
  GatedDeltaRuleArgs args = check_inputs(ctx, op, in, params, host);
  if_given(in.initial_state,
           [&] { check_state(ctx, op, "initial_state", in.initial_state, args); });
  check_like(ctx, op, "dout", dout, in.v);
  if_given(dfinal_state, [&] { check_state(ctx, op, "dfinal_state", dfinal_state, args); });
  check_like(ctx, op, "dq", grads.dq, in.q);
  check_like(ctx, op, "dk", grads.dk, in.k);
  check_like(ctx, op, "dv", grads.dv, in.v);
  check_like(ctx, op, "dg", grads.dg, in.g);
  check_like(ctx, op, "dbeta", grads.dbeta, in.beta);
  check_optional_grad(op, "initial_state", in.initial_state, "dinitial_state",
                      grads.dinitial_state);
  if_given(grads.dinitial_state,
           [&] { check_like(ctx, op, "dinitial_state", grads.dinitial_state, in.initial_state); });
  std::vector<NamedTensor> inputs = inputs_of(in);
  inputs.push_back({"dout", &dout});
  inputs.push_back({"dfinal_state", &dfinal_state});
  check_disjoint(op,
                 {{"dq", &grads.dq},
                  {"dk", &grads.dk},
                  {"dv", &grads.dv},
                  {"dg", &grads.dg},
                  {"dbeta", &grads.dbeta},
                  {"dinitial_state", &grads.dinitial_state}},
                 inputs);
  args.dout = dout.data();
  args.dfinal_state = data_or_null(dfinal_state);
  args.dq = grads.dq.data();
  args.dk = grads.dk.data();
  args.dv = grads.dv.data();
  args.dg = grads.dg.data();
  args.dbeta = grads.dbeta.data();
  args.dinitial_state = data_or_null(grads.dinitial_state);
  LONGCTX_DISPATCH(ctx, gated_delta_rule_bwd, ctx, args);
}

void gated_delta_rule_update(const Context& ctx, const Tensor& out, const Tensor& state,
                             const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g,
                             const Tensor& beta, const GatedDeltaRuleParams& params) {
  const char* op = "gated_delta_rule_update";
  GatedDeltaRuleArgs args = check_inputs(ctx, op, q, k, v, g, beta, params, /*seq=*/false);
  args.seqs = sequences_of(Tensor(), {}, args.B, /*T=*/1);
  check_like(ctx, op, "out", out, v);
  check_arg(op, "state", state).shape({args.B, args.HV, args.K, args.V});
  check_arg(op, "state", state).dtype(stat_dtype(args.dtype)).device(ctx.device()).contiguous();
  check_disjoint(op, {{"out", &out}, {"state", &state}},
                 {{"q", &q}, {"k", &k}, {"v", &v}, {"g", &g}, {"beta", &beta}});
  args.out = out.data();
  args.state = state.data();
  LONGCTX_DISPATCH(ctx, gated_delta_rule_update, ctx, args);
}

}  // namespace longctx
