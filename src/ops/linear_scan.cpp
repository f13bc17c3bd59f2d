// linear_scan: validation in front of both backends, then dispatch (see
// include/longctx/ops/linear_scan.h).
#include "src/ops/linear_scan.h"

#include "src/ops/scan_checks.h"

namespace longctx {

namespace {

// Checks a, b-like (B, T, D) tensors and the optional h0; the params they determine.
LinearScanArgs check_common(const Context& ctx, const char* op, const Tensor& a, const Tensor& h0) {
  check_backend(ctx, op, "a", a);
  check_arg(op, "a", a).rank(3).contiguous();
  if_given(h0, [&] {
    check_arg(op, "h0", h0).shape({a.size(0), a.size(2)}).dtype(stat_dtype(a.dtype()));
    check_arg(op, "h0", h0).device(ctx.device()).contiguous();
  });
  LinearScanArgs args;
  args.dtype = a.dtype();
  args.B = a.size(0);
  args.T = a.size(1);
  args.D = a.size(2);
  args.a = a.data();
  args.h0 = data_or_null(h0);
  return args;
}

void check_like(const Context& ctx, const char* op, const char* name, const Tensor& t,
                const Tensor& like) {
  check_arg(op, name, t).shape(like.shape()).dtype(like.dtype()).device(ctx.device());
  check_arg(op, name, t).contiguous();
}

}  // namespace

std::string linear_scan_supports(Device device, DType dtype) {
  return dtype_supports("linear_scan", device, dtype);
}

void linear_scan_fwd(const Context& ctx, const Tensor& out, const Tensor& last_state,
                     const Tensor& a, const Tensor& b, const Tensor& h0) {
  const char* op = "linear_scan_fwd";
  LinearScanArgs args = check_common(ctx, op, a, h0);
  const DType sdt = stat_dtype(a.dtype());
  check_like(ctx, op, "b", b, a);
  check_like(ctx, op, "out", out, a);
  check_arg(op, "last_state", last_state).shape({a.size(0), a.size(2)}).dtype(sdt);
  check_arg(op, "last_state", last_state).device(ctx.device()).contiguous();
  // out may not alias the inputs: the CUDA scan reads a chunk of a and b after writing out.
  for (const auto& [name, t] :
       {std::pair<const char*, const Tensor&>{"a", a}, {"b", b}, {"h0", h0}}) {
    check_arg(op, "out", out).no_overlap(name, t);
    check_arg(op, "last_state", last_state).no_overlap(name, t);
  }
  check_arg(op, "last_state", last_state).no_overlap("out", out);
  args.b = b.data();
  args.out = out.data();
  args.last_state = last_state.data();
  LONGCTX_DISPATCH(ctx, linear_scan_fwd, ctx, args);
}

void linear_scan_bwd(const Context& ctx, const Tensor& da, const Tensor& db, const Tensor& dh0,
                     const Tensor& dout, const Tensor& dlast_state, const Tensor& a,
                     const Tensor& out, const Tensor& h0) {
  const char* op = "linear_scan_bwd";
  LinearScanArgs args = check_common(ctx, op, a, h0);
  const DType sdt = stat_dtype(a.dtype());
  check_like(ctx, op, "out", out, a);
  check_like(ctx, op, "dout", dout, a);
  check_like(ctx, op, "da", da, a);
  check_like(ctx, op, "db", db, a);
  check_optional_grad(op, "h0", h0, "dh0", dh0);
  if_given(dh0, [&] { check_like(ctx, op, "dh0", dh0, h0); });
  if_given(dlast_state, [&] {
    check_arg(op, "dlast_state", dlast_state).shape({a.size(0), a.size(2)}).dtype(sdt);
    check_arg(op, "dlast_state", dlast_state).device(ctx.device()).contiguous();
  });
  const std::pair<const char*, const Tensor*> inputs[] = {
      {"dout", &dout}, {"dlast_state", &dlast_state}, {"a", &a}, {"out", &out}, {"h0", &h0}};
  for (const auto& [name, t] : inputs) {
    check_arg(op, "da", da).no_overlap(name, *t);
    check_arg(op, "db", db).no_overlap(name, *t);
    if (dh0.defined()) check_arg(op, "dh0", dh0).no_overlap(name, *t);
  }
  check_arg(op, "db", db).no_overlap("da", da);
  if (dh0.defined()) {
    check_arg(op, "dh0", dh0).no_overlap("da", da);
    check_arg(op, "dh0", dh0).no_overlap("db", db);
  }
  args.out = out.data();
  args.dout = dout.data();
  args.dlast_state = data_or_null(dlast_state);
  args.da = da.data();
  args.db = db.data();
  args.dh0 = data_or_null(dh0);
  LONGCTX_DISPATCH(ctx, linear_scan_bwd, ctx, args);
}

}  // namespace longctx
