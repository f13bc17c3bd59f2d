// cross_entropy: validation in front of both backends, then dispatch (see
// include/longctx/ops/cross_entropy.h). Target values are checked by the backends.
#include "longctx/ops/cross_entropy.h"

#include <limits>

#include "src/ops/backend.h"

namespace longctx {

namespace cpu {
void cross_entropy_fwd(const Context&, const Tensor& loss, const Tensor& lse, const Tensor& logits,
                       const Tensor& targets, const CrossEntropyParams&);
void cross_entropy_bwd(const Context&, const Tensor& dlogits, const Tensor& dloss,
                       const Tensor& logits, const Tensor& targets, const Tensor& lse,
                       const CrossEntropyParams&);
}  // namespace cpu
namespace cuda {
void cross_entropy_fwd(const Context&, const Tensor& loss, const Tensor& lse, const Tensor& logits,
                       const Tensor& targets, const CrossEntropyParams&);
void cross_entropy_bwd(const Context&, const Tensor& dlogits, const Tensor& dloss,
                       const Tensor& logits, const Tensor& targets, const Tensor& lse,
                       const CrossEntropyParams&);
}  // namespace cuda

namespace {

// Checks logits, targets, lse and a (1) scalar; returns nothing, throws on the first problem.
void check_common(const Context& ctx, const char* op, const Tensor& logits, const Tensor& targets,
                  const Tensor& lse, const char* scalar_name, const Tensor& scalar) {
  check_backend(ctx, op, "logits", logits);
  check_arg(op, "logits", logits).contiguous();
  check_value(op, "logits", logits.dim() >= 1 && logits.size(-1) >= 1,
              "must be (..., V) with V >= 1, got ", shape_str(logits.shape()));
  Shape rows = logits.shape();
  rows.pop_back();
  const int64_t N = logits.numel() / logits.size(-1);
  check_value(op, "logits", N <= std::numeric_limits<int32_t>::max(),
              "must have fewer than 2^31 rows, got ", N);
  check_arg(op, "targets", targets).shape(rows).dtype(DType::i32).device(ctx.device());
  check_arg(op, "targets", targets).contiguous();
  const DType sd = stat_dtype(logits.dtype());
  check_arg(op, "lse", lse).shape(rows).dtype(sd).device(ctx.device()).contiguous();
  check_arg(op, scalar_name, scalar).shape({1}).dtype(sd).device(ctx.device());
}

}  // namespace

void cross_entropy_fwd(const Context& ctx, const Tensor& loss, const Tensor& lse,
                       const Tensor& logits, const Tensor& targets,
                       const CrossEntropyParams& params) {
  const char* op = "cross_entropy_fwd";
  check_common(ctx, op, logits, targets, lse, "loss", loss);
  for (const auto& [name, t] :
       {std::pair<const char*, const Tensor&>{"loss", loss}, {"lse", lse}}) {
    check_arg(op, name, t).no_overlap("logits", logits).no_overlap("targets", targets);
  }
  check_arg(op, "loss", loss).no_overlap("lse", lse);
  LONGCTX_DISPATCH(ctx, cross_entropy_fwd, ctx, loss, lse, logits, targets, params);
}

void cross_entropy_bwd(const Context& ctx, const Tensor& dlogits, const Tensor& dloss,
                       const Tensor& logits, const Tensor& targets, const Tensor& lse,
                       const CrossEntropyParams& params) {
  const char* op = "cross_entropy_bwd";
  check_common(ctx, op, logits, targets, lse, "dloss", dloss);
  check_arg(op, "dlogits", dlogits).shape(logits.shape()).dtype(logits.dtype());
  check_arg(op, "dlogits", dlogits).device(ctx.device()).contiguous();
  if (dlogits.data() != logits.data())
    check_arg(op, "dlogits", dlogits).no_overlap("logits", logits);
  check_arg(op, "dlogits", dlogits).no_overlap("targets", targets).no_overlap("lse", lse);
  check_arg(op, "dlogits", dlogits).no_overlap("dloss", dloss);
  LONGCTX_DISPATCH(ctx, cross_entropy_bwd, ctx, dlogits, dloss, logits, targets, lse, params);
}

}  // namespace longctx
