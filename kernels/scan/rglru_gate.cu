// rglru_gate on CUDA (see include/longctx/ops/rglru_gate.h). f32 math.
//
// Forward: elementwise over all B·T·D elements (grid-stride), so every SM has work at any shape;
// softplus(lambda[c]) is recomputed per element: ~7 transcendentals per element cost less SFU
// time (H200: ~4 T/s) than the element's 20 bytes of f32 traffic take at 4.3 TB/s.
// Backward: a 2-D grid of (32-channel tile, row chunk) blocks of 32 x 8 threads. A warp covers 32
// consecutive channels of one row (coalesced); its lane walks every 8th row of the chunk in order,
// writes dx, dgate_a, dgate_x, and sums its dlambda terms in a register. The block adds its 8
// partials per channel in a fixed order into the chunk's partial, and a second kernel adds the
// chunk partials in chunk order: deterministic, no atomics (row_chunks.h).
#include <algorithm>

#include "kernels/common/context_state.cuh"
#include "kernels/common/cuda_check.cuh"
#include "kernels/common/row_chunks.h"
#include "kernels/common/types.cuh"
#include "src/core/activations.h"
#include "src/ops/rglru_gate.h"

namespace longctx::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kChannels = 32;                    // per backward block: one warp-wide row segment
constexpr int kRowLanes = kThreads / kChannels;  // 8 rows at a time per backward block
// At most 256 chunks of at least 64 rows: D = 2560 channels give 80 x 256 blocks, D = 256 still
// 8 x 256, and the partials take 256 * D floats (2.5 MiB at D = 2560).
constexpr int64_t kMaxChunks = 256;
constexpr int64_t kMinChunkRows = 64;
static_assert(kMaxChunks <= 65535, "chunks are gridDim.y");

template <class T>
__global__ void __launch_bounds__(kThreads)
    rglru_gate_fwd_kernel(T* a, T* b, const T* x, const T* gate_a, const T* gate_x, const T* lambda,
                          int64_t n, int64_t D) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float sp = softplus(load_f32(lambda[i % D]));
    const float log_a = -8.f * sigmoid(load_f32(gate_a[i])) * sp;
    a[i] = store_as<T>(expf(log_a));
    b[i] = store_as<T>(sqrtf(-expm1f(2.f * log_a)) * sigmoid(load_f32(gate_x[i])) * load_f32(x[i]));
  }
}

// Block (channel tile, chunk): the elementwise gradients of its rows and channels, and
// partial[chunk][c] = the chunk's dlambda terms for channel c, summed in a fixed order.
template <class T>
__global__ void __launch_bounds__(kThreads)
    rglru_gate_bwd_kernel(T* dx, T* dgate_a, T* dgate_x, float* partial, const T* da, const T* db,
                          const T* x, const T* gate_a, const T* gate_x, const T* lambda,
                          int64_t rows, int64_t D, int64_t rows_per_chunk) {
  __shared__ float sums[kRowLanes][kChannels];
  const int lane = threadIdx.x % kChannels, row_lane = threadIdx.x / kChannels;
  const int64_t c = int64_t(blockIdx.x) * kChannels + lane;
  const int64_t r0 = int64_t(blockIdx.y) * rows_per_chunk;
  const int64_t r1 = std::min(rows, r0 + rows_per_chunk);
  float dl = 0.f;
  if (c < D) {
    const float lam = load_f32(lambda[c]), sp = softplus(lam), sl = sigmoid(lam);
    for (int64_t r = r0 + row_lane; r < r1; r += kRowLanes) {
      const int64_t i = r * D + c;
      const float ra = sigmoid(load_f32(gate_a[i])), ix = sigmoid(load_f32(gate_x[i]));
      const float xv = load_f32(x[i]), dbv = load_f32(db[i]);
      const float log_a = -8.f * ra * sp, av = expf(log_a), mult = sqrtf(-expm1f(2.f * log_a));
      // d mult / d log a = -a^2 / mult (unbounded as a -> 1, where mult -> 0: taken as 0 there).
      const float dlog_a =
          load_f32(da[i]) * av + (mult > 0.f ? dbv * ix * xv * (-av * av / mult) : 0.f);
      dgate_a[i] = store_as<T>(dlog_a * -8.f * sp * ra * (1.f - ra));
      dl += dlog_a * -8.f * ra * sl;
      dgate_x[i] = store_as<T>(dbv * mult * xv * ix * (1.f - ix));
      dx[i] = store_as<T>(dbv * mult * ix);
    }
  }
  sums[row_lane][lane] = dl;
  __syncthreads();
  if (row_lane == 0 && c < D) {
    float s = 0.f;
#pragma unroll
    for (int k = 0; k < kRowLanes; ++k) s += sums[k][lane];
    partial[int64_t(blockIdx.y) * D + c] = s;
  }
}

