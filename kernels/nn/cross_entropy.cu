// cross_entropy on CUDA.
// Forward: one block per row; each thread keeps an online (max, sum of exp) over its strided
// share of the row, combined by a CUB BlockReduce; thread 0 writes lse and the row's loss. A
// second one-block kernel sums the row losses (f64, fixed assignment and reduction tree, so
// deterministic) and divides by the labelled count. A bad target adds nothing to the loss and is
// reported at the context's next synchronisation (index_check.cuh): the loss stays on the device
// and the call never waits for it.
// Backward: a one-block kernel computes scale = dloss / L, then one block per row writes
// scale * (softmax - onehot), or zeros for an unlabelled row.
#include <cub/block/block_reduce.cuh>

#include <algorithm>
#include <cmath>

#include "kernels/common/context_state.cuh"
#include "kernels/common/cuda_check.cuh"
#include "kernels/common/index_check.cuh"
#include "kernels/common/types.cuh"
#include "src/ops/cross_entropy.h"

namespace longctx::cuda {

namespace {

constexpr int kThreads = 256;      // per row
constexpr int kSumThreads = 1024;  // the one-block reductions over rows

// A running softmax denominator: sum = sum of exp(x - max) over the values seen.
struct MaxSum {
  float max, sum;
};

__device__ __forceinline__ MaxSum combine(MaxSum a, MaxSum b) {
  const float m = fmaxf(a.max, b.max);
  if (m == -INFINITY) return {m, 0.f};  // both empty (or all -inf): avoids exp(-inf - -inf)
  return {m, a.sum * expf(a.max - m) + b.sum * expf(b.max - m)};
}

struct CombineOp {
  __device__ MaxSum operator()(const MaxSum& a, const MaxSum& b) const { return combine(a, b); }
};

template <class T>
__global__ void __launch_bounds__(kThreads)
    cross_entropy_fwd_kernel(float* lse, float* row_loss, unsigned long long* bad_row,
                             const T* logits, const int32_t* targets, int64_t V,
                             int32_t ignore_index) {
  using Reduce = cub::BlockReduce<MaxSum, kThreads>;
  __shared__ typename Reduce::TempStorage temp;
  const int64_t row = blockIdx.x;
  const T* x = logits + row * V;
  MaxSum acc{-INFINITY, 0.f};
  for (int64_t v = threadIdx.x; v < V; v += kThreads) {
    const float xv = load_f32(x[v]);  // one exp per element: rescale only when the max moves
    if (xv > acc.max) {
      acc.sum = acc.sum * expf(acc.max - xv) + 1.f;
      acc.max = xv;
    } else if (xv != -INFINITY) {
      acc.sum += expf(xv - acc.max);
    }
  }
  acc = Reduce(temp).Reduce(acc, CombineOp{});
  if (threadIdx.x != 0) return;
  const float row_lse = acc.sum > 0.f ? acc.max + logf(acc.sum) : acc.max;
  lse[row] = row_lse;
  const int32_t t = targets[row];
  float l = 0.f;
  if (t != ignore_index) {
    if (t < 0 || t >= V)
      report_bad_index(bad_row, row, t);
    else
      l = row_lse - load_f32(x[t]);
  }
  row_loss[row] = l;
}

// loss = sum(row_loss) / L, L = the labelled count; 0 when L = 0. One block of kSumThreads.
__global__ void __launch_bounds__(kSumThreads)
    mean_loss_kernel(float* loss, const float* row_loss, const int32_t* targets, int64_t N,
                     int32_t ignore_index) {
  using ReduceD = cub::BlockReduce<double, kSumThreads>;
  using ReduceL = cub::BlockReduce<long long, kSumThreads>;
  __shared__ typename ReduceD::TempStorage temp_d;
  __shared__ typename ReduceL::TempStorage temp_l;
  double sum = 0.0;
  long long labelled = 0;
  for (int64_t n = threadIdx.x; n < N; n += kSumThreads) {
    sum += double(row_loss[n]);
    labelled += targets[n] != ignore_index;
  }
  sum = ReduceD(temp_d).Sum(sum);
  labelled = ReduceL(temp_l).Sum(labelled);
  if (threadIdx.x == 0) loss[0] = labelled > 0 ? float(sum / double(labelled)) : 0.f;
}

// scale = dloss / L (0 when L = 0). One block of kSumThreads.
__global__ void __launch_bounds__(kSumThreads)
    grad_scale_kernel(float* scale, const float* dloss, const int32_t* targets, int64_t N,
                      int32_t ignore_index) {
  using ReduceL = cub::BlockReduce<long long, kSumThreads>;
  __shared__ typename ReduceL::TempStorage temp;
  long long labelled = 0;
  for (int64_t n = threadIdx.x; n < N; n += kSumThreads) labelled += targets[n] != ignore_index;
  labelled = ReduceL(temp).Sum(labelled);
  if (threadIdx.x == 0) scale[0] = labelled > 0 ? dloss[0] / float(labelled) : 0.f;
}

// No __restrict__ on dlogits/logits: they may be the same buffer (each element read, then
// written, by one thread).
template <class T>
__global__ void __launch_bounds__(kThreads)
    cross_entropy_bwd_kernel(T* dlogits, const float* scale, const T* logits,
                             const int32_t* targets, const float* lse, int64_t V,
                             int32_t ignore_index) {
  const int64_t row = blockIdx.x;
  const int32_t t = targets[row];
  T* dx = dlogits + row * V;
  const T* x = logits + row * V;
  if (t == ignore_index) {
    for (int64_t v = threadIdx.x; v < V; v += kThreads) dx[v] = store_as<T>(0.f);
    return;
  }
  const float s = scale[0], row_lse = lse[row];
  for (int64_t v = threadIdx.x; v < V; v += kThreads) {
    const float p = expf(load_f32(x[v]) - row_lse);
    dx[v] = store_as<T>(s * (p - (v == t ? 1.f : 0.f)));
  }
}

}  // namespace

// lse, loss and dloss are f32: stat_dtype of the CUDA dtypes (f32, bf16, f16).
void cross_entropy_fwd(const Context& ctx, const CrossEntropyArgs& args) {
  const int64_t V = args.V, N = args.N;
  Context::CudaState& state = state_of(ctx);
  cudaStream_t stream = state.stream;
  Tensor row_loss = Tensor::empty({std::max<int64_t>(N, 1)}, DType::f32, ctx.device(), &ctx);
  if (N > 0) {
    dispatch_cuda_float("cross_entropy_fwd", args.dtype, [&](auto tag) {
      using T = typename decltype(tag)::type;
      cross_entropy_fwd_kernel<T><<<unsigned(N), kThreads, 0, stream>>>(
          static_cast<float*>(args.lse), row_loss.data_as<float>(), state.index_flag,
          static_cast<const T*>(args.logits), args.targets, V, args.ignore_index);
    });
    LONGCTX_CHECK_LAUNCH();
    commit_index_check(state, IndexCheck::cross_entropy_targets, V, args.ignore_index);
  }
  mean_loss_kernel<<<1, kSumThreads, 0, stream>>>(static_cast<float*>(args.loss),
                                                  row_loss.data_as<float>(), args.targets, N,
                                                  args.ignore_index);
  LONGCTX_CHECK_LAUNCH();
}

void cross_entropy_bwd(const Context& ctx, const CrossEntropyArgs& args) {
  const int64_t V = args.V, N = args.N;
  if (N == 0) return;
  cudaStream_t stream = state_of(ctx).stream;
  Tensor scale = Tensor::empty({1}, DType::f32, ctx.device(), &ctx);
  grad_scale_kernel<<<1, kSumThreads, 0, stream>>>(scale.data_as<float>(),
                                                   static_cast<const float*>(args.dloss),
                                                   args.targets, N, args.ignore_index);
  LONGCTX_CHECK_LAUNCH();
  dispatch_cuda_float("cross_entropy_bwd", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    cross_entropy_bwd_kernel<T><<<unsigned(N), kThreads, 0, stream>>>(
        static_cast<T*>(args.dlogits), scale.data_as<float>(), static_cast<const T*>(args.logits),
        args.targets, static_cast<const float*>(args.lse), V, args.ignore_index);
  });
  LONGCTX_CHECK_LAUNCH();
}

}  // namespace longctx::cuda
