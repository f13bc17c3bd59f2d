// A reduction over rows split into chunks: each chunk sums its rows in order into a partial, and
// the partials are added in chunk order. The split depends on the row count alone, never on the
// device, so the result is bitwise the same on every GPU and every run (no atomics).
//
// Plain C++ (no CUDA headers), so the host tests check it.
#pragma once

#include <algorithm>
#include <cstdint>

namespace longctx::cuda {

struct RowChunks {
  int64_t rows_per_chunk;  // >= min_rows (>= 1)
  int64_t chunks;          // ceil(rows / rows_per_chunk) <= max_chunks; 0 when rows == 0
};

// At most max_chunks chunks of at least min_rows rows each (the last may be shorter).
inline RowChunks row_chunks(int64_t rows, int64_t max_chunks, int64_t min_rows) {
  const int64_t per = std::max<int64_t>({1, min_rows, (rows + max_chunks - 1) / max_chunks});
  return {per, (rows + per - 1) / per};
}

}  // namespace longctx::cuda
