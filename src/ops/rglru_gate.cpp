// rglru_gate: validation in front of both backends, then dispatch (see
// include/longctx/ops/rglru_gate.h).
#include "src/ops/rglru_gate.h"

#include <string>

#include "src/ops/backend.h"

namespace longctx {

namespace {

// x fixes the shape, dtype and device; every (..., D) tensor must match it, lambda-like ones are
// (D); outputs may not overlap any input (x included: a written into x left b wrong). Returns the
// params x, gate_a, gate_x and lambda determine.
RGLRUGateArgs check_rglru(const Context& ctx, const char* op, const Tensor& x, const Tensor& gate_a,
                          const Tensor& gate_x, const Tensor& lambda,
                          std::initializer_list<NamedTensor> like_x,
                          std::initializer_list<NamedTensor> per_channel,
                          std::initializer_list<NamedTensor> outputs) {
  check_backend(ctx, op, "x", x);
  check_arg(op, "x", x).contiguous();
  check_value(op, "x", x.dim() >= 1, "must have a channel dimension, got a scalar");
  RGLRUGateArgs args;
  args.dtype = x.dtype();
  args.D = x.size(x.dim() - 1);
  args.rows = args.D ? x.numel() / args.D : 0;
  for (const auto& [name, t] : like_x)
    check_arg(op, name, *t).shape(x.shape()).dtype(x.dtype()).device(ctx.device()).contiguous();
  for (const auto& [name, t] : per_channel)
    check_arg(op, name, *t).shape({args.D}).dtype(x.dtype()).device(ctx.device()).contiguous();
  for (const auto& [out_name, out] : outputs) {
    check_arg(op, out_name, *out).no_overlap("x", x);
    for (const auto& group : {like_x, per_channel})
      for (const auto& [name, t] : group)
        if (std::string(name) != out_name) check_arg(op, out_name, *out).no_overlap(name, *t);
  }
  args.x = x.data();
  args.gate_a = gate_a.data();
  args.gate_x = gate_x.data();
  args.lambda = lambda.data();
  return args;
}

}  // namespace

std::string rglru_gate_supports(Device device, DType dtype) {
  return dtype_supports("rglru_gate", device, dtype);
}

void rglru_gate_fwd(const Context& ctx, const Tensor& a, const Tensor& b, const Tensor& x,
                    const Tensor& gate_a, const Tensor& gate_x, const Tensor& lambda) {
  RGLRUGateArgs args = check_rglru(ctx, "rglru_gate_fwd", x, gate_a, gate_x, lambda,
                                   {{"gate_a", &gate_a}, {"gate_x", &gate_x}, {"a", &a}, {"b", &b}},
                                   {{"lambda", &lambda}}, {{"a", &a}, {"b", &b}});
  args.a = a.data();
  args.b = b.data();
  LONGCTX_DISPATCH(ctx, rglru_gate_fwd, ctx, args);
}

void rglru_gate_bwd(const Context& ctx, const Tensor& dx, const Tensor& dgate_a,
                    const Tensor& dgate_x, const Tensor& dlambda, const Tensor& da,
                    const Tensor& db, const Tensor& x, const Tensor& gate_a, const Tensor& gate_x,
                    const Tensor& lambda) {
  RGLRUGateArgs args = check_rglru(
      ctx, "rglru_gate_bwd", x, gate_a, gate_x, lambda,
      {{"gate_a", &gate_a},
       {"gate_x", &gate_x},
       {"da", &da},
       {"db", &db},
       {"dx", &dx},
       {"dgate_a", &dgate_a},
       {"dgate_x", &dgate_x}},
      {{"lambda", &lambda}, {"dlambda", &dlambda}},
      {{"dx", &dx}, {"dgate_a", &dgate_a}, {"dgate_x", &dgate_x}, {"dlambda", &dlambda}});
  args.da = da.data();
  args.db = db.data();
  args.dx = dx.data();
  args.dgate_a = dgate_a.data();
  args.dgate_x = dgate_x.data();
  args.dlambda = dlambda.data();
  LONGCTX_DISPATCH(ctx, rglru_gate_bwd, ctx, args);
}

}  // namespace longctx
