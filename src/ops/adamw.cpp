// adamw: validation in front of both backends, then dispatch (see include/longctx/ops/adamw.h).
#include "src/ops/adamw.h"

#include <cmath>

#include "src/ops/backend.h"

namespace longctx {

std::string adamw_supports(Device device, DType dtype) {
  if (device.is_cuda() && dtype != DType::f32)
    return detail::concat("adamw on CUDA keeps f32 master weights: params in f32, got ",
                          dtype_name(dtype));
  return dtype_supports("adamw", device, dtype);
}

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
  const DType dt = param.dtype();
  const char* in = dt == DType::f64 ? "" : " (as f32, the step's arithmetic)";
  check_value(op, "beta1", params.beta1 >= 0 && as_computed(dt, params.beta1) < 1,
              "must be in [0, 1)", in, ", got ", params.beta1);
  check_value(op, "beta2", params.beta2 >= 0 && as_computed(dt, params.beta2) < 1,
              "must be in [0, 1)", in, ", got ", params.beta2);
  check_value(op, "eps",
              std::isfinite(as_computed(dt, params.eps)) && as_computed(dt, params.eps) > 0,
              "must be finite and > 0", in, ", got ", params.eps);
  check_value(op, "weight_decay", std::isfinite(params.weight_decay) && params.weight_decay >= 0,
              "must be finite and >= 0, got ", params.weight_decay);
  check_value(op, "step", params.step >= 1, "must be >= 1 (1 for the first update), got ",
              params.step);
  check_value(op, "grad_scale", std::isfinite(params.grad_scale), "must be finite, got ",
              params.grad_scale);
  AdamWArgs args;
  args.dtype = param.dtype();
  args.n = param.numel();
  args.decay = 1.0 - params.lr * params.weight_decay;
  args.step_size = params.lr / (1.0 - std::pow(params.beta1, double(params.step)));
  args.inv_sqrt_bc2 = 1.0 / std::sqrt(1.0 - std::pow(params.beta2, double(params.step)));
  args.beta1 = params.beta1;
  args.beta2 = params.beta2;
  args.one_minus_beta1 = 1.0 - params.beta1;
  args.one_minus_beta2 = 1.0 - params.beta2;
  args.eps = params.eps;
  args.grad_scale = params.grad_scale;
  args.param = param.data();
  args.m = m.data();
  args.v = v.data();
  args.grad = grad.data();
  if (param_copy.defined()) {
    args.param_copy = param_copy.data();
    args.copy_dtype = param_copy.dtype();
  }
  LONGCTX_DISPATCH(ctx, adamw_step, ctx, args);
}

}  // namespace longctx
