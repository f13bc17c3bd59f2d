// rope: validation in front of both backends, then dispatch (see include/longctx/ops/rope.h).
#include "longctx/ops/rope.h"

#include <cmath>

#include "src/ops/backend.h"

namespace longctx {

namespace cpu {
void rope_fwd(const Context&, const Tensor& out, const Tensor& x, const Tensor& positions,
              const RopeParams&);
void rope_bwd(const Context&, const Tensor& dx, const Tensor& dout, const Tensor& positions,
              const RopeParams&);
}  // namespace cpu
namespace cuda {
void rope_fwd(const Context&, const Tensor& out, const Tensor& x, const Tensor& positions,
              const RopeParams&);
void rope_bwd(const Context&, const Tensor& dx, const Tensor& dout, const Tensor& positions,
              const RopeParams&);
}  // namespace cuda

namespace {

// The checks shared by both directions: `in` -> `out` with the rotation, in place allowed.
void check_rope(const Context& ctx, const char* op, const char* out_name, const Tensor& out,
                const char* in_name, const Tensor& in, const Tensor& positions,
                const RopeParams& params) {
  check_backend(ctx, op, in_name, in);
  check_arg(op, in_name, in).rank(4).contiguous();
  const int64_t B = in.size(0), T = in.size(1), D = in.size(3);
  check_value(op, in_name, D % 2 == 0,
              "must have an even head dimension D (pairs i, i + D/2), got ", shape_str(in.shape()));
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
}

}  // namespace

void rope_fwd(const Context& ctx, const Tensor& out, const Tensor& x, const Tensor& positions,
              const RopeParams& params) {
  check_rope(ctx, "rope_fwd", "out", out, "x", x, positions, params);
  LONGCTX_DISPATCH(ctx, rope_fwd, ctx, out, x, positions, params);
}

void rope_bwd(const Context& ctx, const Tensor& dx, const Tensor& dout, const Tensor& positions,
              const RopeParams& params) {
  check_rope(ctx, "rope_bwd", "dx", dx, "dout", dout, positions, params);
  LONGCTX_DISPATCH(ctx, rope_bwd, ctx, dx, dout, positions, params);
}

}  // namespace longctx
