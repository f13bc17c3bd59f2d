// causal_conv1d on CUDA: depthwise causal convolution over (B, D, T), T contiguous, W <= 4; or
// over channel-last (B, T, D) views (args.*_at strides), with the same kernels: their loads
// along T are then strided, not coalesced (correct, not tuned). Every model mixer's conv runs
// channel-last since 2026-12-06 (on the CPU the transposes it replaced cost 5-16% of a training
// step); a kernel with the channels across a block's threads is the GPU's open follow-up.
//
//   out[b, d, t] = act(bias[d] + sum_{j<4} w4[j] * x[b, d, t - 3 + j]),  w4 = weight padded on
//   the left with 4 - W zeros,
// so one kernel body serves every W <= 4 with no per-W instantiation (the padded taps cost a
// few FMAs on a bandwidth-bound op).
//
// Forward: a block owns kTile = kThreads * kItems steps of one (b, d) row; the tile plus its
// 3-step halo is staged in shared memory with coalesced loads, so each x is read from memory
// once. Backward: g = dout * act'(pre) is recomputed on the tile plus a 3-step right halo,
// dx[t] = sum_j w4[j] g[t + 3 - j]; each block also reduces its dweight/dbias contributions
// (cub::BlockReduce, fixed order) into a per-tile partial, and a second kernel sums the partials
// over (b, tile) in a fixed order: deterministic, no atomics. Update: one thread per (b, d).
#include <cub/block/block_reduce.cuh>

#include "kernels/common/grid.h"
#include "kernels/common/varlen.cuh"
#include "kernels/scan/scan_common.cuh"
#include "src/ops/causal_conv1d.h"

