// embedding: validation in front of both backends, then dispatch (see
// include/longctx/ops/embedding.h). Token values are checked by the backends as they read them.
#include "src/ops/embedding.h"

#include <limits>

#include "src/ops/backend.h"

namespace longctx {

namespace {

// Checks tokens and the (V, C) table; returns the params they determine and sets the shape of
// out/dout: tokens' shape + (C).
EmbeddingArgs check_common(const Context& ctx, const char* op, const Tensor& tokens,
                           const char* table_name, const Tensor& table, Shape& out_shape) {
  check_backend(ctx, op, table_name, table);
  check_arg(op, table_name, table).rank(2).contiguous();
  check_value(op, table_name, table.size(0) >= 1, "must have at least one row (V >= 1), got ",
              ShapeText{table.shape()});
  check_arg(op, "tokens", tokens).dtype(DType::i32).device(ctx.device()).contiguous();
  check_value(op, "tokens", tokens.numel() <= std::numeric_limits<int32_t>::max(),
              "must have fewer than 2^31 elements, got ", tokens.numel());
  out_shape = tokens.shape();
  out_shape.push_back(table.size(1));
  EmbeddingArgs args;
  args.dtype = table.dtype();
  args.N = tokens.numel();
  args.V = table.size(0);
  args.C = table.size(1);
  args.tokens = tokens.data_as<int32_t>();
  return args;
}

}  // namespace

std::string embedding_supports(Device device, DType dtype) {
  return dtype_supports("embedding", device, dtype);
}

void embedding_fwd(const Context& ctx, const Tensor& out, const Tensor& tokens,
                   const Tensor& table) {
  const char* op = "embedding_fwd";
  Shape out_shape;
  EmbeddingArgs args = check_common(ctx, op, tokens, "table", table, out_shape);
  check_arg(op, "out", out).shape(out_shape).dtype(table.dtype()).device(ctx.device());
  check_arg(op, "out", out).contiguous().no_overlap("table", table).no_overlap("tokens", tokens);
  args.table = table.data();
  args.out = out.data();
  LONGCTX_DISPATCH(ctx, embedding_fwd, ctx, args);
}

void embedding_bwd(const Context& ctx, const Tensor& dtable, const Tensor& dout,
                   const Tensor& tokens) {
  const char* op = "embedding_bwd";
  Shape dout_shape;
  EmbeddingArgs args = check_common(ctx, op, tokens, "dtable", dtable, dout_shape);
  check_arg(op, "dout", dout).shape(dout_shape).dtype(dtable.dtype()).device(ctx.device());
  check_arg(op, "dout", dout).contiguous();
  check_arg(op, "dtable", dtable).no_overlap("dout", dout).no_overlap("tokens", tokens);
  args.dout = dout.data();
  args.dtable = dtable.data();
  LONGCTX_DISPATCH(ctx, embedding_bwd, ctx, args);
}

}  // namespace longctx
