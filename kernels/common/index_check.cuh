// Out-of-range indices (embedding tokens, cross_entropy targets) found on the device and reported
// at the context's next synchronisation, so that the ops never stop the stream to check.
//
// The kernel that reads the indices calls report_bad_index(), an atomicMin into the context's
// device flag of (position << 32 | value): the smallest bad position wins, its value rides along.
// The launcher then calls commit_index_check() (runtime.cu): a one-thread kernel, ordered after
// the first on the stream, moves a set flag into the context's record (host-mapped memory, so
// reading it costs no copy) unless an earlier call's error is already there, and resets the flag.
// check_deferred_errors() (runtime.h) raises the recorded error as an Error after a
// synchronisation: Context::synchronize() and every copy between the context's device and the
// host. Positions are below 2^31: the ops validate that (src/ops/embedding.cpp, cross_entropy.cpp).
#pragma once

#include <cstdint>

#include "kernels/common/context_state.cuh"

namespace longctx::cuda {

// Which op and argument a record is about (the message table is in runtime.cu).
enum class IndexCheck : int { embedding_fwd_tokens, embedding_bwd_tokens, cross_entropy_targets };

__device__ __forceinline__ void report_bad_index(unsigned long long* flag, int64_t position,
                                                 int32_t value) {
  atomicMin(flag, (static_cast<unsigned long long>(position) << 32) | uint32_t(value));
}

// After the kernel(s) that called report_bad_index on state.index_flag: records a bad index for
// the next synchronisation. `bound` is V; `extra` the op's extra valid value (ignore_index).
void commit_index_check(Context::CudaState& state, IndexCheck check, int64_t bound, int extra);

}  // namespace longctx::cuda
