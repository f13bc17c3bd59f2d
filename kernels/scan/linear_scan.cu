// linear_scan on CUDA: h_t = a_t * h_{t-1} + b_t over (B, T, D) with D contiguous.
//
// Layout-aware design. A block owns 32 channels (one per lane, so every load and store of a
// warp is one contiguous run over D) and walks the time axis in tiles of kTile = kWarps * kSteps
// steps: warp w holds steps w*kSteps .. w*kSteps+kSteps-1 of the tile in registers, folds them
// with scan_combine, the warps' folds are combined through shared memory (a tiny column scan of
// kWarps pairs per lane), and each thread then replays its steps from the state entering them.
// The tile's total carries the state to the next tile. Every element is read once and written
// once, which is the whole cost of this op.
//
// When B * ceil(D / 32) blocks are too few to keep the GPU's memory system busy, the sequence is
// split into S segments (a chunked scan, not a decoupled look-back: no inter-block flags or
// spinning, and bitwise-reproducible): a summary pass writes each segment's fold (a, b) (reading
// a and b once more), and the output pass starts each segment from h0 folded through the
// summaries of the segments before it. Backward is the same scan in reverse time over the pairs
// (a_{t+1}, dout_t) (a_T := 1, carry-in dlast_state): dh_t = a_{t+1} dh_{t+1} + dout_t, then
// db_t = dh_t, da_t = dh_t * h_{t-1} with h_{t-1} read from the saved `out` (h0 at t = 0), and
// dh0 = a_0 * dh_0.
#include <algorithm>

#include "kernels/scan/scan_common.cuh"
#include "src/ops/linear_scan.h"

