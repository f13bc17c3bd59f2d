// The elementwise ops on the CPU (add, neg_exp, sigmoid, sigmoid_gate, swiglu; see
// src/ops/elementwise.h): one loop over fixed blocks of 16384 elements, one block per work item, so
// each thread streams long contiguous runs; the sigmoids by sigmoid_array (src/cpu/exp_array.h).
#include <algorithm>
#include <cmath>

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

// Calls f(begin, end, s) for chunks of 128 elements of the same blocks, with s a scratch of a
// chunk's length: the ops that need a sigmoid compute a chunk's into s (sigmoid_array), then use
// s while it and the chunk's inputs are still in L1. One 16384-element scratch per block read each
// input twice from beyond L1: swiglu_fwd over 4096 x 384 f32, one thread, load ~15
// (bench/results/2026-12-05-cpu-elementwise/swiglu_probe.cpp), 3.3-3.6 ms CPU with 16384-element
// chunks, 2.2-2.4 with 512, 1.7-1.8 with 128.
template <class T, class F>
void for_each_chunk(const Context& ctx, int64_t n, F&& f) {
  constexpr int64_t kBlock = 16384, kChunk = 128;
  parallel_for(ctx, (n + kBlock - 1) / kBlock, [&](int64_t block) {
    T s[kChunk];
    const int64_t end = std::min(n, (block + 1) * kBlock);
    for (int64_t begin = block * kBlock; begin < end; begin += kChunk)
      f(begin, std::min(end, begin + kChunk), s);
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
      // SwiGLU: silu(g) = g sigmoid(g), silu'(g) = sigmoid(g) (1 + g (1 - sigmoid(g))) as in
      // src/core/activations.h, with a chunk's sigmoids computed first (sigmoid_array) and
      // once per element (the backward called exp twice). llama preset, T = 256, 2 threads,
      // load 9-12, 2 runs each alternating: swiglu_bwd 40.7-40.8 -> 24.4-24.9 ms CPU per
      // training step, swiglu_fwd 19.8-20.4 -> 14.2-14.3 ms. Then f32's sigmoid by an f32 exp
      // (8 lanes, not the f64 exp_array's 4) over chunks of 128: swiglu_fwd over 4096 x 384, one
      // thread, 3.36 -> 1.73 ms CPU (bench/results/2026-12-05-cpu-elementwise, swiglu_probe.cpp);
      // in the llama preset (a prefill + a training step, 2 threads, load 16-20, 2 rounds
      // alternating, T = 256/1024/4096) swiglu_fwd 27.5-29.0 -> 12.6-13.7 ms CPU, swiglu_bwd
      // 21.7-22.4 -> 10.9-11.5 ms; hybrid 41-43 -> 19-23 and 32-34 -> 16-17.
      case ElementwiseOp::swiglu_fwd:
        for_each_chunk<T>(ctx, args.n, [&](int64_t begin, int64_t end, T* s) {
          sigmoid_array(s, in0 + begin, end - begin);
          for (int64_t i = begin; i < end; ++i) out0[i] = (in0[i] * s[i - begin]) * in1[i];
        });
        break;
      case ElementwiseOp::swiglu_bwd:
        for_each_chunk<T>(ctx, args.n, [&](int64_t begin, int64_t end, T* s) {
          sigmoid_array(s, in1 + begin, end - begin);
          for (int64_t i = begin; i < end; ++i) {
            // all read before either write (in place)
            const T dy = in0[i], g = in1[i], u = in2[i], sg = s[i - begin];
            out0[i] = dy * u * (sg * (T(1) + g * (T(1) - sg)));
            out1[i] = dy * (g * sg);
          }
        });
        break;
      case ElementwiseOp::sigmoid_fwd:
        for_each_chunk<T>(ctx, args.n, [&](int64_t begin, int64_t end, T*) {
          sigmoid_array(out0 + begin, in0 + begin, end - begin);
        });
        break;
      case ElementwiseOp::sigmoid_bwd:
        for_each_index(ctx, args.n,
                       [&](int64_t i) { out0[i] = in0[i] * in1[i] * (T(1) - in1[i]); });
        break;
      case ElementwiseOp::sigmoid_gate_fwd:
        for_each_chunk<T>(ctx, args.n, [&](int64_t begin, int64_t end, T* s) {
          sigmoid_array(s, in0 + begin, end - begin);
          for (int64_t i = begin; i < end; ++i) out0[i] = s[i - begin] * in1[i];
        });
        break;
      case ElementwiseOp::sigmoid_gate_bwd:
        for_each_chunk<T>(ctx, args.n, [&](int64_t begin, int64_t end, T* s) {
          sigmoid_array(s, in1 + begin, end - begin);
          for (int64_t i = begin; i < end; ++i) {
            // all read before either write (in place)
            const T dy = in0[i], sg = s[i - begin], u = in2[i];
            out0[i] = dy * u * sg * (T(1) - sg);
            out1[i] = dy * sg;
          }
        });
        break;
    }
  });
}

}  // namespace longctx::cpu
