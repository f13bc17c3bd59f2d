// Packed variable-length batches on the device (see src/ops/varlen.h): which sequence holds a
// position.
#pragma once

#include <cstdint>

namespace longctx::cuda {

// The sequence n of a packed batch of N >= 1 sequences that holds position t (0 <= t < T):
// cu_seqlens[n] <= t < cu_seqlens[n + 1]. A binary search over the N + 1 boundaries; empty
// sequences (equal boundaries) are never returned.
__device__ __forceinline__ int sequence_of(const int32_t* cu_seqlens, int N, int64_t t) {
  int lo = 0, hi = N;  // cu_seqlens[lo] <= t < cu_seqlens[hi]
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (cu_seqlens[mid] <= t)
      lo = mid;
    else
      hi = mid;
  }
  return lo;
}

}  // namespace longctx::cuda
