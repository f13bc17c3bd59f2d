// gdn_gate on CUDA (see include/longctx/ops/gdn_gate.h). f32 math.
//
// Forward: elementwise over all elements (grid-stride), as rglru_gate's.
// Backward: rglru_gate's scheme: a 2-D grid of (32-channel tile, row chunk) blocks of 32 x 8
// threads; a lane walks every 8th row of its chunk in order, writes da and keeps its ddt_bias and
// dA_log terms in registers; the block adds its 8 partials per channel in a fixed order into the
// chunk's partials, and a second kernel adds the chunk partials in chunk order and then a head's
// channels in channel order: deterministic, no atomics (row_chunks.h).
#include <algorithm>

#include "kernels/common/context_state.cuh"
#include "kernels/common/cuda_check.cuh"
#include "kernels/common/row_chunks.h"
#include "kernels/common/types.cuh"
#include "longctx/ops/gdn_gate.h"
#include "src/core/activations.h"

namespace longctx::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kChannels = 32;
constexpr int kRowLanes = kThreads / kChannels;
constexpr int64_t kMaxChunks = 256;
constexpr int64_t kMinChunkRows = 64;
static_assert(kMaxChunks <= 65535, "chunks are gridDim.y");

template <class T>
__global__ void __launch_bounds__(kThreads)
    gdn_gate_fwd_kernel(T* g, const T* a, const T* A_log, const T* dt_bias, int64_t n, int64_t D,
                        int64_t Kg) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = i % D;
    g[i] = store_as<T>(-expf(load_f32(A_log[c / Kg])) *
                       softplus(load_f32(a[i]) + load_f32(dt_bias[c])));
  }
}

// partial[0][chunk][c]: the chunk's ddt_bias terms for channel c; partial[1][chunk][c]: its
// dA_log terms.
template <class T>
__global__ void __launch_bounds__(kThreads)
    gdn_gate_bwd_kernel(T* da, float* partial, const T* dg, const T* a, const T* A_log,
                        const T* dt_bias, int64_t rows, int64_t D, int64_t Kg, int64_t chunks,
                        int64_t rows_per_chunk) {
  __shared__ float sums[2][kRowLanes][kChannels];
  const int lane = threadIdx.x % kChannels, row_lane = threadIdx.x / kChannels;
  const int64_t c = int64_t(blockIdx.x) * kChannels + lane;
  const int64_t r0 = int64_t(blockIdx.y) * rows_per_chunk;
  const int64_t r1 = std::min(rows, r0 + rows_per_chunk);
  float db = 0.f, dA = 0.f;
  if (c < D) {
    const float A = expf(load_f32(A_log[c / Kg])), bias = load_f32(dt_bias[c]);
    for (int64_t r = r0 + row_lane; r < r1; r += kRowLanes) {
      const int64_t i = r * D + c;
      const float s = load_f32(a[i]) + bias, d = load_f32(dg[i]);
      const float ds = d * -A * sigmoid(s);  // g = -A softplus(s)
      da[i] = store_as<T>(ds);
      db += ds;
      dA += d * -A * softplus(s);
    }
  }
  sums[0][row_lane][lane] = db;
  sums[1][row_lane][lane] = dA;
  __syncthreads();
  if (row_lane < 2 && c < D) {
    float s = 0.f;
#pragma unroll
    for (int k = 0; k < kRowLanes; ++k) s += sums[row_lane][k][lane];
    partial[(row_lane * chunks + blockIdx.y) * D + c] = s;
  }
}

// ddt_bias[c] and channel c's dA_log share, each the sum of the chunk partials in chunk order;
// then (one thread per head) dA_log[h], its channels' shares in channel order.
template <class T>
__global__ void __launch_bounds__(kThreads)
    gdn_gate_sum_chunks_kernel(T* ddt_bias, float* dA_part, const float* partial, int64_t chunks,
                               int64_t D) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (c >= D) return;
  float db = 0.f, dA = 0.f;
  for (int64_t k = 0; k < chunks; ++k) {
    db += partial[k * D + c];
    dA += partial[(chunks + k) * D + c];
  }
  ddt_bias[c] = store_as<T>(db);
  dA_part[c] = dA;
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    gdn_gate_sum_heads_kernel(T* dA_log, const float* dA_part, int64_t HV, int64_t Kg) {
  const int64_t h = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (h >= HV) return;
  float s = 0.f;
  for (int64_t c = h * Kg; c < (h + 1) * Kg; ++c) s += dA_part[c];
  dA_log[h] = store_as<T>(s);
}

unsigned blocks_for(int64_t n) {
  return unsigned(std::min<int64_t>((n + kThreads - 1) / kThreads, int64_t(1) << 20));
}

}  // namespace

void gdn_gate_fwd(const Context& ctx, const Tensor& g, const Tensor& a, const Tensor& A_log,
                  const Tensor& dt_bias) {
  const int64_t D = a.size(a.dim() - 1), n = a.numel();
  if (D == 0 || n == 0) return;
  dispatch_cuda_float("gdn_gate_fwd", a.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    gdn_gate_fwd_kernel<T><<<blocks_for(n), kThreads, 0, state_of(ctx).stream>>>(
        static_cast<T*>(g.data()), static_cast<const T*>(a.data()),
        static_cast<const T*>(A_log.data()), static_cast<const T*>(dt_bias.data()), n, D,
        D / A_log.size(0));
  });
  LONGCTX_CHECK_LAUNCH();
}

void gdn_gate_bwd(const Context& ctx, const Tensor& da, const Tensor& dA_log,
                  const Tensor& ddt_bias, const Tensor& dg, const Tensor& a, const Tensor& A_log,
                  const Tensor& dt_bias) {
  const int64_t D = a.size(a.dim() - 1), rows = D ? a.numel() / D : 0;
  const int64_t HV = A_log.size(0), Kg = D / HV;
  if (D == 0) return;
  cudaStream_t stream = state_of(ctx).stream;
  const RowChunks split = row_chunks(rows, kMaxChunks, kMinChunkRows);
  // No rows: no chunk, and the sums below write zeros.
  Tensor partial =
      Tensor::empty({2, std::max<int64_t>(split.chunks, 1), D}, DType::f32, ctx.device(), &ctx);
  Tensor dA_part = Tensor::empty({D}, DType::f32, ctx.device(), &ctx);
  dispatch_cuda_float("gdn_gate_bwd", a.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (split.chunks > 0) {
      const dim3 grid(unsigned((D + kChannels - 1) / kChannels), unsigned(split.chunks));
      gdn_gate_bwd_kernel<T><<<grid, kThreads, 0, stream>>>(
          static_cast<T*>(da.data()), partial.data_as<float>(), static_cast<const T*>(dg.data()),
          static_cast<const T*>(a.data()), static_cast<const T*>(A_log.data()),
          static_cast<const T*>(dt_bias.data()), rows, D, Kg, split.chunks, split.rows_per_chunk);
      LONGCTX_CHECK_LAUNCH();
    }
    gdn_gate_sum_chunks_kernel<T><<<unsigned((D + kThreads - 1) / kThreads), kThreads, 0, stream>>>(
        static_cast<T*>(ddt_bias.data()), dA_part.data_as<float>(), partial.data_as<float>(),
        split.chunks, D);
    LONGCTX_CHECK_LAUNCH();
    gdn_gate_sum_heads_kernel<T><<<unsigned((HV + kThreads - 1) / kThreads), kThreads, 0, stream>>>(
        static_cast<T*>(dA_log.data()), dA_part.data_as<float>(), HV, Kg);
    LONGCTX_CHECK_LAUNCH();
  });
}

}  // namespace longctx::cuda
