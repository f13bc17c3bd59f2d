// rmsnorm on CUDA. Forward: one block per row, f32 sum of squares by CUB BlockReduce.
// Backward: one block per row for dx; dweight from per-chunk partial sums (f32, fixed chunks of
// rows) reduced by a second kernel, so it is deterministic without atomics.
// With a residual (add_rmsnorm_fwd) each thread writes its elements of h = x + residual and
// normalises the stored (rounded) values, as add then rmsnorm would; the backward adds the
// residual gradient dh as it writes dx. In place is safe: out may be x, h may be x or residual,
// dx may be dout or dh, for every element is read and then written by the same thread, after the
// row's reduction (and its barrier) has read them all.
#include <cfloat>

#include <cub/block/block_reduce.cuh>

#include "kernels/common/context_state.cuh"
#include "kernels/common/cuda_check.cuh"
#include "kernels/common/types.cuh"
#include "src/ops/rmsnorm.h"

namespace longctx::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kRowsPerChunk = 32;  // rows whose dweight contributions one block sums

using Reduce = cub::BlockReduce<float, kThreads>;

// The row's value of thread 0 for every thread of the block. `shared` is free on entry (the block
// has passed a barrier since its last read) and again on return.
__device__ __forceinline__ float broadcast_from_thread0(float value, float& shared) {
  if (threadIdx.x == 0) shared = value;
  __syncthreads();
  value = shared;
  __syncthreads();
  return value;
}

