// causal_conv1d: validation in front of both backends, then dispatch (see
// include/longctx/ops/causal_conv1d.h).
#include "longctx/ops/causal_conv1d.h"

#include "src/ops/scan_checks.h"

namespace longctx {

namespace cpu {
void causal_conv1d_fwd(const Context&, const Tensor& out, const Tensor& x, const Tensor& weight,
                       const Tensor& bias, const CausalConv1dParams&);
void causal_conv1d_bwd(const Context&, const Tensor& dx, const Tensor& dweight, const Tensor& dbias,
                       const Tensor& dout, const Tensor& x, const Tensor& weight,
                       const Tensor& bias, const CausalConv1dParams&);
void causal_conv1d_update(const Context&, const Tensor& out, const Tensor& conv_state,
                          const Tensor& x, const Tensor& weight, const Tensor& bias,
                          const CausalConv1dParams&);
}  // namespace cpu
namespace cuda {
void causal_conv1d_fwd(const Context&, const Tensor& out, const Tensor& x, const Tensor& weight,
                       const Tensor& bias, const CausalConv1dParams&);
void causal_conv1d_bwd(const Context&, const Tensor& dx, const Tensor& dweight, const Tensor& dbias,
                       const Tensor& dout, const Tensor& x, const Tensor& weight,
                       const Tensor& bias, const CausalConv1dParams&);
void causal_conv1d_update(const Context&, const Tensor& out, const Tensor& conv_state,
                          const Tensor& x, const Tensor& weight, const Tensor& bias,
                          const CausalConv1dParams&);
}  // namespace cuda

namespace {

constexpr int64_t kMaxWidth = 4;

// Checks x (rank x_rank, channels in dim 1), weight and bias; returns W.
int64_t check_common(const Context& ctx, const char* op, const Tensor& x, int x_rank,
                     const Tensor& weight, const Tensor& bias, const CausalConv1dParams& params) {
  check_backend(ctx, op, "x", x);
  check_arg(op, "x", x).rank(x_rank).contiguous();
  const int64_t D = x.size(1);
  check_arg(op, "weight", weight).rank(2).dtype(x.dtype()).device(ctx.device()).contiguous();
  const int64_t W = weight.size(1);
  check_value(op, "weight", 1 <= W && W <= kMaxWidth, "must have width 1 <= W <= ", kMaxWidth,
              " (its shape is (D, W)), got W = ", W);
  check_arg(op, "weight", weight).shape({D, W});
  if_given(bias, [&] {
    check_arg(op, "bias", bias).shape({D}).dtype(x.dtype()).device(ctx.device()).contiguous();
  });
  check_value(op, "activation",
              params.activation == Activation::none || params.activation == Activation::silu,
              "must be none or silu");
  return W;
}

void check_like(const Context& ctx, const char* op, const char* name, const Tensor& t,
                const Tensor& like) {
  check_arg(op, name, t).shape(like.shape()).dtype(like.dtype()).device(ctx.device());
  check_arg(op, name, t).contiguous();
}

}  // namespace

void causal_conv1d_fwd(const Context& ctx, const Tensor& out, const Tensor& x, const Tensor& weight,
                       const Tensor& bias, const CausalConv1dParams& params) {
  const char* op = "causal_conv1d_fwd";
  check_common(ctx, op, x, 3, weight, bias, params);
  check_like(ctx, op, "out", out, x);
  check_arg(op, "out", out)
      .no_overlap("x", x)
      .no_overlap("weight", weight)
      .no_overlap("bias", bias);
  LONGCTX_DISPATCH(ctx, causal_conv1d_fwd, ctx, out, x, weight, bias, params);
}

void causal_conv1d_bwd(const Context& ctx, const Tensor& dx, const Tensor& dweight,
                       const Tensor& dbias, const Tensor& dout, const Tensor& x,
                       const Tensor& weight, const Tensor& bias, const CausalConv1dParams& params) {
  const char* op = "causal_conv1d_bwd";
  check_common(ctx, op, x, 3, weight, bias, params);
  check_like(ctx, op, "dout", dout, x);
  check_like(ctx, op, "dx", dx, x);
  check_like(ctx, op, "dweight", dweight, weight);
  check_optional_grad(op, "bias", bias, "dbias", dbias);
  if_given(dbias, [&] { check_like(ctx, op, "dbias", dbias, bias); });
  const std::pair<const char*, const Tensor*> inputs[] = {
      {"dout", &dout}, {"x", &x}, {"weight", &weight}, {"bias", &bias}};
  for (const auto& [name, t] : inputs) {
    check_arg(op, "dx", dx).no_overlap(name, *t);
    check_arg(op, "dweight", dweight).no_overlap(name, *t);
    if (dbias.defined()) check_arg(op, "dbias", dbias).no_overlap(name, *t);
  }
  check_arg(op, "dweight", dweight).no_overlap("dx", dx);
  if (dbias.defined())
    check_arg(op, "dbias", dbias).no_overlap("dx", dx).no_overlap("dweight", dweight);
  LONGCTX_DISPATCH(ctx, causal_conv1d_bwd, ctx, dx, dweight, dbias, dout, x, weight, bias, params);
}

void causal_conv1d_update(const Context& ctx, const Tensor& out, const Tensor& conv_state,
                          const Tensor& x, const Tensor& weight, const Tensor& bias,
                          const CausalConv1dParams& params) {
  const char* op = "causal_conv1d_update";
  const int64_t W = check_common(ctx, op, x, 2, weight, bias, params);
  check_like(ctx, op, "out", out, x);
  check_arg(op, "conv_state", conv_state).shape({x.size(0), x.size(1), W - 1}).dtype(x.dtype());
  check_arg(op, "conv_state", conv_state).device(ctx.device()).contiguous();
  const std::pair<const char*, const Tensor*> inputs[] = {
      {"x", &x}, {"weight", &weight}, {"bias", &bias}};
  for (const auto& [name, t] : inputs) {
    check_arg(op, "out", out).no_overlap(name, *t);
    check_arg(op, "conv_state", conv_state).no_overlap(name, *t);
  }
  check_arg(op, "out", out).no_overlap("conv_state", conv_state);
  LONGCTX_DISPATCH(ctx, causal_conv1d_update, ctx, out, conv_state, x, weight, bias, params);
}

}  // namespace longctx
