// linear: validation in front of both backends, then dispatch (see include/longctx/ops/linear.h).
#include "src/ops/linear.h"

#include <limits>

#include "src/ops/backend.h"

namespace longctx {

namespace {

// Checks x and weight; returns the params they determine and sets `out_shape`, the shape of
// out/dout: x's shape with the last entry Cout.
// `bf16_weight`: a bf16 weight with an f32 x is allowed too (the CPU forward).
LinearArgs check_common(const Context& ctx, const char* op, const Tensor& x, const Tensor& weight,
                        Shape& out_shape, bool bf16_weight = false) {
  check_backend(ctx, op, "x", x);
  check_arg(op, "x", x).contiguous();
  check_value(op, "x", x.dim() >= 1, "must have at least one dimension, got a scalar");
  const bool mixed = bf16_weight && weight.defined() && weight.dtype() == DType::bf16 &&
                     x.dtype() == DType::f32 && ctx.device().is_cpu();
  check_arg(op, "weight", weight)
      .rank(2)
      .dtype(mixed ? DType::bf16 : x.dtype())
      .device(ctx.device())
      .contiguous();
  const int64_t Cin = x.size(-1), Cout = weight.size(0);
  check_value(op, "weight", weight.size(1) == Cin, "expected shape (Cout, Cin) with Cin = ", Cin,
              " (x's last dimension), got ", ShapeText{weight.shape()});
  check_value(op, "weight", Cin >= 1 && Cout >= 1,
              "must have at least one input and one output feature, got shape ",
              ShapeText{weight.shape()});
  // BLAS takes 32-bit dimensions.
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
  const int64_t M = x.numel() / Cin;
  check_value(op, "x", M <= kMax && Cin <= kMax && Cout <= kMax,
              "dimensions must fit in 32 bits for BLAS, got rows = ", M, ", Cin = ", Cin,
              ", Cout = ", Cout);
  out_shape = x.shape();
  out_shape.back() = Cout;
  LinearArgs args;
  args.dtype = x.dtype();
  args.weight_dtype = weight.dtype();
  args.M = M;
  args.Cin = Cin;
  args.Cout = Cout;
  args.x = x.data();
  args.weight = weight.data();
  return args;
}

}  // namespace

std::string linear_supports(Device device, DType dtype) {
  return dtype_supports("linear", device, dtype);
}

void linear_fwd(const Context& ctx, const Tensor& out, const Tensor& x, const Tensor& weight,
                const Tensor& bias) {
  const char* op = "linear_fwd";
  Shape out_shape;
  LinearArgs args = check_common(ctx, op, x, weight, out_shape, /*bf16_weight=*/true);
  if (bias.defined()) {
    check_arg(op, "bias", bias).shape({weight.size(0)}).dtype(x.dtype()).device(ctx.device());
    check_arg(op, "bias", bias).contiguous();
  }
  check_arg(op, "out", out).shape(out_shape).dtype(x.dtype()).device(ctx.device()).contiguous();
  check_arg(op, "out", out)
      .no_overlap("x", x)
      .no_overlap("weight", weight)
      .no_overlap("bias", bias);
  args.bias = data_or_null(bias);
  args.out = out.data();
  LONGCTX_DISPATCH(ctx, linear_fwd, ctx, args);
}

void linear_bwd(const Context& ctx, const Tensor& dx, const Tensor& dweight, const Tensor& dbias,
                const Tensor& dout, const Tensor& x, const Tensor& weight) {
  const char* op = "linear_bwd";
  Shape out_shape;
  LinearArgs args = check_common(ctx, op, x, weight, out_shape);
  check_arg(op, "dout", dout).shape(out_shape).dtype(x.dtype()).device(ctx.device()).contiguous();
  struct Grad {
    const char* name;
    const Tensor& t;
    Shape shape;
  };
  const Grad grads[] = {{"dx", dx, x.shape()},
                        {"dweight", dweight, weight.shape()},
                        {"dbias", dbias, {weight.size(0)}}};
  for (const Grad& g : grads) {
    if (!g.t.defined()) continue;
    check_arg(op, g.name, g.t).shape(g.shape).dtype(x.dtype()).device(ctx.device()).contiguous();
    check_arg(op, g.name, g.t).no_overlap("dout", dout).no_overlap("x", x);
    check_arg(op, g.name, g.t).no_overlap("weight", weight);
    for (const Grad& other : grads)
      if (&other != &g && other.t.defined())
        check_arg(op, g.name, g.t).no_overlap(other.name, other.t);
  }
  args.dout = dout.data();
  args.dx = data_or_null(dx);
  args.dweight = data_or_null(dweight);
  args.dbias = data_or_null(dbias);
  LONGCTX_DISPATCH(ctx, linear_bwd, ctx, args);
}

}  // namespace longctx
