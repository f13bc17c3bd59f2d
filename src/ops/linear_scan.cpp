// linear_scan: validation in front of both backends, then dispatch (see
// include/longctx/ops/linear_scan.h).
#include "src/ops/linear_scan.h"

#include <vector>

#include "src/ops/scan_checks.h"

namespace longctx {

namespace {

// A state tensor: (N, D), N the number of sequences.
void check_state(const Context& ctx, const char* op, const char* name, const Tensor& t,
                 const LinearScanArgs& args) {
  check_arg(op, name, t).shape({args.seqs.count, args.D}).dtype(stat_dtype(args.dtype));
  check_arg(op, name, t).device(ctx.device()).contiguous();
}

void check_like(const Context& ctx, const char* op, const char* name, const Tensor& t,
                const Tensor& like) {
  check_arg(op, name, t).shape(like.shape()).dtype(like.dtype()).device(ctx.device());
  check_arg(op, name, t).contiguous();
}

// Checks a (B, T, D), the optional cu_seqlens (whose values `host` keeps for the call) and h0;
// the params they determine.
LinearScanArgs check_common(const Context& ctx, const char* op, const Tensor& a, const Tensor& h0,
                            const Tensor& cu_seqlens, std::vector<int32_t>& host) {
  check_backend(ctx, op, "a", a);
  check_arg(op, "a", a).rank(3).contiguous();
  LinearScanArgs args;
  args.dtype = a.dtype();
  args.B = a.size(0);
  args.T = a.size(1);
  args.D = a.size(2);
  if_given(cu_seqlens, [&] {
    check_value(op, "a", args.B == 1, "must have batch dimension 1 with cu_seqlens (a packed ",
                "batch), got shape ", shape_str(a.shape()));
    host = check_cu_seqlens(ctx, op, "cu_seqlens", cu_seqlens, args.T);
  });
  args.seqs = sequences_of(cu_seqlens, host, args.B, args.T);
  if_given(h0, [&] { check_state(ctx, op, "h0", h0, args); });
  args.a = a.data();
  args.h0 = data_or_null(h0);
  return args;
}

}  // namespace

std::string linear_scan_supports(Device device, DType dtype) {
  return dtype_supports("linear_scan", device, dtype);
}

void linear_scan_fwd(const Context& ctx, const Tensor& out, const Tensor& last_state,
                     const Tensor& a, const Tensor& b, const Tensor& h0, const Tensor& cu_seqlens) {
  const char* op = "linear_scan_fwd";
  std::vector<int32_t> host;
  LinearScanArgs args = check_common(ctx, op, a, h0, cu_seqlens, host);
  check_like(ctx, op, "b", b, a);
  check_like(ctx, op, "out", out, a);
  check_state(ctx, op, "last_state", last_state, args);
  // out may not alias the inputs: the CUDA scan reads a chunk of a and b after writing out.
  for (const auto& [name, t] : {std::pair<const char*, const Tensor&>{"a", a},
                                {"b", b},
                                {"h0", h0},
                                {"cu_seqlens", cu_seqlens}}) {
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
                     const Tensor& out, const Tensor& h0, const Tensor& cu_seqlens) {
  const char* op = "linear_scan_bwd";
  std::vector<int32_t> host;
  LinearScanArgs args = check_common(ctx, op, a, h0, cu_seqlens, host);
  check_like(ctx, op, "out", out, a);
  check_like(ctx, op, "dout", dout, a);
  check_like(ctx, op, "da", da, a);
  check_like(ctx, op, "db", db, a);
  check_optional_grad(op, "h0", h0, "dh0", dh0);
  if_given(dh0, [&] { check_like(ctx, op, "dh0", dh0, h0); });
  if_given(dlast_state, [&] { check_state(ctx, op, "dlast_state", dlast_state, args); });
  const std::pair<const char*, const Tensor*> inputs[] = {
      {"dout", &dout}, {"dlast_state", &dlast_state}, {"a", &a}, {"out", &out},
      {"h0", &h0},     {"cu_seqlens", &cu_seqlens}};
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
