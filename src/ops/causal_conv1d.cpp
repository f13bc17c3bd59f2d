// causal_conv1d: validation in front of both backends, then dispatch (see
// include/longctx/ops/causal_conv1d.h).
#include "src/ops/causal_conv1d.h"

#include <vector>

#include "src/ops/scan_checks.h"

namespace longctx {

namespace {

constexpr int64_t kMaxWidth = 4;

// Where the elements of a (B, D, T) activation lie, or with channel_last of a (B, T, D) one:
// contiguous, or a narrow of the last dimension of a contiguous (B, T, R) tensor, R >= D. The
// strides of size-1 dimensions do not matter (as for is_contiguous).
ConvStrides check_layout(const char* op, const char* name, const Tensor& t, bool channel_last) {
  if (!channel_last) {
    check_arg(op, name, t).contiguous();
    return {t.size(1) * t.size(2), t.size(2), 1};
  }
  const int64_t B = t.size(0), T = t.size(1), D = t.size(2);
  // No element, no layout: a contiguous (2, 0, 3) has strides (0, 3, 1), which read as rows
  // 0 apart were refused.
  if (t.numel() == 0) return {T * D, 1, D};
  const int64_t R = T > 1 ? t.stride(1) : B > 1 ? t.stride(0) : D;
  const bool ok =
      (D <= 1 || t.stride(2) == 1) && R >= D && (B <= 1 || T <= 1 || t.stride(0) == T * R);
  check_value(op, name, ok,
              "must be channel-last (B, T, D) with unit-stride channels and rows evenly spaced at "
              "least D apart (contiguous, or a narrow of a contiguous tensor's last dimension), "
              "got strides ",
              ShapeText{t.strides()}, " for shape ", ShapeText{t.shape()});
  return {T * R, 1, R};
}

// Checks x (rank x_rank: (B, D, T), or (B, T, D) channel-last; (B, D) for the decode step),
// weight and bias; the params they determine.
CausalConv1dArgs check_common(const Context& ctx, const char* op, const Tensor& x, int x_rank,
                              const Tensor& weight, const Tensor& bias,
                              const CausalConv1dParams& params) {
  check_backend(ctx, op, "x", x);
  check_arg(op, "x", x).rank(x_rank);
  const bool channel_last = params.channel_last && x_rank == 3;
  if (x_rank == 2) check_arg(op, "x", x).contiguous();
  const int64_t D = x.size(channel_last ? 2 : 1);
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
  CausalConv1dArgs args;
  args.dtype = x.dtype();
  args.B = x.size(0);
  args.D = D;
  args.T = x_rank == 3 ? x.size(channel_last ? 1 : 2) : 1;
  args.channel_last = channel_last;
  if (x_rank == 3) args.x_at = check_layout(op, "x", x, channel_last);
  args.W = int(W);
  args.silu = params.activation == Activation::silu;
  args.x = x.data();
  args.weight = weight.data();
  args.bias = data_or_null(bias);
  return args;
}

// The sequences of a call: a packed batch (x (1, D, T)) when cu_seqlens is given, whose values
// `host` keeps for the call.
void check_packed(const Context& ctx, const char* op, const Tensor& x, const Tensor& cu_seqlens,
                  CausalConv1dArgs& args, std::vector<int32_t>& host) {
  if_given(cu_seqlens, [&] {
    check_value(op, "x", args.B == 1, "must have batch dimension 1 with cu_seqlens (a packed ",
                "batch), got shape ", shape_str(x.shape()));
    host = check_cu_seqlens(ctx, op, "cu_seqlens", cu_seqlens, args.T);
  });
  args.seqs = sequences_of(cu_seqlens, host, args.B, args.T);
}

void check_like(const Context& ctx, const char* op, const char* name, const Tensor& t,
                const Tensor& like) {
  check_arg(op, name, t).shape(like.shape()).dtype(like.dtype()).device(ctx.device());
  check_arg(op, name, t).contiguous();
}

// An activation like x: its shape, dtype and device; its layout (check_layout).
ConvStrides check_activation(const Context& ctx, const char* op, const char* name, const Tensor& t,
                             const Tensor& x, const CausalConv1dArgs& args) {
  check_arg(op, name, t).shape(x.shape()).dtype(x.dtype()).device(ctx.device());
  return check_layout(op, name, t, args.channel_last);
}

}  // namespace

std::string causal_conv1d_supports(Device device, DType dtype, int64_t width) {
  if (width < 1 || width > kMaxWidth)
    return detail::concat("causal_conv1d supports widths 1 <= W <= ", kMaxWidth,
                          ", got W = ", width);
  return dtype_supports("causal_conv1d", device, dtype);
}

void causal_conv1d_fwd(const Context& ctx, const Tensor& out, const Tensor& x, const Tensor& weight,
                       const Tensor& bias, const CausalConv1dParams& params,
                       const Tensor& cu_seqlens) {
  const char* op = "causal_conv1d_fwd";
  CausalConv1dArgs args = check_common(ctx, op, x, 3, weight, bias, params);
  std::vector<int32_t> host;
  check_packed(ctx, op, x, cu_seqlens, args, host);
  args.out_at = check_activation(ctx, op, "out", out, x, args);
  check_arg(op, "out", out)
      .no_overlap("x", x)
      .no_overlap("weight", weight)
      .no_overlap("bias", bias)
      .no_overlap("cu_seqlens", cu_seqlens);
  args.out = out.data();
  LONGCTX_DISPATCH(ctx, causal_conv1d_fwd, ctx, args);
}

void causal_conv1d_bwd(const Context& ctx, const Tensor& dx, const Tensor& dweight,
                       const Tensor& dbias, const Tensor& dout, const Tensor& x,
                       const Tensor& weight, const Tensor& bias, const CausalConv1dParams& params,
                       const Tensor& cu_seqlens) {
  const char* op = "causal_conv1d_bwd";
  CausalConv1dArgs args = check_common(ctx, op, x, 3, weight, bias, params);
  std::vector<int32_t> host;
  check_packed(ctx, op, x, cu_seqlens, args, host);
  args.dout_at = check_activation(ctx, op, "dout", dout, x, args);
  args.dx_at = check_activation(ctx, op, "dx", dx, x, args);
  check_like(ctx, op, "dweight", dweight, weight);
  check_optional_grad(op, "bias", bias, "dbias", dbias);
  if_given(dbias, [&] { check_like(ctx, op, "dbias", dbias, bias); });
  const std::pair<const char*, const Tensor*> inputs[] = {{"dout", &dout},
                                                          {"x", &x},
                                                          {"weight", &weight},
                                                          {"bias", &bias},
                                                          {"cu_seqlens", &cu_seqlens}};
  for (const auto& [name, t] : inputs) {
    check_arg(op, "dx", dx).no_overlap(name, *t);
    check_arg(op, "dweight", dweight).no_overlap(name, *t);
    if (dbias.defined()) check_arg(op, "dbias", dbias).no_overlap(name, *t);
  }
  check_arg(op, "dweight", dweight).no_overlap("dx", dx);
  if (dbias.defined())
    check_arg(op, "dbias", dbias).no_overlap("dx", dx).no_overlap("dweight", dweight);
  args.dout = dout.data();
  args.dx = dx.data();
  args.dweight = dweight.data();
  args.dbias = data_or_null(dbias);
  LONGCTX_DISPATCH(ctx, causal_conv1d_bwd, ctx, args);
}

void causal_conv1d_update(const Context& ctx, const Tensor& out, const Tensor& conv_state,
                          const Tensor& x, const Tensor& weight, const Tensor& bias,
                          const CausalConv1dParams& params) {
  const char* op = "causal_conv1d_update";
  CausalConv1dArgs args = check_common(ctx, op, x, 2, weight, bias, params);
  check_like(ctx, op, "out", out, x);
  check_arg(op, "conv_state", conv_state).shape({args.B, args.D, args.W - 1}).dtype(x.dtype());
  check_arg(op, "conv_state", conv_state).device(ctx.device()).contiguous();
  const std::pair<const char*, const Tensor*> inputs[] = {
      {"x", &x}, {"weight", &weight}, {"bias", &bias}};
  for (const auto& [name, t] : inputs) {
    check_arg(op, "out", out).no_overlap(name, *t);
    check_arg(op, "conv_state", conv_state).no_overlap(name, *t);
  }
  check_arg(op, "out", out).no_overlap("conv_state", conv_state);
  args.out = out.data();
  args.conv_state = conv_state.data();
  LONGCTX_DISPATCH(ctx, causal_conv1d_update, ctx, args);
}

}  // namespace longctx