namespace longctx::cuda {

namespace {

constexpr int kThreads = 128;
constexpr int kItems = 8;
constexpr int kTile = kThreads * kItems;  // steps per block
constexpr int kTaps = 4;                  // the largest W; narrower kernels are left-padded
constexpr int kHalo = kTaps - 1;
constexpr int kPartial = kTaps + 1;  // per-tile partial sums: 4 padded taps, then bias

template <class T>
__device__ __forceinline__ void load_taps(float (&w4)[kTaps], const T* weight, int64_t d, int W) {
#pragma unroll
  for (int j = 0; j < kTaps; ++j) {
    const int w = j - (kTaps - W);
    w4[j] = w >= 0 ? load_f32(weight[d * W + w]) : 0.f;
  }
}

__device__ __forceinline__ float activate(float pre, bool silu) {
  return silu ? scan::siluf(pre) : pre;
}

// The positions [start, end) of the sequence holding step t of a row: the whole row of a
// rectangular batch; in a packed batch (cu_seqlens given, N sequences) t's own sequence.
struct Bounds {
  int64_t start, end;
};
__device__ __forceinline__ Bounds bounds_of(const int32_t* cu_seqlens, int N, int64_t t,
                                            int64_t T_len) {
  if (!cu_seqlens) return {0, T_len};
  const int n = sequence_of(cu_seqlens, N, t);
  return {cu_seqlens[n], cu_seqlens[n + 1]};
}

// Grid: flat over (B * D, ceil(T / kTile)) (grid.h: the tiles passed gridDim.y's 65535 at T =
// 64M). A packed batch (cu_seqlens, N sequences; B = 1) masks the taps
// that reach back past a sequence's first step, exactly as the zeros before t = 0 do.
template <class T>
__global__ void __launch_bounds__(kThreads)
    causal_conv1d_fwd_kernel(T* out, const T* x, const T* weight, const T* bias, int64_t BD,
                             int64_t D, int64_t T_len, int W, bool silu, const int32_t* cu_seqlens,
                             int N, ConvStrides x_at, ConvStrides out_at) {
  __shared__ float xs[kHalo + kTile];
  const GridIndex blk = unflatten(blockIdx.x, unsigned(BD));
  const int64_t row = blk.i0, d = row % D, bi = row / D;
  const int64_t t_tile = int64_t(blk.i1) * kTile;
  const T* x_row = x + bi * x_at.b + d * x_at.d;
  T* out_row = out + bi * out_at.b + d * out_at.d;
  for (int i = threadIdx.x; i < kHalo + kTile; i += kThreads) {
    const int64_t t = t_tile - kHalo + i;
    xs[i] = t >= 0 && t < T_len ? load_f32(x_row[t * x_at.t]) : 0.f;
  }
  float w4[kTaps];
  load_taps(w4, weight, d, W);
  const float b = bias ? load_f32(bias[d]) : 0.f;
  __syncthreads();
#pragma unroll
  for (int k = 0; k < kItems; ++k) {
    const int i = threadIdx.x + k * kThreads;  // position in the tile; xs[i + j] is x[t - 3 + j]
    const int64_t t = t_tile + i;
    if (t >= T_len) break;
    const int64_t start = bounds_of(cu_seqlens, N, t, T_len).start;
    float acc = b;
#pragma unroll
    for (int j = 0; j < kTaps; ++j) acc += w4[j] * (t - kHalo + j >= start ? xs[i + j] : 0.f);
    out_row[t * out_at.t] = store_as<T>(activate(acc, silu));
  }
}

struct Partial {
  float v[kPartial];
  __device__ Partial operator+(const Partial& o) const {
    Partial r;
#pragma unroll
    for (int j = 0; j < kPartial; ++j) r.v[j] = v[j] + o.v[j];
    return r;
  }
};

// Grid: flat over (B * D, tiles). partial: (B * tiles, D, kPartial), entry m = b * tiles + tile. A
// packed batch masks the taps across sequence boundaries as the forward does, in both directions.
template <class T>
__global__ void __launch_bounds__(kThreads)
    causal_conv1d_bwd_kernel(T* dx, float* partial, const T* dout, const T* x, const T* weight,
                             const T* bias, int64_t BD, int64_t D, int64_t T_len, int W, bool silu,
                             const int32_t* cu_seqlens, int N, ConvStrides x_at,
                             ConvStrides dout_at, ConvStrides dx_at) {
  using Reduce = cub::BlockReduce<Partial, kThreads>;
  __shared__ typename Reduce::TempStorage reduce_storage;
  __shared__ float xs[kHalo + kTile + kHalo];  // x[t_tile - 3 .. t_tile + kTile + 3)
  __shared__ float gs[kTile + kHalo];          // g[t_tile .. t_tile + kTile + 3)
  const GridIndex blk = unflatten(blockIdx.x, unsigned(BD));
  const int64_t row = blk.i0, d = row % D, bi = row / D;
  const int64_t tile = blk.i1, tiles = (T_len + kTile - 1) / kTile;
  const int64_t t_tile = tile * kTile;
  const T* x_row = x + bi * x_at.b + d * x_at.d;
  const T* dout_row = dout + bi * dout_at.b + d * dout_at.d;
  T* dx_row = dx + bi * dx_at.b + d * dx_at.d;
  for (int i = threadIdx.x; i < kHalo + kTile + kHalo; i += kThreads) {
    const int64_t t = t_tile - kHalo + i;
    xs[i] = t >= 0 && t < T_len ? load_f32(x_row[t * x_at.t]) : 0.f;
  }
  float w4[kTaps];
  load_taps(w4, weight, d, W);
  const float b = bias ? load_f32(bias[d]) : 0.f;
  __syncthreads();
  for (int i = threadIdx.x; i < kTile + kHalo; i += kThreads) {
    const int64_t t = t_tile + i;
    float g = 0.f;  // no gradient flows from outputs past the end
    if (t < T_len) {
      g = load_f32(dout_row[t * dout_at.t]);
      if (silu) {
        const int64_t start = bounds_of(cu_seqlens, N, t, T_len).start;
        float pre = b;
#pragma unroll
        for (int j = 0; j < kTaps; ++j) pre += w4[j] * (t - kHalo + j >= start ? xs[i + j] : 0.f);
        g *= scan::silu_grad(pre);
      }
    }
    gs[i] = g;
  }
  __syncthreads();
  Partial acc;
#pragma unroll
  for (int j = 0; j < kPartial; ++j) acc.v[j] = 0.f;
#pragma unroll
  for (int k = 0; k < kItems; ++k) {
    const int i = threadIdx.x + k * kThreads;
    const int64_t t = t_tile + i;
    if (t >= T_len) break;
    const Bounds seq = bounds_of(cu_seqlens, N, t, T_len);
    float dxv = 0.f;  // the outputs t + 3 - j of t's own sequence read x[t]
#pragma unroll
    for (int j = 0; j < kTaps; ++j)
      dxv += w4[j] * (t + kHalo - j < seq.end ? gs[i + kHalo - j] : 0.f);
    dx_row[t * dx_at.t] = store_as<T>(dxv);
    const float g = gs[i];
#pragma unroll
    for (int j = 0; j < kTaps; ++j) acc.v[j] += g * (t - kHalo + j >= seq.start ? xs[i + j] : 0.f);
    acc.v[kTaps] += g;
  }
  const Partial sum = Reduce(reduce_storage).Sum(acc);
  if (threadIdx.x == 0) {
    float* p = partial + ((bi * tiles + tile) * D + d) * kPartial;
#pragma unroll
    for (int j = 0; j < kPartial; ++j) p[j] = sum.v[j];
  }
}

// One thread per (d, slot), slot < W for dweight, slot == W for dbias; sums the M partials in
// order m = 0 .. M-1.
template <class T>
__global__ void causal_conv1d_sum_partials_kernel(T* dweight, T* dbias, const float* partial,
                                                  int64_t M, int64_t D, int W) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= D * (W + 1)) return;
  const int64_t d = i / (W + 1);
  const int slot = int(i % (W + 1));
  if (slot == W && !dbias) return;
  const int j = slot == W ? kTaps : slot + (kTaps - W);
  float sum = 0.f;
  for (int64_t m = 0; m < M; ++m) sum += partial[(m * D + d) * kPartial + j];
  if (slot == W)
    dbias[d] = store_as<T>(sum);
  else
    dweight[d * W + slot] = store_as<T>(sum);
}

