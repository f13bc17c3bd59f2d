// gdn_gate: validation in front of both backends, then dispatch (see
// include/longctx/ops/gdn_gate.h).
#include "longctx/ops/gdn_gate.h"

#include <string>

#include "src/ops/backend.h"

namespace longctx {

namespace cpu {
void gdn_gate_fwd(const Context&, const Tensor& g, const Tensor& a, const Tensor& A_log,
                  const Tensor& dt_bias);
void gdn_gate_bwd(const Context&, const Tensor& da, const Tensor& dA_log, const Tensor& ddt_bias,
                  const Tensor& dg, const Tensor& a, const Tensor& A_log, const Tensor& dt_bias);
}  // namespace cpu
namespace cuda {
void gdn_gate_fwd(const Context&, const Tensor& g, const Tensor& a, const Tensor& A_log,
                  const Tensor& dt_bias);
void gdn_gate_bwd(const Context&, const Tensor& da, const Tensor& dA_log, const Tensor& ddt_bias,
                  const Tensor& dg, const Tensor& a, const Tensor& A_log, const Tensor& dt_bias);
}  // namespace cuda

namespace {
using Named = std::pair<const char*, const Tensor*>;

// a fixes the shape, dtype and device; (..., D) tensors match it, per-channel ones are (D),
// per-head ones (HV) with D % HV == 0; outputs overlap no input and no other output.
void check_gate(const Context& ctx, const char* op, const Tensor& a,
                std::initializer_list<Named> like_a, std::initializer_list<Named> per_channel,
                std::initializer_list<Named> per_head, std::initializer_list<Named> outputs) {
  check_backend(ctx, op, "a", a);
  check_arg(op, "a", a).contiguous();
  check_value(op, "a", a.dim() >= 1, "must have a channel dimension, got a scalar");
  const int64_t D = a.size(a.dim() - 1);
  const Tensor& A_log = *per_head.begin()->second;
  check_arg(op, "A_log", A_log).rank(1).dtype(a.dtype()).device(ctx.device()).contiguous();
  const int64_t HV = A_log.size(0);
  check_value(op, "A_log", HV >= 1 && D % HV == 0, "has ", HV,
              " heads, which must divide the channel count D = ", D, " of a");
  for (const auto& [name, t] : like_a)
    check_arg(op, name, *t).shape(a.shape()).dtype(a.dtype()).device(ctx.device()).contiguous();
  for (const auto& [name, t] : per_channel)
    check_arg(op, name, *t).shape({D}).dtype(a.dtype()).device(ctx.device()).contiguous();
  for (const auto& [name, t] : per_head)
    check_arg(op, name, *t).shape({HV}).dtype(a.dtype()).device(ctx.device()).contiguous();
  for (const auto& [out_name, out] : outputs) {
    check_arg(op, out_name, *out).no_overlap("a", a);
    for (const auto& group : {like_a, per_channel, per_head})
      for (const auto& [name, t] : group)
        if (std::string(name) != out_name) check_arg(op, out_name, *out).no_overlap(name, *t);
  }
}
}  // namespace

std::string gdn_gate_supports(Device device, DType dtype) {
  return dtype_supports("gdn_gate", device, dtype);
}

void gdn_gate_fwd(const Context& ctx, const Tensor& g, const Tensor& a, const Tensor& A_log,
                  const Tensor& dt_bias) {
  check_gate(ctx, "gdn_gate_fwd", a, {{"g", &g}}, {{"dt_bias", &dt_bias}}, {{"A_log", &A_log}},
             {{"g", &g}});
  LONGCTX_DISPATCH(ctx, gdn_gate_fwd, ctx, g, a, A_log, dt_bias);
}

void gdn_gate_bwd(const Context& ctx, const Tensor& da, const Tensor& dA_log,
                  const Tensor& ddt_bias, const Tensor& dg, const Tensor& a, const Tensor& A_log,
                  const Tensor& dt_bias) {
  check_gate(ctx, "gdn_gate_bwd", a, {{"dg", &dg}, {"da", &da}},
             {{"dt_bias", &dt_bias}, {"ddt_bias", &ddt_bias}},
             {{"A_log", &A_log}, {"dA_log", &dA_log}},
             {{"da", &da}, {"dA_log", &dA_log}, {"ddt_bias", &ddt_bias}});
  LONGCTX_DISPATCH(ctx, gdn_gate_bwd, ctx, da, dA_log, ddt_bias, dg, a, A_log, dt_bias);
}

}  // namespace longctx