// dlambda[c] = sum of partial[0 .. chunks)[c], in chunk order.
template <class T>
__global__ void __launch_bounds__(kThreads)
    rglru_gate_sum_chunks_kernel(T* dlambda, const float* partial, int64_t chunks, int64_t D) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (c >= D) return;
  float s = 0.f;
  for (int64_t k = 0; k < chunks; ++k) s += partial[k * D + c];
  dlambda[c] = store_as<T>(s);
}

unsigned blocks_for(int64_t n) {
  return unsigned(std::min<int64_t>((n + kThreads - 1) / kThreads, int64_t(1) << 20));
}

}  // namespace

void rglru_gate_fwd(const Context& ctx, const RGLRUGateArgs& args) {
  const int64_t n = args.rows * args.D;
  if (n == 0) return;
  dispatch_cuda_float("rglru_gate_fwd", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    rglru_gate_fwd_kernel<T><<<blocks_for(n), kThreads, 0, state_of(ctx).stream>>>(
        static_cast<T*>(args.a), static_cast<T*>(args.b), static_cast<const T*>(args.x),
        static_cast<const T*>(args.gate_a), static_cast<const T*>(args.gate_x),
        static_cast<const T*>(args.lambda), n, args.D);
  });
  LONGCTX_CHECK_LAUNCH();
}

void rglru_gate_bwd(const Context& ctx, const RGLRUGateArgs& args) {
  const int64_t D = args.D, rows = args.rows;
  if (D == 0) return;
  cudaStream_t stream = state_of(ctx).stream;
  const RowChunks split = row_chunks(rows, kMaxChunks, kMinChunkRows);
  // No rows: no chunk, and the sum below writes dlambda = 0.
  Tensor partial =
      Tensor::empty({std::max<int64_t>(split.chunks, 1), D}, DType::f32, ctx.device(), &ctx);
  dispatch_cuda_float("rglru_gate_bwd", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (split.chunks > 0) {
      const dim3 grid(unsigned((D + kChannels - 1) / kChannels), unsigned(split.chunks));
      rglru_gate_bwd_kernel<T><<<grid, kThreads, 0, stream>>>(
          static_cast<T*>(args.dx), static_cast<T*>(args.dgate_a), static_cast<T*>(args.dgate_x),
          partial.data_as<float>(), static_cast<const T*>(args.da), static_cast<const T*>(args.db),
          static_cast<const T*>(args.x), static_cast<const T*>(args.gate_a),
          static_cast<const T*>(args.gate_x), static_cast<const T*>(args.lambda), rows, D,
          split.rows_per_chunk);
      LONGCTX_CHECK_LAUNCH();
    }
    rglru_gate_sum_chunks_kernel<T>
        <<<unsigned((D + kThreads - 1) / kThreads), kThreads, 0, stream>>>(
            static_cast<T*>(args.dlambda), partial.data_as<float>(), split.chunks, D);
    LONGCTX_CHECK_LAUNCH();
  });
}

}  // namespace longctx::cuda
