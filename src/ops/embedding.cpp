// embedding: validation in front of both backends, then dispatch (see
// include/longctx/ops/embedding.h). Token values are checked by the backends as they read them.
#include "longctx/ops/embedding.h"

#include <limits>

#include "src/ops/backend.h"

namespace longctx {

namespace cpu {
void embedding_fwd(const Context&, const Tensor& out, const Tensor& tokens, const Tensor& table);
void embedding_bwd(const Context&, const Tensor& dtable, const Tensor& dout, const Tensor& tokens);
}  // namespace cpu
namespace cuda {
void embedding_fwd(const Context&, const Tensor& out, const Tensor& tokens, const Tensor& table);
void embedding_bwd(const Context&, const Tensor& dtable, const Tensor& dout, const Tensor& tokens);
}  // namespace cuda

namespace {

// Checks tokens and the (V, C) table; returns the shape of out/dout: tokens' shape + (C).
Shape check_common(const Context& ctx, const char* op, const Tensor& tokens, const char* table_name,
                   const Tensor& table) {
  check_backend(ctx, op, table_name, table);
  check_arg(op, table_name, table).rank(2).contiguous();
  check_value(op, table_name, table.size(0) >= 1, "must have at least one row (V >= 1), got ",
              shape_str(table.shape()));
  check_arg(op, "tokens", tokens).dtype(DType::i32).device(ctx.device()).contiguous();
  check_value(op, "tokens", tokens.numel() <= std::numeric_limits<int32_t>::max(),
              "must have fewer than 2^31 elements, got ", tokens.numel());
  Shape out_shape = tokens.shape();
  out_shape.push_back(table.size(1));
  return out_shape;
}

}  // namespace

void embedding_fwd(const Context& ctx, const Tensor& out, const Tensor& tokens,
                   const Tensor& table) {
  const char* op = "embedding_fwd";
  const Shape out_shape = check_common(ctx, op, tokens, "table", table);
  check_arg(op, "out", out).shape(out_shape).dtype(table.dtype()).device(ctx.device());
  check_arg(op, "out", out).contiguous().no_overlap("table", table).no_overlap("tokens", tokens);
  LONGCTX_DISPATCH(ctx, embedding_fwd, ctx, out, tokens, table);
}

void embedding_bwd(const Context& ctx, const Tensor& dtable, const Tensor& dout,
                   const Tensor& tokens) {
  const char* op = "embedding_bwd";
  const Shape dout_shape = check_common(ctx, op, tokens, "dtable", dtable);
  check_arg(op, "dout", dout).shape(dout_shape).dtype(dtable.dtype()).device(ctx.device());
  check_arg(op, "dout", dout).contiguous();
  check_arg(op, "dtable", dtable).no_overlap("dout", dout).no_overlap("tokens", tokens);
  LONGCTX_DISPATCH(ctx, embedding_bwd, ctx, dtable, dout, tokens);
}

}  // namespace longctx
