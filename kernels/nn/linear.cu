// linear on CUDA: the GEMMs through cuBLASLt (kernels/common/gemm.cuh), bias in its epilogue;
// dbias by a two-pass column reduction (per-chunk partial sums of rows, then the chunks summed in
// order), so it is deterministic without atomics.
#include <algorithm>

#include "kernels/common/context_state.cuh"
#include "kernels/common/cuda_check.cuh"
#include "kernels/common/gemm.cuh"
#include "kernels/common/types.cuh"
#include "src/ops/linear.h"

namespace longctx::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxChunks = 1024;  // partial sums per column: at most 1024 * Cout floats

// partial (chunks, Cout): the column sums of dout over each chunk of rows_per_chunk rows.
// One thread per column: consecutive threads read consecutive columns of a row (coalesced).
template <class T>
__global__ void __launch_bounds__(kThreads)
    column_partial_kernel(float* partial, const T* dout, int64_t M, int64_t Cout,
                          int64_t rows_per_chunk) {
  const int64_t c = blockIdx.x * int64_t(kThreads) + threadIdx.x;
  const int64_t chunk = blockIdx.y;
  if (c >= Cout) return;
  const int64_t end = min(M, (chunk + 1) * rows_per_chunk);
  float sum = 0.f;
  for (int64_t row = chunk * rows_per_chunk; row < end; ++row)
    sum += load_f32(dout[row * Cout + c]);
  partial[chunk * Cout + c] = sum;
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    column_sum_kernel(T* dbias, const float* partial, int64_t chunks, int64_t Cout) {
  const int64_t c = blockIdx.x * int64_t(kThreads) + threadIdx.x;
  if (c >= Cout) return;
  float sum = 0.f;
  for (int64_t k = 0; k < chunks; ++k) sum += partial[k * Cout + c];
  dbias[c] = store_as<T>(sum);
}

}  // namespace

void linear_fwd(const Context& ctx, const LinearArgs& args) {
  const int64_t Cin = args.Cin, Cout = args.Cout, M = args.M;
  if (M == 0) return;
  // out (M, Cout) = x (M, Cin) @ weight^T (Cin, Cout) + bias
  gemm(ctx, args.dtype, /*trans_a=*/false, /*trans_b=*/true, M, Cout, Cin, args.x, Cin, args.weight,
       Cin, args.out, Cout, args.bias);
}

void linear_bwd(const Context& ctx, const LinearArgs& args) {
  const int64_t Cin = args.Cin, Cout = args.Cout, M = args.M;
  const size_t elem = dtype_size(args.dtype);
  cudaStream_t stream = state_of(ctx).stream;
  if (M == 0) {  // no rows: the weight and bias gradients are zero
    if (args.dweight)
      LONGCTX_CUDA_CHECK(cudaMemsetAsync(args.dweight, 0, size_t(Cout * Cin) * elem, stream));
    if (args.dbias) LONGCTX_CUDA_CHECK(cudaMemsetAsync(args.dbias, 0, size_t(Cout) * elem, stream));
    return;
  }
  if (args.dx) {
    // dx (M, Cin) = dout (M, Cout) @ weight (Cout, Cin)
    gemm(ctx, args.dtype, /*trans_a=*/false, /*trans_b=*/false, M, Cin, Cout, args.dout, Cout,
         args.weight, Cin, args.dx, Cin);
  }
  if (args.dweight) {
    // dweight (Cout, Cin) = dout^T (Cout, M) @ x (M, Cin)
    gemm(ctx, args.dtype, /*trans_a=*/true, /*trans_b=*/false, Cout, Cin, M, args.dout, Cout,
         args.x, Cin, args.dweight, Cin);
  }
  if (args.dbias) {
    const int64_t rows_per_chunk = std::max<int64_t>(64, (M + kMaxChunks - 1) / kMaxChunks);
    const int64_t chunks = (M + rows_per_chunk - 1) / rows_per_chunk;  // <= kMaxChunks
    Tensor partial = Tensor::empty({chunks, Cout}, DType::f32, ctx.device(), &ctx);
    const unsigned column_blocks = unsigned((Cout + kThreads - 1) / kThreads);
    dispatch_cuda_float("linear_bwd", args.dtype, [&](auto tag) {
      using T = typename decltype(tag)::type;
      column_partial_kernel<T><<<dim3(column_blocks, unsigned(chunks)), kThreads, 0, stream>>>(
          partial.data_as<float>(), static_cast<const T*>(args.dout), M, Cout, rows_per_chunk);
      LONGCTX_CHECK_LAUNCH();
      column_sum_kernel<T><<<column_blocks, kThreads, 0, stream>>>(
          static_cast<T*>(args.dbias), partial.data_as<float>(), chunks, Cout);
      LONGCTX_CHECK_LAUNCH();
    });
  }
}

}  // namespace longctx::cuda
