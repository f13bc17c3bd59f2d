// causal_conv1d on CUDA: depthwise causal convolution over (B, D, T), T contiguous, W <= 4, or
// over channel-last (B, T, D) views (args.*_at strides) with kernels of their own.
//
//   out[b, d, t] = act(bias[d] + sum_{j<4} w4[j] * x[b, d, t - 3 + j]),  w4 = weight padded on
//   the left with 4 - W zeros,
// so one kernel body serves every W <= 4 with no per-W instantiation (the padded taps cost a
// few FMAs on a bandwidth-bound op).
//
// Channel-first forward: a block owns kTile = kThreads * kItems steps of one (b, d) row; the tile
// plus its 3-step halo is staged in shared memory with coalesced loads, so each x is read from
// memory once. Backward: g = dout * act'(pre) is recomputed on the tile plus a 3-step right halo,
// dx[t] = sum_j w4[j] g[t + 3 - j]; each block also reduces its dweight/dbias contributions
// (cub::BlockReduce, fixed order) into a per-tile partial, and a second kernel sums the partials
// over (b, tile) in a fixed order: deterministic, no atomics. Update: one thread per (b, d).
//
// Channel-last (every model mixer's conv since 2026-12-06: on the CPU the transposes it replaced
// cost 5-16% of a training step): the channels run across a warp's lanes, so each step's row is
// one contiguous read of 32 channels (128 bytes in f32), where the channel-first kernels' threads
// would each read another row (one 32-byte sector for 2-4 useful bytes); each thread holds kSteps
// consecutive steps of its channel, and its halo, in registers, all its loads issued before any
// arithmetic. The backward's blocks cover the channel-first backward's tiles and reduce their
// warps' dweight/dbias in a fixed order into the same per-tile partials. (Compiled; not yet run
// on a GPU: the lease's channel-last cases check it. bench/results/
// 2026-12-07-cuda-conv-channel-last/model.py replays their index arithmetic in numpy.)
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

