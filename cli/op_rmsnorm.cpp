// `longctx op rmsnorm`: inputs x (..., C), weight (C); option eps. Forward writes out, rstd;
// backward (with dout) writes dx, dweight.
#include "cli/ops.h"

namespace longctx::cli {

namespace {

// rows = numel / C. A scalar x or C = 0 gets an empty rstd here; rmsnorm_fwd rejects such an x
// with its own message.
Shape rstd_shape(const Tensor& x) {
  const int64_t C = x.dim() >= 1 ? x.size(-1) : 0;
  return {C ? x.numel() / C : 0};
}
void rmsnorm_forward(OpCall& call) {
  const Tensor& x = call.input("x");
  const Tensor& weight = call.input("weight");
  RMSNormParams params;
  call.option("eps", &params.eps);
  rmsnorm_fwd(call.ctx, call.output("out", x.shape(), x.dtype()),
              call.output("rstd", rstd_shape(x), stat_dtype(x.dtype())), x, weight, params);
}

void rmsnorm_backward(OpCall& call) {
  const Tensor& x = call.input("x");
  const Tensor& weight = call.input("weight");
  RMSNormParams params;
  call.option("eps", &params.eps);
  const Tensor out = Tensor::empty(x.shape(), x.dtype(), call.ctx.device(), &call.ctx);
  const Tensor rstd = Tensor::empty(rstd_shape(x), stat_dtype(x.dtype()), call.ctx.device(), &call.ctx);
  rmsnorm_fwd(call.ctx, out, rstd, x, weight, params);
  rmsnorm_bwd(call.ctx, call.output("dx", x.shape(), x.dtype()),
              call.output("dweight", weight.shape(), weight.dtype()), call.input("dout"), x, weight,
              rstd, params);
}

}  // namespace

std::vector<OpSpec> rmsnorm_ops() {
  return {{"rmsnorm", "y = x / sqrt(mean(x^2) + eps) * weight over the last dimension",
           /*inputs=*/{"x", "weight"}, /*options=*/{"eps"}, /*backward_inputs=*/{"dout"},
           rmsnorm_forward, rmsnorm_backward}};
}

}  // namespace longctx::cli
