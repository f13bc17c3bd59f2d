// What the communicator backends share: their factories (each built only when its library is
// found) and the checks every collective makes of its own arguments.
#pragma once

#include <memory>
#include <string>

#include "longctx/dist/communicator.h"

namespace longctx::dist {

#if LONGCTX_WITH_MPI
std::unique_ptr<Communicator> make_mpi_communicator();
#endif
#if LONGCTX_WITH_NCCL
std::unique_ptr<Communicator> make_nccl_communicator(const Context& ctx);
// NCCL over the ranks of `mpi` (its bootstrap, barrier and abort).
std::unique_ptr<Communicator> make_nccl_communicator(const Context& ctx,
                                                     std::unique_ptr<Communicator> mpi);
#endif

// `t` is defined, contiguous and on a device the communicator accepts; names the collective,
// the argument and what it got.
void check_collective_tensor(const Communicator& comm, const char* op, const char* arg,
                             const Tensor& t);
// all_reduce_sum's dtypes: f32, f64, i32.
void check_sum_dtype(const char* backend, const Tensor& x);
// all_gather's out is (size, ...x.shape) of x's dtype.
void check_gather_shapes(const Communicator& comm, const Tensor& out, const Tensor& x);
// A peer of send_recv: -1 or a rank of the job.
void check_peer(const Communicator& comm, const char* arg, int peer);
void check_root(const Communicator& comm, int root);
// split's color: >= 0.
void check_color(const Communicator& comm, int color);

}  // namespace longctx::dist
