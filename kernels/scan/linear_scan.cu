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
// Every sequence of the batch (the B rows of a rectangular batch, or the N sequences of a packed
// one: cu_seqlens) is scanned from its own h0, in segments aligned at its first step.
// When the sequences' ceil(D / 32) blocks are too few to keep the GPU's memory system busy, a
// sequence is split into segments (a chunked scan, not a decoupled look-back: no inter-block flags
// or spinning, and bitwise-reproducible): a summary pass writes each segment's fold (a, b) (reading
// a and b once more), and the output pass starts each segment from h0 folded through the
// summaries of the segments before it. Backward is the same scan in reverse time over the pairs
// (a_{t+1}, dout_t) (a_T := 1, carry-in dlast_state): dh_t = a_{t+1} dh_{t+1} + dout_t, then
// db_t = dh_t, da_t = dh_t * h_{t-1} with h_{t-1} read from the saved `out` (h0 at t = 0), and
// dh0 = a_0 * dh_0.
#include <algorithm>

#include <vector>

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

// Sizes of one launch. The work items are (sequence, segment) pairs: a sequence of `len` steps
// has max(1, ceil(len / seg_len)) segments (one for an empty sequence, which writes its state).
// Rectangular batches index them as s * S + p; packed ones through a table of (s, p).
struct Dims {
  int64_t T, D;               // T: each sequence's length in a rectangular batch
  int64_t seg_len;            // scan positions per segment, a multiple of kTile
  int S;                      // segments per sequence (rectangular)
  const int32_t* cu_seqlens;  // (N + 1) on the device; nullptr: rectangular
  const int2* work;           // (items) of (sequence, segment) when packed
};

struct Item {
  int64_t s, p;                  // sequence, segment
  int64_t begin, len, segments;  // the sequence's first position, length, segment count
};

__device__ __forceinline__ Item item_of(const Dims& n, int64_t w) {
  Item it;
  if (n.cu_seqlens) {
    it.s = n.work[w].x;
    it.p = n.work[w].y;
    it.begin = n.cu_seqlens[it.s];
    it.len = n.cu_seqlens[it.s + 1] - it.begin;
  } else {
    it.s = w / n.S;
    it.p = w % n.S;
    it.begin = it.s * n.T;
    it.len = n.T;
  }
  it.segments = max(int64_t(1), (it.len + n.seg_len - 1) / n.seg_len);
  return it;
}

// Forward. kSummary: write each segment's fold to summary (items, D) instead of outputs; the
// last segment of each sequence has none. Grid: (items, ceil(D / 32)).
template <class T, bool kSummary>
__global__ void __launch_bounds__(kThreads)
    linear_scan_fwd_kernel(T* out, float* last_state, Pair* summary, const T* a, const T* b,
                           const float* h0, Dims n) {
  __shared__ Pair shared[kWarps * kLanes];
  const int lane = threadIdx.x % kLanes, warp = threadIdx.x / kLanes;
  const int64_t w = blockIdx.x, d = int64_t(blockIdx.y) * kLanes + lane;
  const Item it = item_of(n, w);
  if (kSummary && it.p == it.segments - 1) return;
  const bool active = d < n.D;
  const int64_t j_begin = it.p * n.seg_len, j_end = min(it.len, j_begin + n.seg_len);
  const int64_t base = it.begin * n.D + d;  // element (the sequence's step 0, d)

  float h = 0.f;
  Pair carry = scan_identity<float>();
  if (!kSummary && active) {
    if (h0) h = h0[it.s * n.D + d];
    for (int64_t q = 0; q < it.p; ++q) h = scan_apply(summary[(w - it.p + q) * n.D + d], h);
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
    summary[w * n.D + d] = carry;
  } else if (it.p == it.segments - 1) {
    last_state[it.s * n.D + d] = h;
  }
}