struct Max {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

// 1 / sqrt(mean(x²) + eps) for a row whose sum of squares (every thread's sum_sq) overflowed or
// may have lost bits as subnormals: the row summed again scaled by the power of two that takes
// its largest |x| into [0.5, 1), as the CPU's rescaled_inverse_rms (src/cpu/rmsnorm.cpp) does.
template <class T>
__device__ float rescaled_inverse_rms(const T* xr, int64_t C, float sum_sq, float eps,
                                      typename Reduce::TempStorage& temp, float& shared) {
  float largest = 0.f;
  for (int64_t c = threadIdx.x; c < C; c += kThreads)
    largest = fmaxf(largest, fabsf(load_f32(xr[c])));
  largest = broadcast_from_thread0(Reduce(temp).Reduce(largest, Max()), shared);
  int e = 0;
  frexpf(largest, &e);  // NaN is skipped by fmaxf; it gives NaN either way
  const float scaled_eps = ldexpf(eps, -2 * e);
  // An inf in x, or a row so small that eps scaled with it overflows (mean(x²) is negligible
  // against eps there): as the usual rows.
  if (!isfinite(largest) || !isfinite(scaled_eps)) return rsqrtf(sum_sq / float(C) + eps);
  float scaled = 0.f;
  for (int64_t c = threadIdx.x; c < C; c += kThreads) {
    const float v = ldexpf(load_f32(xr[c]), -e);
    scaled += v * v;
  }
  scaled = broadcast_from_thread0(Reduce(temp).Sum(scaled), shared);
  return ldexpf(rsqrtf(scaled / float(C) + scaled_eps), -e);
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    rmsnorm_fwd_kernel(T* out, float* rstd, T* h, const T* x, const T* residual, const T* weight,
                       int64_t C, float eps) {
  __shared__ typename Reduce::TempStorage temp;
  __shared__ float shared;
  const int64_t row = blockIdx.x;
  const T* xr = x + row * C;
  if (residual) {  // h = x + residual, then normalise h
    T* hr = h + row * C;
    const T* rr = residual + row * C;
    for (int64_t c = threadIdx.x; c < C; c += kThreads)
      hr[c] = store_as<T>(load_f32(xr[c]) + load_f32(rr[c]));
    xr = hr;
  }
  float sum_sq = 0.f;
  for (int64_t c = threadIdx.x; c < C; c += kThreads) {
    const float v = load_f32(xr[c]);
    sum_sq += v * v;
  }
  sum_sq = broadcast_from_thread0(Reduce(temp).Sum(sum_sq), shared);
  // The same test as the CPU's rmsnorm_fwd: a sum of squares that overflowed, or below C times
  // the smallest normal (the same for the whole block).
  const float inv = isfinite(sum_sq) && sum_sq >= float(C) * FLT_MIN
                        ? rsqrtf(sum_sq / float(C) + eps)
                        : rescaled_inverse_rms(xr, C, sum_sq, eps, temp, shared);
  if (threadIdx.x == 0) rstd[row] = inv;
  T* yr = out + row * C;
  for (int64_t c = threadIdx.x; c < C; c += kThreads)
    yr[c] = store_as<T>(load_f32(xr[c]) * inv * load_f32(weight[c]));
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    rmsnorm_bwd_kernel(T* dx, float* dweight_partial, const T* dout, const T* dh, const T* x,
                       const T* weight, const float* rstd, int64_t rows, int64_t C) {
  __shared__ typename Reduce::TempStorage temp;
  __shared__ float shared;
  const int64_t chunk = blockIdx.x;
  const int64_t end = min(rows, (chunk + 1) * kRowsPerChunk);
  float* dw = dweight_partial + chunk * C;
  for (int64_t c = threadIdx.x; c < C; c += kThreads) dw[c] = 0.f;
  for (int64_t row = chunk * kRowsPerChunk; row < end; ++row) {
    const T* xr = x + row * C;
    const T* dyr = dout + row * C;
    const float inv = rstd[row];
    // In x̂ = x * inv, of order 1, as the CPU's backward (src/cpu/rmsnorm.cpp): x * inv³ leaves
    // f32's range where inv does not. (The CPU forms Σ dy w x̂ as Σ dy w x times inv, one multiply
    // less in its loop, and sums in x̂ only where that overflowed; here the loop is memory-bound.)
    float dot = 0.f;
    for (int64_t c = threadIdx.x; c < C; c += kThreads)
      dot += load_f32(dyr[c]) * load_f32(weight[c]) * (load_f32(xr[c]) * inv);
    const float coef = broadcast_from_thread0(Reduce(temp).Sum(dot), shared) / float(C);
    T* dxr = dx + row * C;
    const T* dhr = dh ? dh + row * C : nullptr;
    for (int64_t c = threadIdx.x; c < C; c += kThreads) {
      const float x_hat = load_f32(xr[c]) * inv, dy = load_f32(dyr[c]);
      dw[c] += dy * x_hat;
      const float dnorm = inv * (dy * load_f32(weight[c]) - x_hat * coef);
      dxr[c] = store_as<T>(dhr ? load_f32(dhr[c]) + dnorm : dnorm);
    }
  }
}

template <class T>
__global__ void __launch_bounds__(256)
    sum_chunks_kernel(T* dweight, const float* partial, int64_t chunks, int64_t C) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (c >= C) return;
  float sum = 0.f;
  for (int64_t k = 0; k < chunks; ++k) sum += partial[k * C + c];
  dweight[c] = store_as<T>(sum);
}

}  // namespace

void rmsnorm_fwd(const Context& ctx, const RMSNormArgs& args) {
  if (args.rows == 0) return;
  cudaStream_t stream = state_of(ctx).stream;
  dispatch_cuda_float("rmsnorm_fwd", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    rmsnorm_fwd_kernel<T><<<unsigned(args.rows), kThreads, 0, stream>>>(
        static_cast<T*>(args.out), static_cast<float*>(args.rstd), static_cast<T*>(args.h),
        static_cast<const T*>(args.x), static_cast<const T*>(args.residual),
        static_cast<const T*>(args.weight), args.C, float(args.eps));
  });
  LONGCTX_CHECK_LAUNCH();
}

void rmsnorm_bwd(const Context& ctx, const RMSNormArgs& args) {
  const int64_t C = args.C, rows = args.rows;
  cudaStream_t stream = state_of(ctx).stream;
  const int64_t chunks = (rows + kRowsPerChunk - 1) / kRowsPerChunk;
  Tensor partial = Tensor::zeros({std::max<int64_t>(chunks, 1), C}, DType::f32, ctx.device(), &ctx);
  dispatch_cuda_float("rmsnorm_bwd", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (chunks > 0) {
      rmsnorm_bwd_kernel<T><<<unsigned(chunks), kThreads, 0, stream>>>(
          static_cast<T*>(args.dx), partial.data_as<float>(), static_cast<const T*>(args.dout),
          static_cast<const T*>(args.dh), static_cast<const T*>(args.x),
          static_cast<const T*>(args.weight), static_cast<const float*>(args.rstd), rows, C);
      LONGCTX_CHECK_LAUNCH();
    }
    if (C > 0) {
      sum_chunks_kernel<T><<<unsigned((C + 255) / 256), 256, 0, stream>>>(
          static_cast<T*>(args.dweight), partial.data_as<float>(), chunks, C);
      LONGCTX_CHECK_LAUNCH();
    }
  });
}

}  // namespace longctx::cuda
