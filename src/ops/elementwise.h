// The elementwise ops' params — add, neg_exp, sigmoid, sigmoid_gate and swiglu, whose contracts
// are in include/longctx/ops/add.h, elementwise.h and swiglu.h — validated once by
// src/ops/elementwise.cpp, then the one argument (besides the context) of both backends.
// Every tensor holds n contiguous elements of one dtype. An output may be exactly one of the
// inputs (each element's inputs are read before its outputs are written), never a partial overlap.
#pragma once

#include "longctx/context.h"

namespace longctx {

enum class ElementwiseOp {
  add,          // out[0] = in[0] + in[1]                              (a, b -> out)
  neg_exp_fwd,  // out[0] = -exp(in[0])                                (x -> out)
  neg_exp_bwd,  // out[0] = in[0] * in[1]                              (dout, out -> dx)
  swiglu_fwd,   // out[0] = silu(in[0]) * in[1]                        (gate, up -> out)
  swiglu_bwd,  // out[0] = d/dgate, out[1] = d/dup of the above       (dout, gate, up -> dgate, dup)
  sigmoid_fwd,       // out[0] = sigmoid(in[0])                       (x -> out)
  sigmoid_bwd,       // out[0] = in[0] * in[1] * (1 - in[1])          (dout, out -> dx)
  sigmoid_gate_fwd,  // out[0] = sigmoid(in[0]) * in[1]               (gate, up -> out)
  sigmoid_gate_bwd,  // out[0] = d/dgate, out[1] = d/dup of the above (dout, gate, up -> dgate, dup)
};

struct ElementwiseArgs {
  ElementwiseOp op = ElementwiseOp::add;
  DType dtype = DType::f32;  // of every tensor
  int64_t n = 0;             // elements of every tensor
  const void* in[3] = {};    // the inputs, in the order the op's line above names them
  void* out[2] = {};         // the outputs, likewise
};

namespace cpu {
void elementwise(const Context& ctx, const ElementwiseArgs& args);
}
namespace cuda {
void elementwise(const Context& ctx, const ElementwiseArgs& args);
}

}  // namespace longctx