namespace longctx::cuda {

namespace {

using scan::Pair;

constexpr int kLanes = 32;  // channels per block
constexpr int kWarps = 8;   // warps per block
constexpr int kSteps = 8;   // steps per thread per tile, in registers
constexpr int kTile = kWarps * kSteps;
constexpr int kThreads = kLanes * kWarps;

// Cross-warp step of a tile. `local` is the fold of this thread's kSteps steps; returns the fold
// of the steps held by the warps before this one, and sets `total` to the fold of the tile.
__device__ __forceinline__ Pair tile_exclusive(const Pair& local, Pair* shared, Pair& total) {
  const int lane = threadIdx.x % kLanes, warp = threadIdx.x / kLanes;
  shared[warp * kLanes + lane] = local;
  __syncthreads();
  Pair prefix = scan_identity<float>(), before = prefix;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    if (w == warp) before = prefix;
    prefix = scan_combine(prefix, shared[w * kLanes + lane]);
  }
  total = prefix;
  __syncthreads();  // `shared` is rewritten by the next tile
  return before;
}

// Sizes of one launch: T steps, D channels, S segments of seg_len scan positions.
struct Dims {
  int64_t T, D;
  int S;
  int64_t seg_len;
};

// Forward. kSummary: write each segment's fold to summary (B, S, D) instead of outputs.
// Grid: (ceil(D / 32), segments, B).
template <class T, bool kSummary>
__global__ void __launch_bounds__(kThreads)
    linear_scan_fwd_kernel(T* out, float* last_state, Pair* summary, const T* a, const T* b,
                           const float* h0, Dims n) {
  __shared__ Pair shared[kWarps * kLanes];
  const int lane = threadIdx.x % kLanes, warp = threadIdx.x / kLanes;
  const int64_t d = int64_t(blockIdx.x) * kLanes + lane, bi = blockIdx.z;
  const int s = blockIdx.y;
  const bool active = d < n.D;
  const int64_t j_begin = s * n.seg_len, j_end = std::min(n.T, j_begin + n.seg_len);
  const int64_t base = bi * n.T * n.D + d;  // element (bi, 0, d)

  float h = 0.f;
  Pair carry = scan_identity<float>();
  if (!kSummary && active) {
    if (h0) h = h0[bi * n.D + d];
    for (int p = 0; p < s; ++p) h = scan_apply(summary[(bi * n.S + p) * n.D + d], h);
  }
  for (int64_t j0 = j_begin; j0 < j_end; j0 += kTile) {
    const int64_t t0 = j0 + warp * kSteps;
    Pair step[kSteps];
    Pair local = scan_identity<float>();
#pragma unroll
    for (int k = 0; k < kSteps; ++k) {
      const int64_t t = t0 + k;
      step[k] = scan_identity<float>();
      if (active && t < j_end) step[k] = {load_f32(a[base + t * n.D]), load_f32(b[base + t * n.D])};
      local = scan_combine(local, step[k]);
    }
    Pair total;
    const Pair before = tile_exclusive(local, shared, total);
    if constexpr (kSummary) {
      carry = scan_combine(carry, total);
    } else {
      float hk = scan_apply(before, h);
#pragma unroll
      for (int k = 0; k < kSteps; ++k) {
        hk = scan_apply(step[k], hk);
        if (active && t0 + k < j_end) out[base + (t0 + k) * n.D] = store_as<T>(hk);
      }
      h = scan_apply(total, h);
    }
  }
  if (!active) return;
  if constexpr (kSummary) {
    summary[(bi * n.S + s) * n.D + d] = carry;
  } else if (s == n.S - 1) {
    last_state[bi * n.D + d] = h;
  }
}

// Backward: scan position j is time t = T - 1 - j. kSummary as in the forward.
template <class T, bool kSummary>
__global__ void __launch_bounds__(kThreads)
    linear_scan_bwd_kernel(T* da, T* db, float* dh0, Pair* summary, const T* dout,
                           const float* dlast_state, const T* a, const T* out, const float* h0,
                           Dims n) {
  __shared__ Pair shared[kWarps * kLanes];
  const int lane = threadIdx.x % kLanes, warp = threadIdx.x / kLanes;
  const int64_t d = int64_t(blockIdx.x) * kLanes + lane, bi = blockIdx.z;
  const int s = blockIdx.y;
  const bool active = d < n.D;
  const int64_t j_begin = s * n.seg_len, j_end = std::min(n.T, j_begin + n.seg_len);
  const int64_t base = bi * n.T * n.D + d;

  float g = 0.f;  // dh of the step after the current one, starting from dlast_state
  Pair carry = scan_identity<float>();
  if (!kSummary && active) {
    if (dlast_state) g = dlast_state[bi * n.D + d];
    for (int p = 0; p < s; ++p) g = scan_apply(summary[(bi * n.S + p) * n.D + d], g);
  }
  for (int64_t j0 = j_begin; j0 < j_end; j0 += kTile) {
    const int64_t jt = j0 + warp * kSteps;
    Pair step[kSteps];
    Pair local = scan_identity<float>();
#pragma unroll
    for (int k = 0; k < kSteps; ++k) {
      const int64_t t = n.T - 1 - (jt + k);
      step[k] = scan_identity<float>();
      if (active && jt + k < j_end) {
        const float gate = t + 1 < n.T ? load_f32(a[base + (t + 1) * n.D]) : 1.f;
        step[k] = {gate, load_f32(dout[base + t * n.D])};
      }
      local = scan_combine(local, step[k]);
    }
    Pair total;
    const Pair before = tile_exclusive(local, shared, total);
    if constexpr (kSummary) {
      carry = scan_combine(carry, total);
    } else {
      float gk = scan_apply(before, g);
#pragma unroll
      for (int k = 0; k < kSteps; ++k) {
        gk = scan_apply(step[k], gk);
        if (active && jt + k < j_end) {
          const int64_t t = n.T - 1 - (jt + k);
          const float h_prev =
              t > 0 ? load_f32(out[base + (t - 1) * n.D]) : (h0 ? h0[bi * n.D + d] : 0.f);
          db[base + t * n.D] = store_as<T>(gk);
          da[base + t * n.D] = store_as<T>(gk * h_prev);
        }
      }
      g = scan_apply(total, g);
    }
  }
  if (!active) return;
  if constexpr (kSummary) {
    summary[(bi * n.S + s) * n.D + d] = carry;
  } else if (s == n.S - 1 && dh0) {
    dh0[bi * n.D + d] = load_f32(a[base]) * g;  // g is dh_0 here
  }
}

// Splits the scan into segments when B * ceil(D / 32) blocks alone would leave SMs idle. By
// Little's law one 256-thread block per SM with 16 loads in flight per thread already covers the
// H100's bandwidth-latency product (~3.3 TB/s x ~600 ns ~ 15 KB per SM), so the target is two
// blocks per SM; a segment is at least 4 tiles so the summary pass stays a small overhead.
// (An estimate from the hardware numbers; to be replaced by a measurement on the GPU.)
Dims plan(const Context& ctx, int64_t B, int64_t T, int64_t D) {
  const int64_t blocks = B * ((D + kLanes - 1) / kLanes);
  const int64_t target = 2 * int64_t(scan::sm_count(ctx));
  const int64_t max_segments = std::max<int64_t>(1, (T + 4 * kTile - 1) / (4 * kTile));
  int64_t S = std::min<int64_t>(max_segments, std::max<int64_t>(1, (target + blocks - 1) / blocks));
  S = std::min<int64_t>(S, 65535);
  int64_t seg_len = (T + S - 1) / S;
  seg_len = std::max<int64_t>(kTile, (seg_len + kTile - 1) / kTile * kTile);
  S = std::max<int64_t>(1, (T + seg_len - 1) / seg_len);
  return {T, D, int(S), seg_len};
}

}  // namespace