// Backward: scan position j is the sequence's step t = len - 1 - j. kSummary as in the forward.
template <class T, bool kSummary>
__global__ void __launch_bounds__(kThreads)
    linear_scan_bwd_kernel(T* da, T* db, float* dh0, Pair* summary, const T* dout,
                           const float* dlast_state, const T* a, const T* out, const float* h0,
                           Dims n) {
  __shared__ Pair shared[kWarps * kLanes];
  const int lane = threadIdx.x % kLanes, warp = threadIdx.x / kLanes;
  const int64_t w = blockIdx.x, d = int64_t(blockIdx.y) * kLanes + lane;
  const Item it = item_of(n, w);
  if (kSummary && it.p == it.segments - 1) return;
  const bool active = d < n.D;
  const int64_t j_begin = it.p * n.seg_len, j_end = min(it.len, j_begin + n.seg_len);
  const int64_t base = it.begin * n.D + d;

  float g = 0.f;  // dh of the step after the current one, starting from dlast_state
  Pair carry = scan_identity<float>();
  if (!kSummary && active) {
    if (dlast_state) g = dlast_state[it.s * n.D + d];
    for (int64_t q = 0; q < it.p; ++q) g = scan_apply(summary[(w - it.p + q) * n.D + d], g);
  }
  for (int64_t j0 = j_begin; j0 < j_end; j0 += kTile) {
    const int64_t jt = j0 + warp * kSteps;
    Pair step[kSteps];
    Pair local = scan_identity<float>();
#pragma unroll
    for (int k = 0; k < kSteps; ++k) {
      const int64_t t = it.len - 1 - (jt + k);
      step[k] = scan_identity<float>();
      if (active && jt + k < j_end) {
        const float gate = t + 1 < it.len ? load_f32(a[base + (t + 1) * n.D]) : 1.f;
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
          const int64_t t = it.len - 1 - (jt + k);
          const float h_prev =
              t > 0 ? load_f32(out[base + (t - 1) * n.D]) : (h0 ? h0[it.s * n.D + d] : 0.f);
          db[base + t * n.D] = store_as<T>(gk);
          da[base + t * n.D] = store_as<T>(gk * h_prev);
        }
      }
      g = scan_apply(total, g);
    }
  }
  if (!active) return;
  if constexpr (kSummary) {
    summary[w * n.D + d] = carry;
  } else if (it.p == it.segments - 1 && dh0) {
    // g is dh_0 here; h_{-1} = h0 reaches h_0 through a_0 (an empty sequence passes it through).
    dh0[it.s * n.D + d] = it.len > 0 ? load_f32(a[base]) * g : g;
  }
}

// Segment length: in deterministic mode a fixed kDeterministicSegment positions from each
// sequence's start, so a sequence is split the same way alone, padded or packed (batch
// invariance). Otherwise long sequences are split only when the sequences' ceil(D / 32) blocks
// alone would leave SMs idle: by Little's law one 256-thread block per SM with 16 loads in flight
// per thread already covers the H100's bandwidth-latency product (~3.3 TB/s x ~600 ns ~ 15 KB per
// SM), so the target is two blocks per SM; a segment is at least 4 tiles so the summary pass
// stays a small overhead. (An estimate from the hardware numbers; to be replaced by a
// measurement on the GPU.)
constexpr int64_t kDeterministicSegment = 32 * kTile;

int64_t segment_length(const Context& ctx, const Sequences& seqs, int64_t T_total, int64_t D) {
  if (ctx.deterministic()) return kDeterministicSegment;
  const int64_t blocks = seqs.count * ((D + kLanes - 1) / kLanes);
  const int64_t target = 2 * int64_t(scan::sm_count(ctx));
  const int64_t splits = std::max<int64_t>(1, (target + blocks - 1) / std::max<int64_t>(blocks, 1));
  const int64_t longest = seqs.packed() ? T_total : seqs.T;
  const int64_t len = (longest + splits - 1) / splits;
  return std::max<int64_t>(4 * kTile, (len + kTile - 1) / kTile * kTile);
}

