// add: validation in front of both backends, then dispatch (see include/longctx/ops/add.h).
#include "longctx/ops/add.h"

#include "src/ops/backend.h"

namespace longctx {

namespace cpu {
void add_fwd(const Context&, const Tensor& out, const Tensor& a, const Tensor& b);
}
namespace cuda {
void add_fwd(const Context&, const Tensor& out, const Tensor& a, const Tensor& b);
}

void add_fwd(const Context& ctx, const Tensor& out, const Tensor& a, const Tensor& b) {
  const char* op = "add_fwd";
  check_backend(ctx, op, "a", a);
  check_arg(op, "a", a).contiguous();
  check_arg(op, "b", b).shape(a.shape()).dtype(a.dtype()).device(ctx.device()).contiguous();
  check_arg(op, "out", out).shape(a.shape()).dtype(a.dtype()).device(ctx.device()).contiguous();
  // In place is fine (out == a or out == b); a partial overlap is not.
  for (const auto& [name, t] : {std::pair<const char*, const Tensor&>{"a", a}, {"b", b}})
    if (t.data() != out.data()) check_arg(op, "out", out).no_overlap(name, t);
  LONGCTX_DISPATCH(ctx, add_fwd, ctx, out, a, b);
}

}  // namespace longctx