// bias + sum_j w4[j] * x[t - 3 + j] over the taps inside t's sequence (from `start` on), with
// window[j] = x[t - 3 + j]: the pre-activation of out[t].
__device__ __forceinline__ float conv_pre(const float (&w4)[kTaps], float bias, const float* window,
                                          int64_t t, int64_t start) {
  float acc = bias;
#pragma unroll
  for (int j = 0; j < kTaps; ++j) acc += w4[j] * (t - kHalo + j >= start ? window[j] : 0.f);
  return acc;
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
    out_row[t * out_at.t] = store_as<T>(activate(conv_pre(w4, b, xs + i, t, start), silu));
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
        g *= scan::silu_grad(conv_pre(w4, b, xs + i, t, start));
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

// ---- Channel-last (B, T, D): lanes over channels, warps over runs of kSteps steps ----

constexpr int kLanes = 32;  // channels per block, one per lane
constexpr int kWarps = 16;  // runs of steps side by side, one per warp
constexpr int kSteps = 8;   // steps per thread and run, held in registers
constexpr int kLastThreads = kLanes * kWarps;
// Runs per warp, one after another: the forward's blocks cover kWarps * kSteps = 128 steps; the
// backward's cover kTile (1024) steps, as the channel-first backward's, so that both make one
// dweight/dbias partial per (b, channel, 1024 steps) (at 1M tokens and D = 4096: 80 MiB of them;
// one run per warp would make 8x as many, and the sum over them 8x as long).
constexpr int kFwdRuns = 1;
constexpr int kBwdRuns = kTile / (kWarps * kSteps);
static_assert(kBwdRuns * kWarps * kSteps == kTile, "the backward's tile is kTile steps");

// A block's share in a grid over (ceil(D / kLanes), ceil(T / (runs * kWarps * kSteps)), B): this
// thread's channel d (every d < D: the channel-last layouts have unit-stride channels, at.d = 1),
// batch row b, the block's tile, and the tile's first step.
struct LastBlock {
  int64_t d, b, tile, t_tile;
};
template <int runs>
__device__ __forceinline__ LastBlock last_block(int64_t D, int64_t T_len) {
  constexpr int64_t tile_steps = int64_t(runs) * kWarps * kSteps;
  const GridIndex blk = unflatten(blockIdx.x, unsigned((D + kLanes - 1) / kLanes),
                                  unsigned((T_len + tile_steps - 1) / tile_steps));
  return {int64_t(blk.i0) * kLanes + threadIdx.x % kLanes, blk.i2, blk.i1, blk.i1 * tile_steps};
}

// Run r's first step for this thread: a warp's runs are consecutive, so that its thread's sums
// (and then the warps', in order) go in step order.
template <int runs>
__device__ __forceinline__ int64_t run_start(const LastBlock& blk, int r) {
  return blk.t_tile + (int64_t(threadIdx.x / kLanes) * runs + r) * kSteps;
}

// The sequence holding step t for steps visited in increasing order from `t` on: a thread's few
// steps cross few sequence ends, so a step costs a compare, not bounds_of's binary search.
struct SequenceCursor {
  const int32_t* cu_seqlens;
  int n;  // the sequence's index (0 for a rectangular batch)
  Bounds seq;
  __device__ SequenceCursor(const int32_t* cu, int N, int64_t t, int64_t T_len)
      : cu_seqlens(cu),
        n(cu ? sequence_of(cu, N, t) : 0),
        seq(cu ? Bounds{cu[n], cu[n + 1]} : Bounds{0, T_len}) {}
  __device__ const Bounds& at(int64_t t) {
    while (t >= seq.end) {  // on to the next sequence (empty ones are passed over)
      ++n;
      seq = {cu_seqlens[n], cu_seqlens[n + 1]};
    }
    return seq;
  }
};

// x[t0 - kHalo + i] for i < n into xs (zeros before t = 0 and from t_end on).
template <class T, int n>
__device__ __forceinline__ void load_steps(float (&xs)[n], const T* row, int64_t t_at, int64_t t0,
                                           int64_t t_end) {
#pragma unroll
  for (int i = 0; i < n; ++i) {
    const int64_t t = t0 - kHalo + i;
    xs[i] = t >= 0 && t < t_end ? load_f32(row[t * t_at]) : 0.f;
  }
}

template <class T>
__global__ void __launch_bounds__(kLastThreads)
    causal_conv1d_fwd_last_kernel(T* out, const T* x, const T* weight, const T* bias, int64_t D,
                                  int64_t T_len, int W, bool silu, const int32_t* cu_seqlens, int N,
                                  ConvStrides x_at, ConvStrides out_at) {
  const LastBlock blk = last_block<kFwdRuns>(D, T_len);
  const int64_t t0 = run_start<kFwdRuns>(blk, 0), t1 = min(t0 + kSteps, T_len);
  if (blk.d >= D || t0 >= T_len) return;
  float xs[kHalo + kSteps];  // x[t0 - 3 .. t1): no step past the run is read
  load_steps(xs, x + blk.b * x_at.b + blk.d, x_at.t, t0, t1);
  float w4[kTaps];
  load_taps(w4, weight, blk.d, W);
  const float b = bias ? load_f32(bias[blk.d]) : 0.f;
  T* out_row = out + blk.b * out_at.b + blk.d;
  SequenceCursor cursor(cu_seqlens, N, t0, T_len);
#pragma unroll
  for (int i = 0; i < kSteps; ++i) {
    const int64_t t = t0 + i;
    if (t >= t1) break;
    const float pre = conv_pre(w4, b, xs + i, t, cursor.at(t).start);
    out_row[t * out_at.t] = store_as<T>(activate(pre, silu));
  }
}

// partial: (B * tiles, D, kPartial) with tiles of kTile steps, as the channel-first backward's.
template <class T>
__global__ void __launch_bounds__(kLastThreads)
    causal_conv1d_bwd_last_kernel(T* dx, float* partial, const T* dout, const T* x, const T* weight,
                                  const T* bias, int64_t D, int64_t T_len, int W, bool silu,
                                  const int32_t* cu_seqlens, int N, ConvStrides x_at,
                                  ConvStrides dout_at, ConvStrides dx_at) {
  __shared__ float warp_sums[kWarps][kPartial][kLanes];
  const LastBlock blk = last_block<kBwdRuns>(D, T_len);
  const int lane = threadIdx.x % kLanes, warp = threadIdx.x / kLanes;
  float acc[kPartial];
#pragma unroll
  for (int j = 0; j < kPartial; ++j) acc[j] = 0.f;
  const bool lane_active = blk.d < D;  // a lane past D runs no step
  float w4[kTaps] = {}, b = 0.f;
  if (lane_active) {
    load_taps(w4, weight, blk.d, W);
    if (bias) b = load_f32(bias[blk.d]);
  }
  const T* x_row = x + blk.b * x_at.b + blk.d;
  const T* dout_row = dout + blk.b * dout_at.b + blk.d;
  T* dx_row = dx + blk.b * dx_at.b + blk.d;
#pragma unroll 1
  for (int r = 0; lane_active && r < kBwdRuns; ++r) {
    const int64_t t0 = run_start<kBwdRuns>(blk, r), t1 = min(t0 + kSteps, T_len);
    if (t0 >= T_len) break;
    // x[t0 - 3 .. t1 + 3) and g[t0 .. t1 + 3): dx[t] reads g up to t + 3, and g[u] x up to u.
    float xs[kHalo + kSteps + kHalo], gs[kSteps + kHalo];
    load_steps(xs, x_row, x_at.t, t0, T_len);
#pragma unroll
    for (int i = 0; i < kSteps + kHalo; ++i) {
      const int64_t t = t0 + i;  // no gradient flows from outputs past the end
      gs[i] = t < T_len ? load_f32(dout_row[t * dout_at.t]) : 0.f;
    }
    if (silu) {
      SequenceCursor cursor(cu_seqlens, N, t0, T_len);
#pragma unroll
      for (int i = 0; i < kSteps + kHalo; ++i) {
        const int64_t t = t0 + i;
        if (t >= T_len) break;
        gs[i] *= scan::silu_grad(conv_pre(w4, b, xs + i, t, cursor.at(t).start));
      }
    }
    SequenceCursor cursor(cu_seqlens, N, t0, T_len);
#pragma unroll
    for (int i = 0; i < kSteps; ++i) {
      const int64_t t = t0 + i;
      if (t >= t1) break;
      const Bounds seq = cursor.at(t);
      float dxv = 0.f;  // the outputs t + 3 - j of t's own sequence read x[t]
#pragma unroll
      for (int j = 0; j < kTaps; ++j)
        dxv += w4[j] * (t + kHalo - j < seq.end ? gs[i + kHalo - j] : 0.f);
      dx_row[t * dx_at.t] = store_as<T>(dxv);
#pragma unroll
      for (int j = 0; j < kTaps; ++j)
        acc[j] += gs[i] * (t - kHalo + j >= seq.start ? xs[i + j] : 0.f);
      acc[kTaps] += gs[i];
    }
  }
#pragma unroll
  for (int j = 0; j < kPartial; ++j) warp_sums[warp][j][lane] = acc[j];
  __syncthreads();
  if (warp != 0 || !lane_active) return;
  const int64_t tiles = (T_len + kTile - 1) / kTile;
  float* p = partial + ((blk.b * tiles + blk.tile) * D + blk.d) * kPartial;
#pragma unroll
  for (int j = 0; j < kPartial; ++j) {
    float sum = 0.f;  // the warps' runs in step order
#pragma unroll
    for (int w = 0; w < kWarps; ++w) sum += warp_sums[w][j][lane];
    p[j] = sum;
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
  dispatch_cuda_float("causal_conv1d_fwd", args.dtype, [&](auto tag) {
    using T_ = typename decltype(tag)::type;
    auto* out = static_cast<T_*>(args.out);
    const auto* x = static_cast<const T_*>(args.x);
    const auto* weight = static_cast<const T_*>(args.weight);
    const auto* bias = static_cast<const T_*>(args.bias);
    const int32_t* cu_seqlens = args.seqs.cu_seqlens;
    const int N = int(args.seqs.count);
    if (args.channel_last) {
      constexpr int64_t tile = kFwdRuns * kWarps * kSteps;
      const unsigned grid =
          flat_grid("causal_conv1d_fwd", (D + kLanes - 1) / kLanes, (T + tile - 1) / tile, B);
      causal_conv1d_fwd_last_kernel<T_><<<grid, kLastThreads, 0, stream>>>(
          out, x, weight, bias, D, T, W, args.silu, cu_seqlens, N, args.x_at, args.out_at);
    } else {
      const unsigned grid = flat_grid("causal_conv1d_fwd", B * D, (T + kTile - 1) / kTile, 1);
      causal_conv1d_fwd_kernel<T_><<<grid, kThreads, 0, stream>>>(
          out, x, weight, bias, B * D, D, T, W, args.silu, cu_seqlens, N, args.x_at, args.out_at);
    }
  });
  LONGCTX_CHECK_LAUNCH();
}

void causal_conv1d_bwd(const Context& ctx, const CausalConv1dArgs& args) {
  const int64_t B = args.B, D = args.D, T = args.T;
  const int W = args.W;
  if (D == 0) return;
  cudaStream_t stream = state_of(ctx).stream;
  const int64_t tiles = (T + kTile - 1) / kTile;  // both layouts' backward tiles
  const int64_t M = B * tiles;                    // partials per channel
  Tensor partial =
      Tensor::empty({std::max<int64_t>(M, 1), D, kPartial}, DType::f32, ctx.device(), &ctx);
  dispatch_cuda_float("causal_conv1d_bwd", args.dtype, [&](auto tag) {
    using T_ = typename decltype(tag)::type;
    auto* dx = static_cast<T_*>(args.dx);
    const auto* dout = static_cast<const T_*>(args.dout);
    const auto* x = static_cast<const T_*>(args.x);
    const auto* weight = static_cast<const T_*>(args.weight);
    const auto* bias = static_cast<const T_*>(args.bias);
    const int32_t* cu_seqlens = args.seqs.cu_seqlens;
    const int N = int(args.seqs.count);
    if (M > 0 && args.channel_last) {
      causal_conv1d_bwd_last_kernel<T_>
          <<<flat_grid("causal_conv1d_bwd", (D + kLanes - 1) / kLanes, tiles, B), kLastThreads, 0,
             stream>>>(dx, partial.data_as<float>(), dout, x, weight, bias, D, T, W, args.silu,
                       cu_seqlens, N, args.x_at, args.dout_at, args.dx_at);
      LONGCTX_CHECK_LAUNCH();
    } else if (M > 0) {
      causal_conv1d_bwd_kernel<T_>
          <<<flat_grid("causal_conv1d_bwd", B * D, tiles, 1), kThreads, 0, stream>>>(
              dx, partial.data_as<float>(), dout, x, weight, bias, B * D, D, T, W, args.silu,
              cu_seqlens, N, args.x_at, args.dout_at, args.dx_at);
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
