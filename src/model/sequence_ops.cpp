// The sequence ops of the mixers over a SequenceLayout (src/model/mixer.h): the single-process op,
// or its context parallel version (include/longctx/dist/context_parallel.h) when the layout
// splits every sequence over a group of ranks.
#include "longctx/dist/context_parallel.h"
#include "longctx/ops/linear_scan.h"
#include "src/model/mixer.h"

namespace longctx {

namespace {
// The CP ops leave a shared weight's gradient summed over the group on every rank; only the
// group's first rank keeps it (see mixer.h).
void keep_on_first_rank(const Context& ctx, const SequenceLayout& layout,
                        std::initializer_list<Tensor> grads) {
  if (layout.cp->rank() == 0) return;
  for (const Tensor& g : grads)
    if (g.defined()) g.fill(0.0, &ctx);
}
}  // namespace

void conv1d_fwd(const Context& ctx, const SequenceLayout& layout, const Tensor& out,
                const Tensor& x, const Tensor& weight, const Tensor& bias,
                const CausalConv1dParams& params) {
  if (layout.context_parallel())
    dist::causal_conv1d_cp_fwd(*layout.cp, ctx, out, x, weight, bias, params, layout.cu_seqlens,
                               layout.cp_layout);
  else
    causal_conv1d_fwd(ctx, out, x, weight, bias, params, layout.cu_seqlens);
}

void conv1d_bwd(const Context& ctx, const SequenceLayout& layout, const Tensor& dx,
                const Tensor& dweight, const Tensor& dbias, const Tensor& dout, const Tensor& x,
                const Tensor& weight, const Tensor& bias, const CausalConv1dParams& params) {
  if (!layout.context_parallel()) {
    causal_conv1d_bwd(ctx, dx, dweight, dbias, dout, x, weight, bias, params, layout.cu_seqlens);
    return;
  }
  dist::causal_conv1d_cp_bwd(*layout.cp, ctx, dx, dweight, dbias, dout, x, weight, bias, params,
                             layout.cu_seqlens, layout.cp_layout);
  keep_on_first_rank(ctx, layout, {dweight, dbias});
}

void scan_fwd(const Context& ctx, const SequenceLayout& layout, const Tensor& out,
              const Tensor& last_state, const Tensor& a, const Tensor& b) {
  if (layout.context_parallel())
    dist::linear_scan_cp_fwd(*layout.cp, ctx, out, last_state, a, b, {}, layout.cu_seqlens,
                             layout.cp_layout);
  else
    linear_scan_fwd(ctx, out, last_state, a, b, {}, layout.cu_seqlens);
}

void scan_bwd(const Context& ctx, const SequenceLayout& layout, const Tensor& da, const Tensor& db,
              const Tensor& dout, const Tensor& a, const Tensor& out) {
  if (layout.context_parallel())
    dist::linear_scan_cp_bwd(*layout.cp, ctx, da, db, {}, dout, {}, a, out, {}, layout.cu_seqlens,
                             layout.cp_layout);
  else
    linear_scan_bwd(ctx, da, db, {}, dout, {}, a, out, {}, layout.cu_seqlens);
}

void selective_scan_fwd(const Context& ctx, const SequenceLayout& layout, const Tensor& out,
                        const Tensor& last_state, const SelectiveScanInputs& in,
                        const SelectiveScanParams& params) {
  if (layout.context_parallel())
    dist::selective_scan_cp_fwd(*layout.cp, ctx, out, last_state, in, params, layout.cp_layout);
  else
    selective_scan_fwd(ctx, out, last_state, in, params);
}

void selective_scan_bwd(const Context& ctx, const SequenceLayout& layout,
                        const SelectiveScanGrads& grads, const Tensor& dout,
                        const SelectiveScanInputs& in, const SelectiveScanParams& params) {
  if (!layout.context_parallel()) {
    selective_scan_bwd(ctx, grads, dout, {}, in, params);
    return;
  }
  dist::selective_scan_cp_bwd(*layout.cp, ctx, grads, dout, {}, in, params, layout.cp_layout);
  keep_on_first_rank(ctx, layout, {grads.dA, grads.dD, grads.ddelta_bias});
}

void ssd_fwd(const Context& ctx, const SequenceLayout& layout, const Tensor& out,
             const Tensor& final_states, const SSDInputs& in, const SSDParams& params) {
  if (layout.context_parallel())
    dist::ssd_cp_fwd(*layout.cp, ctx, out, final_states, in, params, layout.cp_layout);
  else
    ssd_fwd(ctx, out, final_states, in, params);
}

void ssd_bwd(const Context& ctx, const SequenceLayout& layout, const SSDGrads& grads,
             const Tensor& dout, const SSDInputs& in, const SSDParams& params) {
  if (!layout.context_parallel()) {
    ssd_bwd(ctx, grads, dout, {}, in, params);
    return;
  }
  dist::ssd_cp_bwd(*layout.cp, ctx, grads, dout, {}, in, params, layout.cp_layout);
  keep_on_first_rank(ctx, layout, {grads.dA, grads.dD, grads.ddt_bias});
}

void attention_fwd(const Context& ctx, const SequenceLayout& layout, const Tensor& out,
                   const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                   const AttentionParams& params) {
  if (layout.context_parallel())
    dist::attention_cp_fwd(*layout.cp, ctx, out, lse, q, k, v, params, layout.cp_layout,
                           layout.cu_seqlens);
  else
    attention_fwd(ctx, out, lse, q, k, v, params, layout.cu_seqlens, layout.cu_seqlens);
}

void attention_bwd(const Context& ctx, const SequenceLayout& layout, const Tensor& dq,
                   const Tensor& dk, const Tensor& dv, const Tensor& dout, const Tensor& q,
                   const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                   const AttentionParams& params) {
  if (layout.context_parallel())
    dist::attention_cp_bwd(*layout.cp, ctx, dq, dk, dv, dout, q, k, v, out, lse, params,
                           layout.cp_layout, layout.cu_seqlens);
  else
    attention_bwd(ctx, dq, dk, dv, dout, q, k, v, out, lse, params, layout.cu_seqlens,
                  layout.cu_seqlens);
}

void gated_delta_rule_fwd(const Context& ctx, const SequenceLayout& layout, const Tensor& out,
                          const GatedDeltaRuleInputs& in, const GatedDeltaRuleParams& params) {
  if (layout.context_parallel())
    dist::gated_delta_rule_cp_fwd(*layout.cp, ctx, out, {}, in, params, layout.cp_layout);
  else
    gated_delta_rule_fwd(ctx, out, {}, in, params);
}

void gated_delta_rule_bwd(const Context& ctx, const SequenceLayout& layout,
                          const GatedDeltaRuleGrads& grads, const Tensor& dout,
                          const GatedDeltaRuleInputs& in, const GatedDeltaRuleParams& params) {
  if (layout.context_parallel())
    dist::gated_delta_rule_cp_bwd(*layout.cp, ctx, grads, dout, {}, in, params, layout.cp_layout);
  else
    gated_delta_rule_bwd(ctx, grads, dout, {}, in, params);
}

}  // namespace longctx
