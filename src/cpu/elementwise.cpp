// The elementwise ops on the CPU (add, neg_exp, sigmoid, sigmoid_gate, swiglu; see
// src/ops/elementwise.h): one loop over fixed blocks of 16384 elements, one block per work item, so
// each thread streams long contiguous runs.
#include <algorithm>
#include <cmath>
#include <vector>

#include "src/core/activations.h"
#include "src/core/dispatch.h"
#include "src/cpu/exp_array.h"
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

// Calls f(begin, end) for the same blocks, with a per-thread scratch of a block's length.
template <class T, class F>
void for_each_block(const Context& ctx, int64_t n, F&& f) {
  constexpr int64_t kBlock = 16384;
  parallel_for(ctx, (n + kBlock - 1) / kBlock, [&](int64_t block) {
    thread_local std::vector<T> scratch;
    scratch.resize(size_t(kBlock));
    f(block * kBlock, std::min(n, (block + 1) * kBlock), scratch.data());
  });
}

// sigmoid(x[i]) for i in [begin, end) into s[i - begin]: the exps as one vectorized exp_array
// (the same values as std::exp but in rare ties, see exp_array.h), not one libm call each.
template <class T>
void sigmoid_block(T* s, const T* x, int64_t begin, int64_t end) {
  const int64_t k = end - begin;
  for (int64_t i = 0; i < k; ++i) s[i] = -x[begin + i];
  exp_array(s, s, k);
  for (int64_t i = 0; i < k; ++i) s[i] = T(1) / (T(1) + s[i]);
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
      // SwiGLU: silu(g) = g sigmoid(g), silu'(g) = sigmoid(g) (1 + g (1 - sigmoid(g))) as in
      // src/core/activations.h, with the block's sigmoids computed first (sigmoid_block) and
      // once per element (the backward called exp twice). llama preset, T = 256, 2 threads,
      // load 9-12, 2 runs each alternating: swiglu_bwd 40.7-40.8 -> 24.4-24.9 ms CPU per
      // training step, swiglu_fwd 19.8-20.4 -> 14.2-14.3 ms.
      case ElementwiseOp::swiglu_fwd:
        for_each_block<T>(ctx, args.n, [&](int64_t begin, int64_t end, T* s) {
          sigmoid_block(s, in0, begin, end);
          for (int64_t i = begin; i < end; ++i) out0[i] = (in0[i] * s[i - begin]) * in1[i];
        });
        break;
      case ElementwiseOp::swiglu_bwd:
        for_each_block<T>(ctx, args.n, [&](int64_t begin, int64_t end, T* s) {
          sigmoid_block(s, in1, begin, end);
          for (int64_t i = begin; i < end; ++i) {
            // all read before either write (in place)
            const T dy = in0[i], g = in1[i], u = in2[i], sg = s[i - begin];
            out0[i] = dy * u * (sg * (T(1) + g * (T(1) - sg)));
            out1[i] = dy * (g * sg);
          }
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
