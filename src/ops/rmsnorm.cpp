// rmsnorm: validation in front of both backends, then dispatch (see include/longctx/ops/rmsnorm.h).
#include "src/ops/rmsnorm.h"

#include "src/ops/backend.h"

namespace longctx {

namespace {

// Checks x, weight and rstd; the params they determine.
RMSNormArgs check_common(const Context& ctx, const char* op, const Tensor& x, const Tensor& weight,
                         const Tensor& rstd) {
  check_backend(ctx, op, "x", x);
  check_arg(op, "x", x).contiguous();
  check_value(op, "x", x.dim() >= 1, "must have at least one dimension, got a scalar");
  check_value(op, "x", x.size(-1) >= 1, "must have a last dimension C >= 1 (the mean of x^2 over ",
              "no elements is undefined), got shape ", ShapeText{x.shape()});
  RMSNormArgs args;
  args.dtype = x.dtype();
  args.C = x.size(-1);
  args.rows = x.numel() / args.C;
  check_arg(op, "weight", weight).shape({args.C}).dtype(x.dtype()).device(ctx.device());
  check_arg(op, "weight", weight).contiguous();
  check_arg(op, "rstd", rstd).shape({args.rows}).dtype(stat_dtype(x.dtype()));
  check_arg(op, "rstd", rstd).device(ctx.device()).contiguous();
  args.x = x.data();
  args.weight = weight.data();
  args.rstd = rstd.data();
  return args;
}

}  // namespace

std::string rmsnorm_supports(Device device, DType dtype) {
  return dtype_supports("rmsnorm", device, dtype);
}

void rmsnorm_fwd(const Context& ctx, const Tensor& out, const Tensor& rstd, const Tensor& x,
                 const Tensor& weight, const RMSNormParams& params) {
  const char* op = "rmsnorm_fwd";
  RMSNormArgs args = check_common(ctx, op, x, weight, rstd);
  check_value(op, "eps", params.eps > 0, "must be > 0, got ", params.eps);
  check_arg(op, "out", out).shape(x.shape()).dtype(x.dtype()).device(ctx.device()).contiguous();
  check_arg(op, "out", out).no_overlap("weight", weight).no_overlap("rstd", rstd);
  check_arg(op, "rstd", rstd).no_overlap("x", x);
  args.eps = params.eps;
  args.out = out.data();
  LONGCTX_DISPATCH(ctx, rmsnorm_fwd, ctx, args);
}

void rmsnorm_bwd(const Context& ctx, const Tensor& dx, const Tensor& dweight, const Tensor& dout,
                 const Tensor& x, const Tensor& weight, const Tensor& rstd,
                 const RMSNormParams& params) {
  const char* op = "rmsnorm_bwd";
  (void)params;  // eps is folded into rstd by the forward
  RMSNormArgs args = check_common(ctx, op, x, weight, rstd);
  check_arg(op, "dout", dout).shape(x.shape()).dtype(x.dtype()).device(ctx.device()).contiguous();
  check_arg(op, "dx", dx).shape(x.shape()).dtype(x.dtype()).device(ctx.device()).contiguous();
  check_arg(op, "dweight", dweight).shape(weight.shape()).dtype(x.dtype()).device(ctx.device());
  check_arg(op, "dweight", dweight).contiguous().no_overlap("dx", dx);
  for (const auto& [name, t] :
       {std::pair<const char*, const Tensor&>{"x", x}, {"weight", weight}, {"rstd", rstd}}) {
    check_arg(op, "dx", dx).no_overlap(name, t);
    check_arg(op, "dweight", dweight).no_overlap(name, t);
  }
  args.dout = dout.data();
  args.dx = dx.data();
  args.dweight = dweight.data();
  LONGCTX_DISPATCH(ctx, rmsnorm_bwd, ctx, args);
}

}  // namespace longctx
