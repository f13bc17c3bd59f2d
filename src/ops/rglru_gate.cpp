// rglru_gate: validation in front of both backends, then dispatch (see
// include/longctx/ops/rglru_gate.h).
#include "longctx/ops/rglru_gate.h"

#include <string>

#include "src/ops/backend.h"

namespace longctx {

namespace cpu {
void rglru_gate_fwd(const Context&, const Tensor& a, const Tensor& b, const Tensor& x,
                    const Tensor& gate_a, const Tensor& gate_x, const Tensor& lambda);
void rglru_gate_bwd(const Context&, const Tensor& dx, const Tensor& dgate_a, const Tensor& dgate_x,
                    const Tensor& dlambda, const Tensor& da, const Tensor& db, const Tensor& x,
                    const Tensor& gate_a, const Tensor& gate_x, const Tensor& lambda);
}  // namespace cpu
namespace cuda {
void rglru_gate_fwd(const Context&, const Tensor& a, const Tensor& b, const Tensor& x,
                    const Tensor& gate_a, const Tensor& gate_x, const Tensor& lambda);
void rglru_gate_bwd(const Context&, const Tensor& dx, const Tensor& dgate_a, const Tensor& dgate_x,
                    const Tensor& dlambda, const Tensor& da, const Tensor& db, const Tensor& x,
                    const Tensor& gate_a, const Tensor& gate_x, const Tensor& lambda);
}  // namespace cuda

namespace {
// x fixes the shape, dtype and device; every (..., D) tensor must match it, lambda-like ones are
// (D); outputs may not overlap any input.
void check_rglru(const Context& ctx, const char* op, const Tensor& x,
                 std::initializer_list<std::pair<const char*, const Tensor*>> like_x,
                 std::initializer_list<std::pair<const char*, const Tensor*>> per_channel,
                 std::initializer_list<std::pair<const char*, const Tensor*>> outputs) {
  check_backend(ctx, op, "x", x);
  check_arg(op, "x", x).contiguous();
  check_value(op, "x", x.dim() >= 1, "must have a channel dimension, got a scalar");
  const int64_t D = x.size(x.dim() - 1);
  for (const auto& [name, t] : like_x)
    check_arg(op, name, *t).shape(x.shape()).dtype(x.dtype()).device(ctx.device()).contiguous();
  for (const auto& [name, t] : per_channel)
    check_arg(op, name, *t).shape({D}).dtype(x.dtype()).device(ctx.device()).contiguous();
  for (const auto& [out_name, out] : outputs)
    for (const auto& group : {like_x, per_channel})
      for (const auto& [name, t] : group)
        if (std::string(name) != out_name) check_arg(op, out_name, *out).no_overlap(name, *t);
}
}  // namespace

void rglru_gate_fwd(const Context& ctx, const Tensor& a, const Tensor& b, const Tensor& x,
                    const Tensor& gate_a, const Tensor& gate_x, const Tensor& lambda) {
  check_rglru(ctx, "rglru_gate_fwd", x,
              {{"gate_a", &gate_a}, {"gate_x", &gate_x}, {"a", &a}, {"b", &b}},
              {{"lambda", &lambda}}, {{"a", &a}, {"b", &b}});
  LONGCTX_DISPATCH(ctx, rglru_gate_fwd, ctx, a, b, x, gate_a, gate_x, lambda);
}

void rglru_gate_bwd(const Context& ctx, const Tensor& dx, const Tensor& dgate_a,
                    const Tensor& dgate_x, const Tensor& dlambda, const Tensor& da,
                    const Tensor& db, const Tensor& x, const Tensor& gate_a, const Tensor& gate_x,
                    const Tensor& lambda) {
  check_rglru(ctx, "rglru_gate_bwd", x,
              {{"gate_a", &gate_a},
               {"gate_x", &gate_x},
               {"da", &da},
               {"db", &db},
               {"dx", &dx},
               {"dgate_a", &dgate_a},
               {"dgate_x", &dgate_x}},
              {{"lambda", &lambda}, {"dlambda", &dlambda}},
              {{"dx", &dx}, {"dgate_a", &dgate_a}, {"dgate_x", &dgate_x}, {"dlambda", &dlambda}});
  LONGCTX_DISPATCH(ctx, rglru_gate_bwd, ctx, dx, dgate_a, dgate_x, dlambda, da, db, x, gate_a,
                   gate_x, lambda);
}

}  // namespace longctx
