// How a context parallel group splits every sequence along T: which positions each rank's slice
// holds (include/longctx/dist/context_parallel.h's ops, Model::set_context_parallel, the
// training driver).
#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace longctx::dist {

// Contiguous slices are the simplest, but causal attention on them is unbalanced (rank r attends
// r + 1 of n blocks); zigzag balances it (measured in context_parallel.h, ring attention). Every
// CP op takes both: in zigzag the scans' state and causal_conv1d's halo pass along the chain of
// the 2n chunks — chunk c's from chunk c - 1, wherever it lies — instead of the n slices.
// Packed batches (cu_seqlens) need the contiguous layout.
enum class CpLayout {
  contiguous,  // rank r holds the r-th contiguous slice (any lengths, in rank order)
  zigzag,      // rank r holds chunks r and 2n - 1 - r of 2n (zigzag_chunks)
};

// A range [begin, end) of positions of the whole sequence.
struct SeqRange {
  int64_t begin = 0, end = 0;
  int64_t length() const { return end - begin; }
};

// The most ranks a sequence is split over (the bounds below are exact up to it).
constexpr int kMaxRanks = 1 << 30;

// The two chunks of a T-position sequence that rank `rank` of `n` holds in the zigzag layout, in
// the order they sit in its slice: [T * r / (2n), T * (r + 1) / (2n)) then
// [T * (2n - 1 - r) / (2n), T * (2n - r) / (2n)).
std::array<SeqRange, 2> zigzag_chunks(int64_t T, int n, int rank);

// The ranges of a T-position sequence that rank `rank` of `n` holds in `layout`, in the order
// they sit in its slice: contiguous, the one range [T * r / n, T * (r + 1) / n) (the even split
// the drivers use); zigzag, zigzag_chunks. Both bounds are exact for every T >= 0 (computed
// without forming T * r).
std::vector<SeqRange> slice_ranges(int64_t T, int n, int rank, CpLayout layout);

}  // namespace longctx::dist
