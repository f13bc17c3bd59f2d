// rmsnorm: validation in front of both backends, then dispatch (see include/longctx/ops/rmsnorm.h).
#include "src/ops/rmsnorm.h"

#include "src/ops/backend.h"

namespace longctx {

namespace {

// Checks x (the normalised input, named x_name), weight and rstd; the params they determine.
RMSNormArgs check_common(const Context& ctx, const char* op, const char* x_name, const Tensor& x,
                         const Tensor& weight, const Tensor& rstd) {
  check_backend(ctx, op, x_name, x);
  check_arg(op, x_name, x).contiguous();
  check_value(op, x_name, x.dim() >= 1, "must have at least one dimension, got a scalar");
  check_value(op, x_name, x.size(-1) >= 1, "must have a last dimension C >= 1 (the mean of x^2 ",
              "over no elements is undefined), got shape ", ShapeText{x.shape()});
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

// eps > 0 as the forward's arithmetic holds it (f32 unless x is f64).
void check_eps(const char* op, DType dtype, double eps) {
  check_value(op, "eps", as_computed(dtype, eps) > 0, "must be > 0",
              dtype == DType::f64 ? "" : " (as f32, the norm's arithmetic)", ", got ", eps);
}

// A tensor of x's shape, dtype and device, contiguous.
void check_like(const Context& ctx, const char* op, const char* name, const Tensor& t,
                const Tensor& x) {
  check_arg(op, name, t).shape(x.shape()).dtype(x.dtype()).device(ctx.device()).contiguous();
}

// The output `out` of an elementwise step may be the input `in` itself (in place: both have
// the same shape and are contiguous, so the same start is the same elements) or disjoint from it.
void check_same_or_disjoint(const char* op, const char* out_name, const Tensor& out,
                            const char* in_name, const Tensor& in) {
  if (out.data() != in.data()) check_arg(op, out_name, out).no_overlap(in_name, in);
}

}  // namespace

std::string rmsnorm_supports(Device device, DType dtype) {
  return dtype_supports("rmsnorm", device, dtype);
}

void rmsnorm_fwd(const Context& ctx, const Tensor& out, const Tensor& rstd, const Tensor& x,
                 const Tensor& weight, const RMSNormParams& params) {
  const char* op = "rmsnorm_fwd";
  RMSNormArgs args = check_common(ctx, op, "x", x, weight, rstd);
  check_eps(op, x.dtype(), params.eps);
  check_like(ctx, op, "out", out, x);
  check_same_or_disjoint(op, "out", out, "x", x);
  check_arg(op, "out", out).no_overlap("weight", weight).no_overlap("rstd", rstd);
  check_arg(op, "rstd", rstd).no_overlap("x", x).no_overlap("weight", weight);
  args.eps = params.eps;
  args.out = out.data();
  LONGCTX_DISPATCH(ctx, rmsnorm_fwd, ctx, args);
}

void rmsnorm_bwd(const Context& ctx, const Tensor& dx, const Tensor& dweight, const Tensor& dout,
                 const Tensor& x, const Tensor& weight, const Tensor& rstd,
                 const RMSNormParams& params) {
  const char* op = "rmsnorm_bwd";
  (void)params;  // eps is folded into rstd by the forward
  RMSNormArgs args = check_common(ctx, op, "x", x, weight, rstd);
  check_like(ctx, op, "dout", dout, x);
  check_like(ctx, op, "dx", dx, x);
  check_arg(op, "dweight", dweight).shape(weight.shape()).dtype(x.dtype()).device(ctx.device());
  check_arg(op, "dweight", dweight).contiguous().no_overlap("dx", dx).no_overlap("dout", dout);
  check_same_or_disjoint(op, "dx", dx, "dout", dout);
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

void add_rmsnorm_fwd(const Context& ctx, const Tensor& out, const Tensor& h, const Tensor& rstd,
                     const Tensor& x, const Tensor& residual, const Tensor& weight,
                     const RMSNormParams& params) {
  const char* op = "add_rmsnorm_fwd";
  RMSNormArgs args = check_common(ctx, op, "x", x, weight, rstd);
  check_eps(op, x.dtype(), params.eps);
  check_like(ctx, op, "residual", residual, x);
  check_like(ctx, op, "h", h, x);
  check_like(ctx, op, "out", out, x);
  check_same_or_disjoint(op, "h", h, "x", x);
  check_same_or_disjoint(op, "h", h, "residual", residual);
  check_arg(op, "h", h).no_overlap("weight", weight).no_overlap("rstd", rstd);
  check_arg(op, "out", out).no_overlap("x", x).no_overlap("residual", residual);
  check_arg(op, "out", out).no_overlap("h", h).no_overlap("weight", weight);
  check_arg(op, "out", out).no_overlap("rstd", rstd);
  check_arg(op, "rstd", rstd).no_overlap("x", x).no_overlap("residual", residual);
  check_arg(op, "rstd", rstd).no_overlap("weight", weight);
  args.eps = params.eps;
  args.residual = residual.data();
  args.h = h.data();
  args.out = out.data();
  LONGCTX_DISPATCH_AS(ctx, op, rmsnorm_fwd, ctx, args);
}

void add_rmsnorm_bwd(const Context& ctx, const Tensor& dx, const Tensor& dweight,
                     const Tensor& dout, const Tensor& dh, const Tensor& h, const Tensor& weight,
                     const Tensor& rstd, const RMSNormParams& params) {
  const char* op = "add_rmsnorm_bwd";
  (void)params;  // eps is folded into rstd by the forward
  RMSNormArgs args = check_common(ctx, op, "h", h, weight, rstd);
  check_like(ctx, op, "dout", dout, h);
  check_like(ctx, op, "dh", dh, h);
  check_like(ctx, op, "dx", dx, h);
  check_arg(op, "dweight", dweight).shape(weight.shape()).dtype(h.dtype()).device(ctx.device());
  check_arg(op, "dweight", dweight).contiguous().no_overlap("dx", dx).no_overlap("dh", dh);
  check_same_or_disjoint(op, "dx", dx, "dh", dh);
  for (const auto& [name, t] : {std::pair<const char*, const Tensor&>{"dout", dout},
                                {"h", h},
                                {"weight", weight},
                                {"rstd", rstd}}) {
    check_arg(op, "dx", dx).no_overlap(name, t);
    check_arg(op, "dweight", dweight).no_overlap(name, t);
  }
  args.dout = dout.data();
  args.dh = dh.data();
  args.dx = dx.data();
  args.dweight = dweight.data();
  LONGCTX_DISPATCH_AS(ctx, op, rmsnorm_bwd, ctx, args);
}

}  // namespace longctx
