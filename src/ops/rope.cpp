// rope: validation in front of both backends, then dispatch (see include/longctx/ops/rope.h).
#include "src/ops/rope.h"

#include <cmath>

#include "src/ops/backend.h"

namespace longctx {

namespace {

// The checks shared by both directions: `in` -> `out` with the rotation, in place allowed. Then
// runs it with the angles' `sign`.
void run(const Context& ctx, const char* op, const char* out_name, const Tensor& out,
         const char* in_name, const Tensor& in, const Tensor& positions, const RopeParams& params,
         double sign) {
  check_backend(ctx, op, in_name, in);
  check_arg(op, in_name, in).rank(4).contiguous();
  const int64_t B = in.size(0), T = in.size(1), D = in.size(3);
  check_value(op, in_name, D % 2 == 0,
              "must have an even head dimension D (pairs i, i + D/2), got ", ShapeText{in.shape()});
  check_arg(op, out_name, out).shape(in.shape()).dtype(in.dtype()).device(ctx.device());
  check_arg(op, out_name, out).contiguous();
  if (out.data() != in.data()) check_arg(op, out_name, out).no_overlap(in_name, in);
  if (positions.defined()) {
    check_arg(op, "positions", positions).shape({B, T}).dtype(DType::i32).device(ctx.device());
    check_arg(op, "positions", positions).contiguous();
    check_arg(op, out_name, out).no_overlap("positions", positions);
  }
  check_value(op, "theta", std::isfinite(params.theta) && params.theta > 0,
              "must be a finite number > 0, got ", params.theta);
  RopeArgs args;
  args.dtype = in.dtype();
  args.B = B;
  args.T = T;
  args.H = in.size(2);
  args.D = D;
  args.theta = params.theta;
  args.sign = sign;
  args.positions = positions.defined() ? positions.data_as<int32_t>() : nullptr;
  args.in = in.data();
  args.out = out.data();
  LONGCTX_DISPATCH_AS(ctx, op, rope, ctx, args);
}

}  // namespace

std::string rope_supports(Device device, DType dtype) {
  return dtype_supports("rope", device, dtype);
}

void rope_fwd(const Context& ctx, const Tensor& out, const Tensor& x, const Tensor& positions,
              const RopeParams& params) {
  run(ctx, "rope_fwd", "out", out, "x", x, positions, params, /*sign=*/1.0);
}

void rope_bwd(const Context& ctx, const Tensor& dx, const Tensor& dout, const Tensor& positions,
              const RopeParams& params) {
  run(ctx, "rope_bwd", "dx", dx, "dout", dout, positions, params, /*sign=*/-1.0);
}

}  // namespace longctx
