// The elementwise ops — add, neg_exp, sigmoid, sigmoid_gate, swiglu: validation in front of both
// backends, then dispatch (see src/ops/elementwise.h).
#include "src/ops/elementwise.h"

#include <initializer_list>

#include "longctx/ops/add.h"
#include "longctx/ops/elementwise.h"
#include "longctx/ops/swiglu.h"
#include "src/ops/backend.h"

namespace longctx {

namespace {

struct Named {
  const char* name;
  const Tensor& t;
};

// Every tensor has the first input's shape and dtype, is contiguous and on the context's device;
// an output may be exactly an input but must not otherwise overlap one, nor overlap another
// output. Then runs `op` over them.
void run(const Context& ctx, ElementwiseOp op, const char* op_name,
         std::initializer_list<Named> outputs, std::initializer_list<Named> inputs) {
  const Tensor& first = inputs.begin()->t;
  check_backend(ctx, op_name, inputs.begin()->name, first);
  for (const auto& list : {inputs, outputs})
    for (const Named& n : list) {
      check_arg(op_name, n.name, n.t).shape(first.shape()).dtype(first.dtype());
      check_arg(op_name, n.name, n.t).device(ctx.device()).contiguous();
    }
  ElementwiseArgs args;
  args.op = op;
  args.dtype = first.dtype();
  args.n = first.numel();
  int i = 0;
  for (const Named& in : inputs) args.in[i++] = in.t.data();
  i = 0;
  for (const Named& o : outputs) {
    for (const Named& in : inputs)
      if (o.t.data() != in.t.data()) check_arg(op_name, o.name, o.t).no_overlap(in.name, in.t);
    for (const Named& other : outputs)
      if (&other != &o) check_arg(op_name, o.name, o.t).no_overlap(other.name, other.t);
    args.out[i++] = o.t.data();
  }
  LONGCTX_DISPATCH_AS(ctx, op_name, elementwise, ctx, args);
}

}  // namespace

std::string add_supports(Device device, DType dtype) {
  return dtype_supports("add", device, dtype);
}
std::string neg_exp_supports(Device device, DType dtype) {
  return dtype_supports("neg_exp", device, dtype);
}
std::string sigmoid_supports(Device device, DType dtype) {
  return dtype_supports("sigmoid", device, dtype);
}
std::string swiglu_supports(Device device, DType dtype) {
  return dtype_supports("swiglu", device, dtype);
}

void add_fwd(const Context& ctx, const Tensor& out, const Tensor& a, const Tensor& b) {
  run(ctx, ElementwiseOp::add, "add_fwd", {{"out", out}}, {{"a", a}, {"b", b}});
}

void neg_exp_fwd(const Context& ctx, const Tensor& out, const Tensor& x) {
  run(ctx, ElementwiseOp::neg_exp_fwd, "neg_exp_fwd", {{"out", out}}, {{"x", x}});
}

void neg_exp_bwd(const Context& ctx, const Tensor& dx, const Tensor& dout, const Tensor& out) {
  run(ctx, ElementwiseOp::neg_exp_bwd, "neg_exp_bwd", {{"dx", dx}}, {{"dout", dout}, {"out", out}});
}

void sigmoid_fwd(const Context& ctx, const Tensor& out, const Tensor& x) {
  run(ctx, ElementwiseOp::sigmoid_fwd, "sigmoid_fwd", {{"out", out}}, {{"x", x}});
}

void sigmoid_bwd(const Context& ctx, const Tensor& dx, const Tensor& dout, const Tensor& out) {
  run(ctx, ElementwiseOp::sigmoid_bwd, "sigmoid_bwd", {{"dx", dx}}, {{"dout", dout}, {"out", out}});
}

void sigmoid_gate_fwd(const Context& ctx, const Tensor& out, const Tensor& gate, const Tensor& up) {
  run(ctx, ElementwiseOp::sigmoid_gate_fwd, "sigmoid_gate_fwd", {{"out", out}},
      {{"gate", gate}, {"up", up}});
}

void sigmoid_gate_bwd(const Context& ctx, const Tensor& dgate, const Tensor& dup,
                      const Tensor& dout, const Tensor& gate, const Tensor& up) {
  run(ctx, ElementwiseOp::sigmoid_gate_bwd, "sigmoid_gate_bwd", {{"dgate", dgate}, {"dup", dup}},
      {{"dout", dout}, {"gate", gate}, {"up", up}});
}

void swiglu_fwd(const Context& ctx, const Tensor& out, const Tensor& gate, const Tensor& up) {
  run(ctx, ElementwiseOp::swiglu_fwd, "swiglu_fwd", {{"out", out}}, {{"gate", gate}, {"up", up}});
}

void swiglu_bwd(const Context& ctx, const Tensor& dgate, const Tensor& dup, const Tensor& dout,
                const Tensor& gate, const Tensor& up) {
  run(ctx, ElementwiseOp::swiglu_bwd, "swiglu_bwd", {{"dgate", dgate}, {"dup", dup}},
      {{"dout", dout}, {"gate", gate}, {"up", up}});
}

}  // namespace longctx
