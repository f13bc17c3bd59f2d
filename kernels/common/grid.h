// Launch grids over several dimensions, laid out on gridDim.x alone.
//
// CUDA caps gridDim.y and gridDim.z at 65535 blocks but gridDim.x at 2^31 - 1. A product such as
// B * num_splits (decode: 256 splits at B = 256) or B on y or z passes that cap at sizes users
// run, and the launch fails. So a grid over (n0, n1, n2) is one flat x dimension of n0 * n1 * n2
// blocks with n0 fastest, which is the order CUDA numbers the blocks of a 3-D grid (the schedule
// is unchanged), and the kernel recovers its indices with unflatten().
//
// Plain C++ (no CUDA headers), so the host tests check it.
#pragma once

#include <cstdint>

#include "longctx/error.h"

#if defined(__CUDACC__)
#define LONGCTX_GRID_FN __host__ __device__ inline
#else
#define LONGCTX_GRID_FN inline
#endif

namespace longctx::cuda {

constexpr int64_t kMaxGridX = 2147483647;  // gridDim.x limit (compute capability >= 3.0)

struct GridIndex {
  int i0, i1, i2;  // i0 in [0, n0) fastest, i1 in [0, n1), i2 the rest
};

// Indices of flat block number `block` in a grid over (n0, n1, n2).
LONGCTX_GRID_FN GridIndex unflatten(unsigned block, unsigned n0, unsigned n1) {
  const unsigned rest = block / n0;
  return {int(block % n0), int(rest % n1), int(rest / n1)};
}

// The same for a grid over (n0, n1): i2 = 0.
LONGCTX_GRID_FN GridIndex unflatten(unsigned block, unsigned n0) {
  return {int(block % n0), int(block / n0), 0};
}

// gridDim.x for a grid over (n0, n1, n2), each >= 1; an Error naming `op` when the product
// exceeds what gridDim.x allows.
inline unsigned flat_grid(const char* op, int64_t n0, int64_t n1, int64_t n2) {
  LONGCTX_CHECK(n0 >= 1 && n1 >= 1 && n2 >= 1, op, ": a launch grid needs at least one block per ",
                "dimension, got ", n0, " x ", n1, " x ", n2, " (an empty launch must be skipped)");
  const bool fits = n0 <= kMaxGridX && n1 <= kMaxGridX / n0 && n2 <= kMaxGridX / (n0 * n1);
  LONGCTX_CHECK(fits, op, ": the launch needs ", n0, " x ", n1, " x ", n2,
                " blocks, more than CUDA's grid limit of 2^31 - 1; split the call (e.g. over the "
                "batch)");
  return unsigned(n0 * n1 * n2);
}

}  // namespace longctx::cuda