// The launch shape and work items of one call; `work` keeps the packed table on the device.
Dims plan(const Context& ctx, const LinearScanArgs& args, Tensor& work, int64_t& items,
          bool& any_split) {
  const Sequences& seqs = args.seqs;
  Dims n{};
  n.T = seqs.T;
  n.D = args.D;
  n.seg_len = segment_length(ctx, seqs, args.T, args.D);
  auto segments = [&](int64_t len) {
    return std::max<int64_t>(1, (len + n.seg_len - 1) / n.seg_len);
  };
  if (!seqs.packed()) {
    n.S = int(segments(seqs.T));
    items = seqs.count * n.S;
    any_split = n.S > 1;
    return n;
  }
  std::vector<int32_t> table;
  any_split = false;
  for (int64_t s = 0; s < seqs.count; ++s) {
    const int64_t S = segments(seqs.length(s));
    any_split = any_split || S > 1;
    for (int64_t p = 0; p < S; ++p) {
      table.push_back(int32_t(s));
      table.push_back(int32_t(p));
    }
  }
  items = int64_t(table.size()) / 2;
  Tensor host = Tensor::empty({items, 2}, DType::i32);
  std::copy(table.begin(), table.end(), host.data_as<int32_t>());
  work = host.to(ctx.device(), &ctx);
  n.cu_seqlens = seqs.cu_seqlens;
  n.work = static_cast<const int2*>(work.data());
  return n;
}

}  // namespace

void linear_scan_fwd(const Context& ctx, const LinearScanArgs& args) {
  if (args.seqs.count == 0 || args.D == 0) return;
  cudaStream_t stream = state_of(ctx).stream;
  Tensor work, summary;
  int64_t items = 0;
  bool any_split = false;
  const Dims n = plan(ctx, args, work, items, any_split);
  if (any_split) summary = Tensor::empty({items, args.D, 2}, DType::f32, ctx.device(), &ctx);
  Pair* summary_ptr = any_split ? static_cast<Pair*>(summary.data()) : nullptr;
  const dim3 grid(unsigned(items), unsigned((args.D + kLanes - 1) / kLanes));
  const auto* h0 = static_cast<const float*>(args.h0);
  dispatch_cuda_float("linear_scan_fwd", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* a = static_cast<const T*>(args.a);
    const T* b = static_cast<const T*>(args.b);
    if (any_split) {
      linear_scan_fwd_kernel<T, true>
          <<<grid, kThreads, 0, stream>>>(nullptr, nullptr, summary_ptr, a, b, h0, n);
      LONGCTX_CHECK_LAUNCH();
    }
    linear_scan_fwd_kernel<T, false><<<grid, kThreads, 0, stream>>>(
        static_cast<T*>(args.out), static_cast<float*>(args.last_state), summary_ptr, a, b, h0, n);
    LONGCTX_CHECK_LAUNCH();
  });
}

void linear_scan_bwd(const Context& ctx, const LinearScanArgs& args) {
  if (args.seqs.count == 0 || args.D == 0) return;
  cudaStream_t stream = state_of(ctx).stream;
  Tensor work, summary;
  int64_t items = 0;
  bool any_split = false;
  const Dims n = plan(ctx, args, work, items, any_split);
  if (any_split) summary = Tensor::empty({items, args.D, 2}, DType::f32, ctx.device(), &ctx);
  Pair* summary_ptr = any_split ? static_cast<Pair*>(summary.data()) : nullptr;
  const dim3 grid(unsigned(items), unsigned((args.D + kLanes - 1) / kLanes));
  const auto* dlast = static_cast<const float*>(args.dlast_state);
  const auto* h0 = static_cast<const float*>(args.h0);
  dispatch_cuda_float("linear_scan_bwd", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* dout = static_cast<const T*>(args.dout);
    const T* a = static_cast<const T*>(args.a);
    const T* out = static_cast<const T*>(args.out);
    if (any_split) {
      linear_scan_bwd_kernel<T, true><<<grid, kThreads, 0, stream>>>(
          nullptr, nullptr, nullptr, summary_ptr, dout, dlast, a, out, h0, n);
      LONGCTX_CHECK_LAUNCH();
    }
    linear_scan_bwd_kernel<T, false><<<grid, kThreads, 0, stream>>>(
        static_cast<T*>(args.da), static_cast<T*>(args.db), static_cast<float*>(args.dh0),
        summary_ptr, dout, dlast, a, out, h0, n);
    LONGCTX_CHECK_LAUNCH();
  });
}

}  // namespace longctx::cuda
