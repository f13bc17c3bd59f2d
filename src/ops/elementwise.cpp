// Elementwise ops: validation in front of both backends, then dispatch
// (see include/longctx/ops/elementwise.h).
#include "longctx/ops/elementwise.h"

#include "src/ops/backend.h"

namespace longctx {

namespace cpu {
void neg_exp_fwd(const Context&, const Tensor& out, const Tensor& x);
void neg_exp_bwd(const Context&, const Tensor& dx, const Tensor& dout, const Tensor& out);
}  // namespace cpu
namespace cuda {
void neg_exp_fwd(const Context&, const Tensor& out, const Tensor& x);
void neg_exp_bwd(const Context&, const Tensor& dx, const Tensor& dout, const Tensor& out);
}  // namespace cuda

namespace {
// Checks that every tensor matches `first` (shape, dtype, device, contiguous).
void check_same(const Context& ctx, const char* op,
                std::initializer_list<std::pair<const char*, const Tensor*>> args) {
  const Tensor& first = *args.begin()->second;
  check_backend(ctx, op, args.begin()->first, first);
  for (const auto& [name, t] : args)
    check_arg(op, name, *t).shape(first.shape()).dtype(first.dtype()).contiguous();
}
}  // namespace

void neg_exp_fwd(const Context& ctx, const Tensor& out, const Tensor& x) {
  check_same(ctx, "neg_exp_fwd", {{"x", &x}, {"out", &out}});
  if (out.data() != x.data()) check_arg("neg_exp_fwd", "out", out).no_overlap("x", x);
  LONGCTX_DISPATCH(ctx, neg_exp_fwd, ctx, out, x);
}

void neg_exp_bwd(const Context& ctx, const Tensor& dx, const Tensor& dout, const Tensor& out) {
  check_same(ctx, "neg_exp_bwd", {{"dout", &dout}, {"out", &out}, {"dx", &dx}});
  if (dx.data() != dout.data()) check_arg("neg_exp_bwd", "dx", dx).no_overlap("dout", dout);
  check_arg("neg_exp_bwd", "dx", dx).no_overlap("out", out);
  LONGCTX_DISPATCH(ctx, neg_exp_bwd, ctx, dx, dout, out);
}

}  // namespace longctx
