// The elementwise ops on the CPU (add, neg_exp, sigmoid, sigmoid_gate, swiglu; see
// src/ops/elementwise.h): one loop over fixed blocks of 16384 elements, one block per work item, so
// each thread streams long contiguous runs.
#include <algorithm>
#include <cmath>

#include "src/core/activations.h"
#include "src/core/dispatch.h"
#include "src/cpu/parallel.h"
#include "src/ops/elementwise.h"

namespace longctx::cpu {

namespace {

// Calls f(i) for every element index, in blocks across threads.
template <class F>
void for_each_index(const Context& ctx, int64_t n, F&& f) {
  constexpr int64_t kBlock = 16384;
  parallel_for(ctx, (n + kBlock - 1) / kBlock, [&](int64_t block) {
    const int64_t end = std::min(n, (block + 1) * kBlock);
    for (int64_t i = block * kBlock; i < end; ++i) f(i);
  });
}

}  // namespace

void elementwise(const Context& ctx, const ElementwiseArgs& args) {
  dispatch_cpu_float("elementwise", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* in0 = static_cast<const T*>(args.in[0]);
    const T* in1 = static_cast<const T*>(args.in[1]);
    const T* in2 = static_cast<const T*>(args.in[2]);
    T* out0 = static_cast<T*>(args.out[0]);
    T* out1 = static_cast<T*>(args.out[1]);
    switch (args.op) {
      case ElementwiseOp::add:
        for_each_index(ctx, args.n, [&](int64_t i) { out0[i] = in0[i] + in1[i]; });
        break;
      case ElementwiseOp::neg_exp_fwd:
        for_each_index(ctx, args.n, [&](int64_t i) { out0[i] = -std::exp(in0[i]); });
        break;
      case ElementwiseOp::neg_exp_bwd:
        for_each_index(ctx, args.n, [&](int64_t i) { out0[i] = in0[i] * in1[i]; });
        break;
      case ElementwiseOp::swiglu_fwd:
        for_each_index(ctx, args.n, [&](int64_t i) { out0[i] = silu(in0[i]) * in1[i]; });
        break;
      case ElementwiseOp::swiglu_bwd:
        for_each_index(ctx, args.n, [&](int64_t i) {
          const T dy = in0[i], g = in1[i], u = in2[i];  // all read before either write (in place)
          out0[i] = dy * u * silu_grad(g);
          out1[i] = dy * silu(g);
        });
        break;
      case ElementwiseOp::sigmoid_fwd:
        for_each_index(ctx, args.n, [&](int64_t i) { out0[i] = sigmoid(in0[i]); });
        break;
      case ElementwiseOp::sigmoid_bwd:
        for_each_index(ctx, args.n,
                       [&](int64_t i) { out0[i] = in0[i] * in1[i] * (T(1) - in1[i]); });
        break;
      case ElementwiseOp::sigmoid_gate_fwd:
        for_each_index(ctx, args.n, [&](int64_t i) { out0[i] = sigmoid(in0[i]) * in1[i]; });
        break;
      case ElementwiseOp::sigmoid_gate_bwd:
        for_each_index(ctx, args.n, [&](int64_t i) {
          const T dy = in0[i], s = sigmoid(in1[i]), u = in2[i];  // read before writing (in place)
          out0[i] = dy * u * s * (T(1) - s);
          out1[i] = dy * s;
        });
        break;
    }
  });
}

}  // namespace longctx::cpu
