// Device helpers shared by the scan-family kernels (linear_scan, selective_scan, ssd,
// causal_conv1d): activations, vectorised row loads/stores, the SM count, and a reverse
// (suffix) block scan built on cub::WarpScan with the one scan operator of scan_operator.h.
#pragma once

#include <cstdint>
#include <cub/warp/warp_scan.cuh>

#include "kernels/common/context_state.cuh"
#include "kernels/common/cuda_check.cuh"
#include "kernels/common/types.cuh"
#include "longctx/ops/scan_operator.h"

namespace longctx::cuda::scan {

using Pair = ScanPair<float>;

__device__ __forceinline__ float sigmoidf(float x) {
  return 1.f / (1.f + __expf(-x));
}
__device__ __forceinline__ float siluf(float x) {
  return x * sigmoidf(x);
}
// d silu(x) / dx = s (1 + x (1 - s)) with s = sigmoid(x).
__device__ __forceinline__ float silu_grad(float x) {
  const float s = sigmoidf(x);
  return s * (1.f + x * (1.f - s));
}
// softplus as torch.nn.functional.softplus (threshold 20): x for x > 20, else log1p(exp(x)).
__device__ __forceinline__ float softplusf(float x) {
  return x > 20.f ? x : log1pf(expf(x));
}

// The number of SMs of the context's device (launch sizing only).
inline int sm_count(const Context& ctx) {
  int sms = 0;
  LONGCTX_CUDA_CHECK(
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, state_of(ctx).device));
  return sms > 0 ? sms : 1;
}

inline bool aligned16(const void* p) {
  return p == nullptr || reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

// K consecutive elements of a row as f32: one or two 16-byte loads (8 or 4 bytes for short
// rows) when `vec` (the caller checked 16-byte alignment of the row base and that
// K * sizeof(T) divides the row length in bytes) and the K elements are all in range,
// else guarded scalar loads that read `fill` past `valid`.
template <class T, int K>
__device__ __forceinline__ void load_items(float (&out)[K], const T* p, int valid, bool vec,
                                           float fill = 0.f) {
  constexpr int kBytes = K * int(sizeof(T));
  if (vec && valid >= K && (kBytes % 16 == 0 || kBytes == 8 || kBytes == 4)) {
    union {
      T v[K];
      uint4 u16[(kBytes + 15) / 16];
      uint2 u8;
      unsigned u4;
    } tmp;
    if constexpr (kBytes % 16 == 0) {
#pragma unroll
      for (int i = 0; i < kBytes / 16; ++i) tmp.u16[i] = reinterpret_cast<const uint4*>(p)[i];
    } else if constexpr (kBytes == 8) {
      tmp.u8 = *reinterpret_cast<const uint2*>(p);
    } else {
      tmp.u4 = *reinterpret_cast<const unsigned*>(p);
    }
#pragma unroll
    for (int k = 0; k < K; ++k) out[k] = load_f32(tmp.v[k]);
  } else {
#pragma unroll
    for (int k = 0; k < K; ++k) out[k] = k < valid ? load_f32(p[k]) : fill;
  }
}

template <class T, int K>
__device__ __forceinline__ void store_items(T* p, const float (&in)[K], int valid, bool vec) {
  constexpr int kBytes = K * int(sizeof(T));
  if (vec && valid >= K && (kBytes % 16 == 0 || kBytes == 8 || kBytes == 4)) {
    union {
      T v[K];
      uint4 u16[(kBytes + 15) / 16];
      uint2 u8;
      unsigned u4;
    } tmp;
#pragma unroll
    for (int k = 0; k < K; ++k) tmp.v[k] = store_as<T>(in[k]);
    if constexpr (kBytes % 16 == 0) {
#pragma unroll
      for (int i = 0; i < kBytes / 16; ++i) reinterpret_cast<uint4*>(p)[i] = tmp.u16[i];
    } else if constexpr (kBytes == 8) {
      *reinterpret_cast<uint2*>(p) = tmp.u8;
    } else {
      *reinterpret_cast<unsigned*>(p) = tmp.u4;
    }
  } else {
#pragma unroll
    for (int k = 0; k < K; ++k)
      if (k < valid) p[k] = store_as<T>(in[k]);
  }
}

// A reverse (suffix) exclusive scan over a block whose threads hold K consecutive positions
// each (blocked arrangement: thread i holds positions i*K .. i*K+K-1). The scan runs from the
// last position to the first; out[k] is the fold of `carry` followed by every position after
// position (i*K+k), in reverse order, so that scan_apply(out[k], h) is the state entering
// position i*K+k from the right. `carry` (in shared memory) is updated by thread 0 to include the
// whole block. CUB has no reverse BlockScan, so this mirrors each warp's lanes with shuffles
// around cub::WarpScan, combines warp aggregates through shared memory, and folds items locally.
// Two __syncthreads(): the caller may reuse `storage` right after it returns.
template <int kThreads, int K>
struct BlockReverseScan {
  static constexpr int kWarps = kThreads / 32;
  static_assert(kThreads % 32 == 0, "whole warps");
  using WarpScan = cub::WarpScan<Pair>;
  struct Storage {
    typename WarpScan::TempStorage warp[kWarps];
    Pair warp_total[kWarps];
  };

  __device__ static void exclusive(Storage& storage, const Pair (&in)[K], Pair (&out)[K],
                                   Pair* carry) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    // Fold of this thread's items, last position first.
    Pair local = scan_identity<float>();
#pragma unroll
    for (int k = K - 1; k >= 0; --k) local = scan_combine(local, in[k]);
    // Mirror the lanes so that lane 31's items come first, scan, and mirror back.
    Pair mirrored;
    mirrored.a = __shfl_sync(0xffffffffu, local.a, 31 - lane);
    mirrored.b = __shfl_sync(0xffffffffu, local.b, 31 - lane);
    Pair excl, warp_total;
    WarpScan(storage.warp[warp])
        .ExclusiveScan(mirrored, excl, scan_identity<float>(), ScanCombine{}, warp_total);
    Pair lane_prefix;
    lane_prefix.a = __shfl_sync(0xffffffffu, excl.a, 31 - lane);
    lane_prefix.b = __shfl_sync(0xffffffffu, excl.b, 31 - lane);
    if (lane == 0) storage.warp_total[warp] = warp_total;
    __syncthreads();
    // The block prefix of this warp: the carry, then the warps after this one, last first.
    Pair prefix = *carry;
    for (int w = kWarps - 1; w > warp; --w) prefix = scan_combine(prefix, storage.warp_total[w]);
    Pair block_total = prefix;
    for (int w = warp; w >= 0; --w) block_total = scan_combine(block_total, storage.warp_total[w]);
    Pair running = scan_combine(prefix, lane_prefix);
#pragma unroll
    for (int k = K - 1; k >= 0; --k) {
      out[k] = running;
      running = scan_combine(running, in[k]);
    }
    __syncthreads();  // every thread has read *carry and warp_total
    if (threadIdx.x == 0) *carry = block_total;
  }
};

}  // namespace longctx::cuda::scan
