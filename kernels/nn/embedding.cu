// embedding on CUDA.
// Forward: one block per token row (grid-stride), threads over C. A token outside [0, V) gets a
// zero row and is reported at the context's next synchronisation (index_check.cuh): the call
// itself never waits for the device.
// Backward, deterministic without atomics on the data: sort (token, position) pairs with CUB's
// stable radix sort, find each id's run of positions by binary search, then one block per
// (id, 128-channel tile): its 8 warps take every 8th position of the run (a fixed assignment),
// and the 8 partial sums are added in warp order.
#include <cub/device/device_radix_sort.cuh>

#include <algorithm>

#include "kernels/common/context_state.cuh"
#include "kernels/common/cuda_check.cuh"
#include "kernels/common/grid.h"
#include "kernels/common/index_check.cuh"
#include "kernels/common/types.cuh"
#include "src/ops/embedding.h"

namespace longctx::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kTile = 128;  // channels per backward block: 4 per lane
static_assert(kTile % 32 == 0, "a tile is a whole number of channels per lane");

// Reports the first position whose token is outside [0, V).
__global__ void __launch_bounds__(kThreads)
    check_tokens_kernel(unsigned long long* bad, const int32_t* tokens, int64_t N, int64_t V) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < N;
       i += int64_t(gridDim.x) * blockDim.x)
    if (tokens[i] < 0 || tokens[i] >= V) report_bad_index(bad, i, tokens[i]);
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    embedding_fwd_kernel(T* out, unsigned long long* bad, const int32_t* tokens, const T* table,
                         int64_t N, int64_t V, int64_t C) {
  for (int64_t i = blockIdx.x; i < N; i += gridDim.x) {
    const int64_t id = tokens[i];
    T* dst = out + i * C;
    if (id < 0 || id >= V) {
      if (threadIdx.x == 0) report_bad_index(bad, i, int32_t(id));
      for (int64_t c = threadIdx.x; c < C; c += blockDim.x) dst[c] = store_as<T>(0.f);
      continue;
    }
    const T* row = table + id * C;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) dst[c] = row[c];
  }
}

__global__ void __launch_bounds__(kThreads) iota_kernel(int32_t* values, int64_t N) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < N;
       i += int64_t(gridDim.x) * blockDim.x)
    values[i] = int32_t(i);
}

// offsets[v] = the first k with sorted[k] >= v, for v in [0, V]: id v's positions are
// order[offsets[v] .. offsets[v + 1]).
__global__ void __launch_bounds__(kThreads)
    run_offsets_kernel(int64_t* offsets, const int32_t* sorted, int64_t N, int64_t V) {
  for (int64_t v = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; v <= V;
       v += int64_t(gridDim.x) * blockDim.x) {
    int64_t lo = 0, hi = N;
    while (lo < hi) {
      const int64_t mid = (lo + hi) / 2;
      if (int64_t(sorted[mid]) < v)
        lo = mid + 1;
      else
        hi = mid;
    }
    offsets[v] = lo;
  }
}

// Block (v, tile), flat over (V, tiles): dtable[v, tile*kTile .. +kTile) = sum over the run of v
// of dout rows.
template <class T>
__global__ void __launch_bounds__(kThreads)
    embedding_bwd_kernel(T* dtable, const T* dout, const int32_t* order, const int64_t* offsets,
                         int64_t V, int64_t C) {
  __shared__ float partial[kWarps][kTile];
  const GridIndex blk = unflatten(blockIdx.x, unsigned(V));
  const int64_t v = blk.i0;
  const int64_t c0 = int64_t(blk.i1) * kTile;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float acc[kTile / 32] = {};
  const int64_t begin = offsets[v], end = offsets[v + 1];
  for (int64_t k = begin + warp; k < end; k += kWarps) {
    const T* src = dout + int64_t(order[k]) * C;
#pragma unroll
    for (int q = 0; q < kTile / 32; ++q) {
      const int64_t c = c0 + lane + 32 * q;
      if (c < C) acc[q] += load_f32(src[c]);
    }
  }
#pragma unroll
  for (int q = 0; q < kTile / 32; ++q) partial[warp][lane + 32 * q] = acc[q];
  __syncthreads();
  if (threadIdx.x < kTile) {
    const int64_t c = c0 + threadIdx.x;
    float sum = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) sum += partial[w][threadIdx.x];
    if (c < C) dtable[v * C + c] = store_as<T>(sum);
  }
}