// One thread per (b, d). conv_state (B, D, W - 1) holds the previous W - 1 inputs, oldest first.
template <class T>
__global__ void causal_conv1d_update_kernel(T* out, T* conv_state, const T* x, const T* weight,
                                            const T* bias, int64_t B, int64_t D, int W, bool silu) {
  const int64_t row = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (row >= B * D) return;
  const int64_t d = row % D;
  T* state = conv_state + row * (W - 1);
  const float xv = load_f32(x[row]);
  float acc = bias ? load_f32(bias[d]) : 0.f;
  for (int w = 0; w < W - 1; ++w) acc += load_f32(weight[d * W + w]) * load_f32(state[w]);
  acc += load_f32(weight[d * W + W - 1]) * xv;
  out[row] = store_as<T>(activate(acc, silu));
  for (int w = 0; w + 1 < W - 1; ++w) state[w] = state[w + 1];
  if (W > 1) state[W - 2] = x[row];
}

}  // namespace

void causal_conv1d_fwd(const Context& ctx, const CausalConv1dArgs& args) {
  const int64_t B = args.B, D = args.D, T = args.T;
  const int W = args.W;
  if (B * D == 0 || T == 0) return;
  cudaStream_t stream = state_of(ctx).stream;
  const unsigned grid = flat_grid("causal_conv1d_fwd", B * D, (T + kTile - 1) / kTile, 1);
  dispatch_cuda_float("causal_conv1d_fwd", args.dtype, [&](auto tag) {
    using T_ = typename decltype(tag)::type;
    causal_conv1d_fwd_kernel<T_><<<grid, kThreads, 0, stream>>>(
        static_cast<T_*>(args.out), static_cast<const T_*>(args.x),
        static_cast<const T_*>(args.weight), static_cast<const T_*>(args.bias), B * D, D, T, W,
        args.silu, args.seqs.cu_seqlens, int(args.seqs.count), args.x_at, args.out_at);
  });
  LONGCTX_CHECK_LAUNCH();
}

void causal_conv1d_bwd(const Context& ctx, const CausalConv1dArgs& args) {
  const int64_t B = args.B, D = args.D, T = args.T;
  const int W = args.W;
  if (D == 0) return;
  cudaStream_t stream = state_of(ctx).stream;
  const int64_t tiles = (T + kTile - 1) / kTile;
  const int64_t M = B * tiles;  // partials per channel
  Tensor partial =
      Tensor::empty({std::max<int64_t>(M, 1), D, kPartial}, DType::f32, ctx.device(), &ctx);
  dispatch_cuda_float("causal_conv1d_bwd", args.dtype, [&](auto tag) {
    using T_ = typename decltype(tag)::type;
    const T_* bias_ptr = static_cast<const T_*>(args.bias);
    if (M > 0) {
      causal_conv1d_bwd_kernel<T_>
          <<<flat_grid("causal_conv1d_bwd", B * D, tiles, 1), kThreads, 0, stream>>>(
              static_cast<T_*>(args.dx), partial.data_as<float>(),
              static_cast<const T_*>(args.dout), static_cast<const T_*>(args.x),
              static_cast<const T_*>(args.weight), bias_ptr, B * D, D, T, W, args.silu,
              args.seqs.cu_seqlens, int(args.seqs.count), args.x_at, args.dout_at, args.dx_at);
      LONGCTX_CHECK_LAUNCH();
    }
    const int64_t slots = D * (W + 1);
    causal_conv1d_sum_partials_kernel<T_><<<unsigned((slots + 255) / 256), 256, 0, stream>>>(
        static_cast<T_*>(args.dweight), static_cast<T_*>(args.dbias), partial.data_as<float>(), M,
        D, W);
    LONGCTX_CHECK_LAUNCH();
  });
}

void causal_conv1d_update(const Context& ctx, const CausalConv1dArgs& args) {
  const int64_t B = args.B, D = args.D;
  const int W = args.W;
  if (B * D == 0) return;
  cudaStream_t stream = state_of(ctx).stream;
  dispatch_cuda_float("causal_conv1d_update", args.dtype, [&](auto tag) {
    using T_ = typename decltype(tag)::type;
    causal_conv1d_update_kernel<T_><<<unsigned((B * D + 255) / 256), 256, 0, stream>>>(
        static_cast<T_*>(args.out), static_cast<T_*>(args.conv_state),
        static_cast<const T_*>(args.x), static_cast<const T_*>(args.weight),
        static_cast<const T_*>(args.bias), B, D, W, args.silu);
  });
  LONGCTX_CHECK_LAUNCH();
}

}  // namespace longctx::cuda
