// Packed variable-length batches, shared by every sequence op.
//
// A packed batch has batch dimension 1 and N sequences concatenated along T; cu_seqlens, i32
// (N + 1), gives sequence n the positions [cu_seqlens[n], cu_seqlens[n + 1]): 0 first,
// nondecreasing (zero-length sequences allowed), T last. Masks and recurrences apply within a
// sequence, and state tensors have N in place of B. A rectangular (B, T) batch is the same thing
// with N = B sequences of length T each, which is how the backends see both.
#pragma once

#include <cstdint>
#include <vector>

#include "longctx/context.h"

namespace longctx {

// The sequences of one call, rectangular or packed; host-side (both backends schedule from it).
struct Sequences {
  int64_t count = 0;                    // N (packed) or B (rectangular)
  int64_t T = 0;                        // the length of each sequence of a rectangular batch
  const int32_t* cu_seqlens = nullptr;  // on the op's device, (count + 1); nullptr: rectangular
  const int32_t* cu_seqlens_host = nullptr;  // the same values on the host

  bool packed() const { return cu_seqlens != nullptr; }
  int64_t begin(int64_t s) const { return packed() ? cu_seqlens_host[s] : s * T; }
  int64_t length(int64_t s) const {
    return packed() ? cu_seqlens_host[s + 1] - cu_seqlens_host[s] : T;
  }
};

// Checks `cu_seqlens` (argument `name` of `op`) against a packed batch of T positions: i32, one
// dimension of N + 1 >= 1 entries, on the context's device, 0 first, nondecreasing, T last.
// Returns its values on the host (a copy from the device on CUDA: one small synchronous transfer).
std::vector<int32_t> check_cu_seqlens(const Context& ctx, const char* op, const char* name,
                                      const Tensor& cu_seqlens, int64_t T);

// The Sequences of a call: packed when `cu_seqlens` is given (with `host` its checked values,
// which must outlive the call), else `B` rectangular sequences of length `T`.
Sequences sequences_of(const Tensor& cu_seqlens, const std::vector<int32_t>& host, int64_t B,
                       int64_t T);

}  // namespace longctx
