// adamw: validation in front of both backends, then dispatch (see include/longctx/ops/adamw.h).
#include "longctx/ops/adamw.h"

#include <cmath>

#include "src/ops/backend.h"

namespace longctx {

namespace cpu {
void adamw_step(const Context&, const Tensor& param, const Tensor& m, const Tensor& v,
                const Tensor& grad, const AdamWParams&, const Tensor& param_copy);
}  // namespace cpu
namespace cuda {
void adamw_step(const Context&, const Tensor& param, const Tensor& m, const Tensor& v,
                const Tensor& grad, const AdamWParams&, const Tensor& param_copy);
}  // namespace cuda

void adamw_step(const Context& ctx, const Tensor& param, const Tensor& m, const Tensor& v,
                const Tensor& grad, const AdamWParams& params, const Tensor& param_copy) {
  const char* op = "adamw_step";
  check_arg(op, "param", param).device(ctx.device());
  if (ctx.device().is_cuda()) {
    check_value(op, "param", param.dtype() == DType::f32,
                "must be f32 on CUDA (the master weights), got ", dtype_name(param.dtype()),
                "; for a bf16/f16 model keep f32 params, m, v, grad and pass the 16-bit weights "
                "as param_copy");
  } else {
    check_backend(ctx, op, "param", param);
  }
  check_arg(op, "param", param).contiguous();
  struct Named {
    const char* name;
    const Tensor& t;
  };
  const Named all[] = {{"param", param}, {"m", m}, {"v", v}, {"grad", grad}};
  for (const Named& n : all) {
    check_arg(op, n.name, n.t).shape(param.shape()).dtype(param.dtype()).device(ctx.device());
    check_arg(op, n.name, n.t).contiguous();
    for (const Named& other : all)
      if (&other != &n) check_arg(op, n.name, n.t).no_overlap(other.name, other.t);
  }
  if (param_copy.defined()) {
    check_arg(op, "param_copy", param_copy).shape(param.shape()).device(ctx.device());
    check_arg(op, "param_copy", param_copy).dtype_in({DType::bf16, DType::f16}).contiguous();
    for (const Named& n : all) check_arg(op, "param_copy", param_copy).no_overlap(n.name, n.t);
  }
  check_value(op, "lr", std::isfinite(params.lr) && params.lr >= 0, "must be finite and >= 0, got ",
              params.lr);
  check_value(op, "beta1", params.beta1 >= 0 && params.beta1 < 1, "must be in [0, 1), got ",
              params.beta1);
  check_value(op, "beta2", params.beta2 >= 0 && params.beta2 < 1, "must be in [0, 1), got ",
              params.beta2);
  check_value(op, "eps", std::isfinite(params.eps) && params.eps > 0,
              "must be finite and > 0, got ", params.eps);
  check_value(op, "weight_decay", std::isfinite(params.weight_decay) && params.weight_decay >= 0,
              "must be finite and >= 0, got ", params.weight_decay);
  check_value(op, "step", params.step >= 1, "must be >= 1 (1 for the first update), got ",
              params.step);
  check_value(op, "grad_scale", std::isfinite(params.grad_scale), "must be finite, got ",
              params.grad_scale);
  LONGCTX_DISPATCH(ctx, adamw_step, ctx, param, m, v, grad, params, param_copy);
}

}  // namespace longctx