void linear_scan_fwd(const Context& ctx, const LinearScanArgs& args) {
  const int64_t B = args.B, T = args.T, D = args.D;
  if (B == 0 || D == 0) return;
  cudaStream_t stream = state_of(ctx).stream;
  const auto* h0_ptr = static_cast<const float*>(args.h0);
  if (T == 0) {  // h_T = h0
    if (h0_ptr)
      LONGCTX_CUDA_CHECK(cudaMemcpyAsync(args.last_state, h0_ptr, size_t(B * D) * sizeof(float),
                                         cudaMemcpyDeviceToDevice, stream));
    else
      LONGCTX_CUDA_CHECK(
          cudaMemsetAsync(args.last_state, 0, size_t(B * D) * sizeof(float), stream));
    return;
  }
  const Dims n = plan(ctx, B, T, D);
  Tensor summary;
  if (n.S > 1) summary = Tensor::empty({B, n.S, D, 2}, DType::f32, ctx.device(), &ctx);
  Pair* summary_ptr = n.S > 1 ? static_cast<Pair*>(summary.data()) : nullptr;
  const unsigned lane_blocks = unsigned((D + kLanes - 1) / kLanes);
  dispatch_cuda_float("linear_scan_fwd", args.dtype, [&](auto tag) {
    using T_ = typename decltype(tag)::type;
    const T_* a_ptr = static_cast<const T_*>(args.a);
    const T_* b_ptr = static_cast<const T_*>(args.b);
    if (n.S > 1) {
      linear_scan_fwd_kernel<T_, true>
          <<<dim3(lane_blocks, n.S - 1, unsigned(B)), kThreads, 0, stream>>>(
              nullptr, nullptr, summary_ptr, a_ptr, b_ptr, h0_ptr, n);
      LONGCTX_CHECK_LAUNCH();
    }
    linear_scan_fwd_kernel<T_, false><<<dim3(lane_blocks, n.S, unsigned(B)), kThreads, 0, stream>>>(
        static_cast<T_*>(args.out), static_cast<float*>(args.last_state), summary_ptr, a_ptr, b_ptr,
        h0_ptr, n);
    LONGCTX_CHECK_LAUNCH();
  });
}

void linear_scan_bwd(const Context& ctx, const LinearScanArgs& args) {
  const int64_t B = args.B, T = args.T, D = args.D;
  if (B == 0 || D == 0) return;
  cudaStream_t stream = state_of(ctx).stream;
  const auto* dlast_ptr = static_cast<const float*>(args.dlast_state);
  auto* dh0_ptr = static_cast<float*>(args.dh0);
  if (T == 0) {  // dh0 = dlast_state
    if (dh0_ptr && dlast_ptr)
      LONGCTX_CUDA_CHECK(cudaMemcpyAsync(dh0_ptr, dlast_ptr, size_t(B * D) * sizeof(float),
                                         cudaMemcpyDeviceToDevice, stream));
    else if (dh0_ptr)
      LONGCTX_CUDA_CHECK(cudaMemsetAsync(dh0_ptr, 0, size_t(B * D) * sizeof(float), stream));
    return;
  }
  const Dims n = plan(ctx, B, T, D);
  Tensor summary;
  if (n.S > 1) summary = Tensor::empty({B, n.S, D, 2}, DType::f32, ctx.device(), &ctx);
  Pair* summary_ptr = n.S > 1 ? static_cast<Pair*>(summary.data()) : nullptr;
  const auto* h0_ptr = static_cast<const float*>(args.h0);
  const unsigned lane_blocks = unsigned((D + kLanes - 1) / kLanes);
  dispatch_cuda_float("linear_scan_bwd", args.dtype, [&](auto tag) {
    using T_ = typename decltype(tag)::type;
    const T_* dout_ptr = static_cast<const T_*>(args.dout);
    const T_* a_ptr = static_cast<const T_*>(args.a);
    const T_* out_ptr = static_cast<const T_*>(args.out);
    if (n.S > 1) {
      linear_scan_bwd_kernel<T_, true>
          <<<dim3(lane_blocks, n.S - 1, unsigned(B)), kThreads, 0, stream>>>(
              nullptr, nullptr, nullptr, summary_ptr, dout_ptr, dlast_ptr, a_ptr, out_ptr, h0_ptr,
              n);
      LONGCTX_CHECK_LAUNCH();
    }
    linear_scan_bwd_kernel<T_, false><<<dim3(lane_blocks, n.S, unsigned(B)), kThreads, 0, stream>>>(
        static_cast<T_*>(args.da), static_cast<T_*>(args.db), dh0_ptr, summary_ptr, dout_ptr,
        dlast_ptr, a_ptr, out_ptr, h0_ptr, n);
    LONGCTX_CHECK_LAUNCH();
  });
}

}  // namespace longctx::cuda
