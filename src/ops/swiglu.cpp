// swiglu: validation in front of both backends, then dispatch (see include/longctx/ops/swiglu.h).
#include "longctx/ops/swiglu.h"

#include "src/ops/backend.h"

namespace longctx {

namespace cpu {
void swiglu_fwd(const Context&, const Tensor& out, const Tensor& gate, const Tensor& up);
void swiglu_bwd(const Context&, const Tensor& dgate, const Tensor& dup, const Tensor& dout,
                const Tensor& gate, const Tensor& up);
}  // namespace cpu
namespace cuda {
void swiglu_fwd(const Context&, const Tensor& out, const Tensor& gate, const Tensor& up);
void swiglu_bwd(const Context&, const Tensor& dgate, const Tensor& dup, const Tensor& dout,
                const Tensor& gate, const Tensor& up);
}  // namespace cuda

namespace {

struct Named {
  const char* name;
  const Tensor& t;
};

// Every tensor: gate's shape and dtype, contiguous, on the context's device. Each output may be
// exactly an input (elementwise: element i is read before it is written) but must not otherwise
// overlap an input, nor overlap another output at all.
void check_elementwise(const Context& ctx, const char* op, const Tensor& gate,
                       std::initializer_list<Named> outputs, std::initializer_list<Named> inputs) {
  check_backend(ctx, op, "gate", gate);
  for (const Named& n : inputs) {
    check_arg(op, n.name, n.t).shape(gate.shape()).dtype(gate.dtype()).device(ctx.device());
    check_arg(op, n.name, n.t).contiguous();
  }
  for (const Named& o : outputs) {
    check_arg(op, o.name, o.t).shape(gate.shape()).dtype(gate.dtype()).device(ctx.device());
    check_arg(op, o.name, o.t).contiguous();
    for (const Named& i : inputs)
      if (o.t.data() != i.t.data()) check_arg(op, o.name, o.t).no_overlap(i.name, i.t);
    for (const Named& other : outputs)
      if (&other != &o) check_arg(op, o.name, o.t).no_overlap(other.name, other.t);
  }
}

}  // namespace

void swiglu_fwd(const Context& ctx, const Tensor& out, const Tensor& gate, const Tensor& up) {
  check_elementwise(ctx, "swiglu_fwd", gate, {{"out", out}}, {{"gate", gate}, {"up", up}});
  LONGCTX_DISPATCH(ctx, swiglu_fwd, ctx, out, gate, up);
}

void swiglu_bwd(const Context& ctx, const Tensor& dgate, const Tensor& dup, const Tensor& dout,
                const Tensor& gate, const Tensor& up) {
  check_elementwise(ctx, "swiglu_bwd", gate, {{"dgate", dgate}, {"dup", dup}},
                    {{"dout", dout}, {"gate", gate}, {"up", up}});
  LONGCTX_DISPATCH(ctx, swiglu_bwd, ctx, dgate, dup, dout, gate, up);
}

}  // namespace longctx
