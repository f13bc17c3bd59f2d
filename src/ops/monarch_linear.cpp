// monarch_linear: validation in front of both backends, then dispatch (see
// include/longctx/ops/monarch_linear.h).
#include "src/ops/monarch_linear.h"

#include <limits>

#include "src/ops/backend.h"

namespace longctx {

namespace {

constexpr int64_t kMax32 = std::numeric_limits<int32_t>::max();

// The shape rules of the two factors, shared by the op and the projection: w1 (k, q, p) with
// k·p = n_in, w2 (l, s, r) with l·r = k·q, every dimension >= 1. Fills the dimensions of `args`.
template <class Args>
void check_factors(const char* op, const Tensor& w1, const Tensor& w2, int64_t n_in,
                   const char* n_in_from, Args& args) {
  check_arg(op, "w1", w1).rank(3);
  check_arg(op, "w2", w2).rank(3);
  const int64_t k = w1.size(0), q = w1.size(1), p = w1.size(2);
  const int64_t l = w2.size(0), s = w2.size(1), r = w2.size(2);
  check_value(op, "w1", k >= 1 && q >= 1 && p >= 1,
              "must have at least one block, output and input: expected shape (k, q, p) with every "
              "entry >= 1, got ",
              shape_str(w1.shape()));
  check_value(op, "w1", k * p == n_in, "expected shape (k, q, p) with k·p = n_in = ", n_in, " (",
              n_in_from, "), got ", shape_str(w1.shape()), " (k·p = ", k * p, ")");
  check_value(op, "w2", l >= 1 && s >= 1 && r >= 1,
              "must have at least one block, output and input: expected shape (l, s, r) with every "
              "entry >= 1, got ",
              shape_str(w2.shape()));
  check_value(op, "w2", l * r == k * q, "expected shape (l, s, r) with l·r = k·q = ", k * q,
              " (w1's blocks times their outputs), got ", shape_str(w2.shape()), " (l·r = ", l * r,
              ")");
  args.k = k, args.q = q, args.p = p, args.l = l, args.s = s, args.r = r;
}

// Checks x, w1 and w2; returns the params they determine and sets the shapes of out/dout
// (x's leading dims, then n_out) and of mid (x's leading dims, then l·r).
MonarchLinearArgs check_common(const Context& ctx, const char* op, const Tensor& x,
                               const Tensor& w1, const Tensor& w2, Shape& out_shape,
                               Shape& mid_shape) {
  check_backend(ctx, op, "x", x);
  check_arg(op, "x", x).contiguous();
  check_value(op, "x", x.dim() >= 1, "must have at least one dimension, got a scalar");
  MonarchLinearArgs args;
  check_factors(op, w1, w2, x.size(-1), "x's last dimension", args);
  check_arg(op, "w1", w1).dtype(x.dtype()).device(ctx.device()).contiguous();
  check_arg(op, "w2", w2).dtype(x.dtype()).device(ctx.device()).contiguous();
  args.dtype = x.dtype();
  args.n_in = args.k * args.p;
  args.n_out = args.l * args.s;
  args.M = x.numel() / args.n_in;
  // BLAS and cuBLASLt take 32-bit dimensions, leading dimensions and batch counts.
  check_value(op, "x", args.M <= kMax32 && args.n_in <= kMax32,
              "rows and features must fit in 32 bits for BLAS, got rows = ", args.M,
              ", n_in = ", args.n_in);
  check_value(op, "w2", args.n_out <= kMax32 && args.l * args.r <= kMax32,
              "l·s and l·r must fit in 32 bits for BLAS, got shape ", shape_str(w2.shape()));
  out_shape = mid_shape = x.shape();
  out_shape.back() = args.n_out;
  mid_shape.back() = args.l * args.r;
  args.x = x.data();
  args.w1 = w1.data();
  args.w2 = w2.data();
  return args;
}

}  // namespace

std::string monarch_linear_supports(Device device, DType dtype) {
  return dtype_supports("monarch_linear", device, dtype);
}

void monarch_linear_fwd(const Context& ctx, const Tensor& out, const Tensor& x, const Tensor& w1,
                        const Tensor& w2, const Tensor& bias, const Tensor& mid) {
  const char* op = "monarch_linear_fwd";
  Shape out_shape, mid_shape;
  MonarchLinearArgs args = check_common(ctx, op, x, w1, w2, out_shape, mid_shape);
  if (bias.defined()) {
    check_arg(op, "bias", bias).shape({args.n_out}).dtype(x.dtype()).device(ctx.device());
    check_arg(op, "bias", bias).contiguous();
  }
  check_arg(op, "out", out).shape(out_shape).dtype(x.dtype()).device(ctx.device()).contiguous();
  if (mid.defined())
    check_arg(op, "mid", mid).shape(mid_shape).dtype(x.dtype()).device(ctx.device()).contiguous();
  check_disjoint(op, {{"out", &out}, {"mid", &mid}},
                 {{"x", &x}, {"w1", &w1}, {"w2", &w2}, {"bias", &bias}});
  args.bias = data_or_null(bias);
  args.out = out.data();
  args.mid = data_or_null(mid);
  LONGCTX_DISPATCH(ctx, monarch_linear_fwd, ctx, args);
}

void monarch_linear_bwd(const Context& ctx, const Tensor& dx, const Tensor& dw1, const Tensor& dw2,
                        const Tensor& dbias, const Tensor& dout, const Tensor& x, const Tensor& w1,
                        const Tensor& w2, const Tensor& mid) {
  const char* op = "monarch_linear_bwd";
  Shape out_shape, mid_shape;
  MonarchLinearArgs args = check_common(ctx, op, x, w1, w2, out_shape, mid_shape);
  check_arg(op, "dout", dout).shape(out_shape).dtype(x.dtype()).device(ctx.device()).contiguous();
  if (mid.defined())
    check_arg(op, "mid", mid).shape(mid_shape).dtype(x.dtype()).device(ctx.device()).contiguous();
  struct Grad {
    const char* name;
    const Tensor& t;
    Shape shape;
  };
  const Grad grads[] = {{"dx", dx, x.shape()},
                        {"dw1", dw1, w1.shape()},
                        {"dw2", dw2, w2.shape()},
                        {"dbias", dbias, {args.n_out}}};
  for (const Grad& g : grads) {
    if (!g.t.defined()) continue;
    check_arg(op, g.name, g.t).shape(g.shape).dtype(x.dtype()).device(ctx.device()).contiguous();
  }
  check_disjoint(op, {{"dx", &dx}, {"dw1", &dw1}, {"dw2", &dw2}, {"dbias", &dbias}},
                 {{"dout", &dout}, {"x", &x}, {"w1", &w1}, {"w2", &w2}, {"mid", &mid}});
  args.dout = dout.data();
  args.mid = data_or_null(mid);
  args.dx = data_or_null(dx);
  args.dw1 = data_or_null(dw1);
  args.dw2 = data_or_null(dw2);
  args.dbias = data_or_null(dbias);
  LONGCTX_DISPATCH(ctx, monarch_linear_bwd, ctx, args);
}

MonarchShape monarch_shape(int64_t n_in, int64_t n_out, int64_t nblocks) {
  const char* op = "monarch_shape";
  check_value(op, "nblocks", nblocks >= 1, "must be >= 1, got ", nblocks);
  check_value(op, "n_in", n_in >= 1 && n_in % nblocks == 0,
              "must be a multiple of nblocks = ", nblocks,
              " (each block takes n_in / nblocks inputs), got ", n_in);
  check_value(op, "n_out", n_out >= 1 && n_out % nblocks == 0,
              "must be a multiple of nblocks = ", nblocks,
              " (each block gives n_out / nblocks outputs), got ", n_out);
  const int64_t b = nblocks, in = n_in / b, out = n_out / b;
  if (n_in < n_out) return {{b, in, in}, {b, out, in}};
  return {{b, out, in}, {b, out, out}};
}

std::string monarch_project_supports(Device device, DType dtype) {
  if (device.is_cuda())
    return "monarch_project runs on the CPU only (a one-off conversion): move the weight there";
  return dtype_supports("monarch_project", device, dtype);
}

void monarch_project(const Context& ctx, const Tensor& w1, const Tensor& w2, const Tensor& weight) {
  const char* op = "monarch_project";
  const std::string why = monarch_project_supports(ctx.device(), weight.dtype());
  LONGCTX_CHECK(why.empty(), op, ": ", why);
  check_backend(ctx, op, "weight", weight);
  check_arg(op, "weight", weight).rank(2).contiguous();
  MonarchProjectArgs args;
  check_factors(op, w1, w2, weight.size(1), "weight's columns", args);
  check_value(op, "weight", weight.size(0) == args.l * args.s,
              "expected shape (n_out, n_in) with n_out = l·s = ", args.l * args.s,
              " (w2's blocks times their outputs), got ", shape_str(weight.shape()));
  check_arg(op, "w1", w1).dtype(weight.dtype()).device(ctx.device()).contiguous();
  check_arg(op, "w2", w2).dtype(weight.dtype()).device(ctx.device()).contiguous();
  check_arg(op, "w1", w1).no_overlap("weight", weight);
  check_arg(op, "w2", w2).no_overlap("weight", weight).no_overlap("w1", w1);
  args.dtype = weight.dtype();
  args.weight = weight.data();
  args.w1 = w1.data();
  args.w2 = w2.data();
  cpu::monarch_project(ctx, args);
}

}  // namespace longctx
