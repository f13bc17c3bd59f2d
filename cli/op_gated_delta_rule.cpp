// `longctx op gated_delta_rule`: Gated DeltaNet / KDA (include/longctx/ops/gated_delta_rule.h).
// Tensor and option names are the header's; optional inputs (initial_state, cu_seqlens) are
// simply absent from the file. The forward writes out and final_state; --backward writes dq, dk,
// dv, dg, dbeta and, when initial_state is given, dinitial_state, and accepts dfinal_state.
#include "cli/ops.h"

namespace longctx::cli {

namespace {

GatedDeltaRuleInputs gdr_inputs(const OpCall& call) {
  return {call.input("q"),
          call.input("k"),
          call.input("v"),
          call.input("g"),
          call.input("beta"),
          call.optional_input("initial_state"),
          call.optional_input("cu_seqlens")};
}

GatedDeltaRuleParams gdr_params(const OpCall& call) {
  GatedDeltaRuleParams params;
  call.option("scale", &params.scale);
  call.option("use_qk_l2norm", &params.use_qk_l2norm);
  call.option("chunk_size", &params.chunk_size);
  return params;
}

// A tensor's dimension d, or 0 when it has none: with an input of the wrong rank the result
// shapes stay allocatable and the op's own validation names the problem.
int64_t dim_or_zero(const Tensor& t, int d) {
  return d < t.dim() ? t.size(d) : 0;
}

// (N, HV, K, V): N the batch, or the number of packed sequences.
Shape state_shape(const GatedDeltaRuleInputs& in) {
  const int64_t N = in.cu_seqlens.defined()
                        ? std::max<int64_t>(dim_or_zero(in.cu_seqlens, 0) - 1, 0)
                        : dim_or_zero(in.q, 0);
  return {N, dim_or_zero(in.v, 2), dim_or_zero(in.q, 3), dim_or_zero(in.v, 3)};
}

void gdr_forward(OpCall& call) {
  const GatedDeltaRuleInputs in = gdr_inputs(call);
  gated_delta_rule_fwd(call.ctx, call.output("out", in.v.shape(), in.v.dtype()),
                       call.output("final_state", state_shape(in), stat_dtype(in.q.dtype())), in,
                       gdr_params(call));
}

void gdr_backward(OpCall& call) {
  const GatedDeltaRuleInputs in = gdr_inputs(call);
  auto grad = [&](const char* name, const Tensor& x) {
    return x.defined() ? call.output(std::string("d") + name, x.shape(), x.dtype()) : Tensor();
  };
  const GatedDeltaRuleGrads grads = {
      grad("q", in.q), grad("k", in.k),       grad("v", in.v),
      grad("g", in.g), grad("beta", in.beta), grad("initial_state", in.initial_state)};
  gated_delta_rule_bwd(call.ctx, grads, call.input("dout"), call.optional_input("dfinal_state"), in,
                       gdr_params(call));
}

}  // namespace

std::vector<OpSpec> gated_delta_rule_ops() {
  return {{"gated_delta_rule",
           "Gated DeltaNet / KDA: q, k (B, T, H, K), v (B, T, HV, V), g (B, T, HV[, K]), "
           "beta (B, T, HV); out, final_state",
           {"q", "k", "v", "g", "beta", "?initial_state", "?cu_seqlens"},
           {"scale", "use_qk_l2norm", "chunk_size"},
           {"dout", "?dfinal_state"},
           gdr_forward,
           gdr_backward}};
}

}  // namespace longctx::cli
