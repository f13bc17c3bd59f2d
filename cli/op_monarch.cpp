// `longctx op monarch_linear`: inputs x (..., n_in), w1 (k, q, p), w2 (l, s, r), bias (l·s)
// optional. Forward writes out (..., l·s) and mid (..., l·r), the permuted product with the
// first factor; backward (with dout) writes dx, dw1, dw2 (and dbias with a bias).
#include "cli/ops.h"

namespace longctx::cli {

namespace {

// Output shapes are derived defensively: with malformed inputs (wrong rank) they fall back to
// something allocatable, and the op's own validation then reports the problem by name.
Shape with_last(const Tensor& x, int64_t last) {
  Shape s = x.shape();
  if (!s.empty()) s.back() = last;
  return s;
}
int64_t product(const Tensor& w, int d0, int d1) {
  return w.dim() == 3 ? w.size(d0) * w.size(d1) : 0;
}

void monarch_linear_forward(OpCall& call) {
  const Tensor& x = call.input("x");
  const Tensor& w1 = call.input("w1");
  const Tensor& w2 = call.input("w2");
  const Tensor out = call.output("out", with_last(x, product(w2, 0, 1)), x.dtype());
  const Tensor mid = call.output("mid", with_last(x, product(w2, 0, 2)), x.dtype());
  monarch_linear_fwd(call.ctx, out, x, w1, w2, call.optional_input("bias"), mid);
}

void monarch_linear_backward(OpCall& call) {
  const Tensor& x = call.input("x");
  const Tensor& w1 = call.input("w1");
  const Tensor& w2 = call.input("w2");
  const Tensor bias = call.optional_input("bias");
  const Tensor dbias = bias.defined() ? call.output("dbias", bias.shape(), bias.dtype()) : Tensor();
  monarch_linear_bwd(
      call.ctx, call.output("dx", x.shape(), x.dtype()), call.output("dw1", w1.shape(), w1.dtype()),
      call.output("dw2", w2.shape(), w2.dtype()), dbias, call.input("dout"), x, w1, w2);
}

}  // namespace

std::vector<OpSpec> monarch_ops() {
  return {
      {"monarch_linear",
       "out = x @ Mᵀ + bias, M the Monarch matrix of the block-diagonal factors w1, w2",
       {"x", "w1", "w2", "?bias"},
       {},
       {"dout"},
       monarch_linear_forward,
       monarch_linear_backward},
  };
}

}  // namespace longctx::cli