unsigned blocks_for(int64_t n) {
  return unsigned(
      std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, 65535 * 8)));
}

// Checks the tokens on the device; a bad one is reported at the next synchronisation.
void check_tokens(const Context& ctx, IndexCheck check, const int32_t* tokens, int64_t N,
                  int64_t V) {
  if (N == 0) return;
  Context::CudaState& state = state_of(ctx);
  check_tokens_kernel<<<blocks_for(N), kThreads, 0, state.stream>>>(state.index_flag, tokens, N, V);
  LONGCTX_CHECK_LAUNCH();
  commit_index_check(state, check, V, 0);
}

}  // namespace

void embedding_fwd(const Context& ctx, const EmbeddingArgs& args) {
  const int64_t N = args.N, V = args.V, C = args.C;
  if (N == 0 || C == 0)
    return check_tokens(ctx, IndexCheck::embedding_fwd_tokens, args.tokens, N, V);
  Context::CudaState& state = state_of(ctx);
  const unsigned blocks = unsigned(std::min<int64_t>(N, 65535 * 8));
  dispatch_cuda_float("embedding_fwd", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    embedding_fwd_kernel<T><<<blocks, kThreads, 0, state.stream>>>(
        static_cast<T*>(args.out), state.index_flag, args.tokens, static_cast<const T*>(args.table),
        N, V, C);
  });
  LONGCTX_CHECK_LAUNCH();
  commit_index_check(state, IndexCheck::embedding_fwd_tokens, V, 0);
}

void embedding_bwd(const Context& ctx, const EmbeddingArgs& args) {
  const int64_t N = args.N, V = args.V, C = args.C;
  // Tokens outside [0, V) sort outside every run [offsets[v], offsets[v + 1]) below, so they add
  // to no row; they are reported at the next synchronisation.
  check_tokens(ctx, IndexCheck::embedding_bwd_tokens, args.tokens, N, V);
  if (C == 0) return;
  cudaStream_t stream = state_of(ctx).stream;
  const Device dev = ctx.device();
  // Sorted (token, position) pairs; with N = 0 every run is empty and dtable is all zeros.
  Tensor sorted = Tensor::empty({std::max<int64_t>(N, 1)}, DType::i32, dev, &ctx);
  Tensor order = Tensor::empty({std::max<int64_t>(N, 1)}, DType::i32, dev, &ctx);
  if (N > 0) {
    Tensor positions = Tensor::empty({N}, DType::i32, dev, &ctx);
    iota_kernel<<<blocks_for(N), kThreads, 0, stream>>>(positions.data_as<int32_t>(), N);
    LONGCTX_CHECK_LAUNCH();
    size_t temp_bytes = 0;
    LONGCTX_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
        nullptr, temp_bytes, args.tokens, sorted.data_as<int32_t>(), positions.data_as<int32_t>(),
        order.data_as<int32_t>(), N, 0, 32, stream));
    Tensor temp = Tensor::empty({int64_t(temp_bytes / 8 + 1)}, DType::i64, dev, &ctx);
    LONGCTX_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
        temp.data(), temp_bytes, args.tokens, sorted.data_as<int32_t>(),
        positions.data_as<int32_t>(), order.data_as<int32_t>(), N, 0, 32, stream));
  }
  Tensor offsets = Tensor::empty({V + 1}, DType::i64, dev, &ctx);
  run_offsets_kernel<<<blocks_for(V + 1), kThreads, 0, stream>>>(offsets.data_as<int64_t>(),
                                                                 sorted.data_as<int32_t>(), N, V);
  LONGCTX_CHECK_LAUNCH();
  const int64_t tiles = (C + kTile - 1) / kTile;
  const unsigned grid = flat_grid("embedding_bwd", V, tiles, 1);
  dispatch_cuda_float("embedding_bwd", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    embedding_bwd_kernel<T><<<grid, kThreads, 0, stream>>>(
        static_cast<T*>(args.dtable), static_cast<const T*>(args.dout), order.data_as<int32_t>(),
        offsets.data_as<int64_t>(), V, C);
  });
  LONGCTX_CHECK_LAUNCH();
}

}  // namespace longctx::cuda
