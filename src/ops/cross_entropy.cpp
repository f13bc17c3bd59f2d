// cross_entropy: validation in front of both backends, then dispatch (see
// include/longctx/ops/cross_entropy.h). Target values are checked by the backends.
#include "src/ops/cross_entropy.h"

#include <limits>

#include "src/ops/backend.h"

namespace longctx {

namespace {

// Checks logits, targets, lse and a (1) scalar; returns the params they determine.
CrossEntropyArgs check_common(const Context& ctx, const char* op, const Tensor& logits,
                              const Tensor& targets, const Tensor& lse, const char* scalar_name,
                              const Tensor& scalar, const CrossEntropyParams& params) {
  check_backend(ctx, op, "logits", logits);
  check_arg(op, "logits", logits).contiguous();
  check_value(op, "logits", logits.dim() >= 1 && logits.size(-1) >= 1,
              "must be (..., V) with V >= 1, got ", shape_str(logits.shape()));
  Shape rows = logits.shape();
  rows.pop_back();
  CrossEntropyArgs args;
  args.dtype = logits.dtype();
  args.V = logits.size(-1);
  args.N = logits.numel() / args.V;
  check_value(op, "logits", args.N <= std::numeric_limits<int32_t>::max(),
              "must have fewer than 2^31 rows, got ", args.N);
  check_arg(op, "targets", targets).shape(rows).dtype(DType::i32).device(ctx.device());
  check_arg(op, "targets", targets).contiguous();
  check_arg(op, "lse", lse)
      .shape(rows)
      .dtype(stat_dtype(args.dtype))
      .device(ctx.device())
      .contiguous();
  check_arg(op, scalar_name, scalar).shape({1}).dtype(stat_dtype(args.dtype)).device(ctx.device());
  args.ignore_index = params.ignore_index;
  args.logits = logits.data();
  args.targets = targets.data_as<int32_t>();
  args.lse = lse.data();
  return args;
}

}  // namespace

std::string cross_entropy_supports(Device device, DType dtype) {
  return dtype_supports("cross_entropy", device, dtype);
}

void cross_entropy_fwd(const Context& ctx, const Tensor& loss, const Tensor& lse,
                       const Tensor& logits, const Tensor& targets,
                       const CrossEntropyParams& params) {
  const char* op = "cross_entropy_fwd";
  CrossEntropyArgs args = check_common(ctx, op, logits, targets, lse, "loss", loss, params);
  for (const auto& [name, t] :
       {std::pair<const char*, const Tensor&>{"loss", loss}, {"lse", lse}}) {
    check_arg(op, name, t).no_overlap("logits", logits).no_overlap("targets", targets);
  }
  check_arg(op, "loss", loss).no_overlap("lse", lse);
  args.loss = loss.data();
  LONGCTX_DISPATCH(ctx, cross_entropy_fwd, ctx, args);
}

void cross_entropy_bwd(const Context& ctx, const Tensor& dlogits, const Tensor& dloss,
                       const Tensor& logits, const Tensor& targets, const Tensor& lse,
                       const CrossEntropyParams& params) {
  const char* op = "cross_entropy_bwd";
  CrossEntropyArgs args = check_common(ctx, op, logits, targets, lse, "dloss", dloss, params);
  check_arg(op, "dlogits", dlogits).shape(logits.shape()).dtype(logits.dtype());
  check_arg(op, "dlogits", dlogits).device(ctx.device()).contiguous();
  if (dlogits.data() != logits.data())
    check_arg(op, "dlogits", dlogits).no_overlap("logits", logits);
  check_arg(op, "dlogits", dlogits).no_overlap("targets", targets).no_overlap("lse", lse);
  check_arg(op, "dlogits", dlogits).no_overlap("dloss", dloss);
  args.dloss = dloss.data();
  args.dlogits = dlogits.data();
  LONGCTX_DISPATCH(ctx, cross_entropy_bwd, ctx, args);
}

}  // namespace longctx
