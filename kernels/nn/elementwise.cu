// The elementwise ops on CUDA (add, neg_exp, swiglu; see src/ops/elementwise.h): one grid-stride
// kernel over the elements, f32 math, with the op as a functor. expf, not the approximate
// __expf: the ops are bandwidth-bound, so the accurate exp costs nothing measurable.
#include <algorithm>

#include "kernels/common/context_state.cuh"
#include "kernels/common/cuda_check.cuh"
#include "kernels/common/types.cuh"
#include "src/core/activations.h"
#include "src/ops/elementwise.h"

namespace longctx::cuda {

namespace {

constexpr int kThreads = 256;

struct Add {
  __device__ void operator()(float (&y)[2], float a, float b, float) const { y[0] = a + b; }
};
struct NegExp {
  __device__ void operator()(float (&y)[2], float x, float, float) const { y[0] = -expf(x); }
};
struct Mul {
  __device__ void operator()(float (&y)[2], float a, float b, float) const { y[0] = a * b; }
};
struct SwiGLU {
  __device__ void operator()(float (&y)[2], float g, float u, float) const { y[0] = silu(g) * u; }
};
struct SwiGLUBwd {
  __device__ void operator()(float (&y)[2], float dy, float g, float u) const {
    y[0] = dy * u * silu_grad(g);
    y[1] = dy * silu(g);
  }
};

// No __restrict__: an output may be exactly an input (in place); each element's inputs are read
// before its outputs are written. Absent inputs (nullptr) read as 0, absent outputs are skipped.
template <class T, class Op>
__global__ void __launch_bounds__(kThreads)
    elementwise_kernel(Op op, T* out0, T* out1, const T* in0, const T* in1, const T* in2,
                       int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    float y[2];
    op(y, load_f32(in0[i]), in1 ? load_f32(in1[i]) : 0.f, in2 ? load_f32(in2[i]) : 0.f);
    out0[i] = store_as<T>(y[0]);
    if (out1) out1[i] = store_as<T>(y[1]);
  }
}

template <class T, class Op>
void launch(const Context& ctx, const ElementwiseArgs& args, Op op) {
  // Grid-stride: at most 8 blocks' worth of 65535 launches, enough to fill any GPU.
  const int64_t blocks = std::min<int64_t>((args.n + kThreads - 1) / kThreads, 65535 * 8);
  elementwise_kernel<T><<<unsigned(blocks), kThreads, 0, state_of(ctx).stream>>>(
      op, static_cast<T*>(args.out[0]), static_cast<T*>(args.out[1]),
      static_cast<const T*>(args.in[0]), static_cast<const T*>(args.in[1]),
      static_cast<const T*>(args.in[2]), args.n);
  LONGCTX_CHECK_LAUNCH();
}

}  // namespace

void elementwise(const Context& ctx, const ElementwiseArgs& args) {
  if (args.n == 0) return;
  dispatch_cuda_float("elementwise", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    switch (args.op) {
      case ElementwiseOp::add:
        return launch<T>(ctx, args, Add{});
      case ElementwiseOp::neg_exp_fwd:
        return launch<T>(ctx, args, NegExp{});
      case ElementwiseOp::neg_exp_bwd:
        return launch<T>(ctx, args, Mul{});
      case ElementwiseOp::swiglu_fwd:
        return launch<T>(ctx, args, SwiGLU{});
      case ElementwiseOp::swiglu_bwd:
        return launch<T>(ctx, args, SwiGLUBwd{});
    }
  });
}

}  // namespace longctx::cuda
