// Communicator: the processes of one job and the collectives that training across them needs.
//
// Backends (make_communicator):
//   single  this process alone (size 1): every collective is the identity. Always there, so
//           nothing needs MPI to build or run.
//   mpi     Open MPI (processes started by `mpirun`, on one machine or many); CPU tensors. Built
//           when CMake finds MPI (option LONGCTX_MPI).
//   nccl    NCCL over the GPUs of an MPI job, one GPU per rank; CUDA tensors on the context's
//           device, ordered on its stream. Rank 0's unique id travels to the others over MPI.
//           Built when MPI, CUDA and NCCL are all found.
//
// Every rank calls a collective with tensors of the same shape and dtype, in the same order: the
// communicator checks its own arguments (contiguous, dtype, device) but cannot see the other
// ranks'. A rank that fails while others wait in a collective would hang them, so a failing
// rank calls fail(), which ends the whole job.
#pragma once

#include <memory>
#include <string>

#include "longctx/context.h"
#include "longctx/tensor.h"

namespace longctx::dist {

// A collective under way (Communicator::all_reduce_sum_start). Its tensor must stay alive and
// untouched until wait() returns (or test() returns true). Destroying an unfinished one does
// not wait: that is for a rank on its way to fail(), which ends the job.
class Request {
 public:
  virtual ~Request() = default;
  // Moves the collective on without blocking and says whether it is done. MPI moves a
  // non-blocking collective only inside its calls, so a caller with other work polls this
  // between pieces of that work.
  virtual bool test() = 0;
  // Returns once the result is in the tensor (nccl: once it is ordered before whatever is queued
  // next on the context's stream, as the blocking collectives are).
  virtual void wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual std::string backend() const = 0;  // "single", "mpi" or "nccl"
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Whether collectives take tensors on `device` (mpi: the CPU; nccl: its GPU; single: any).
  virtual bool accepts(Device device) const = 0;

  // x <- x_0 + x_1 + ... + x_{size-1}, in place; f32, f64 or i32. The mpi backend adds in rank
  // order, ((x_0 + x_1) + x_2) + ..., so every rank gets the same bits and a rerun the same
  // result; nccl adds in NCCL's order (fixed for a fixed job and topology).
  virtual void all_reduce_sum(const Tensor& x) = 0;
  // The same sum, started and not waited for. mpi and single: the same bits in x once the
  // request is done, whatever part of a buffer x is; nccl: NCCL's order, which may depend on x's
  // size (its algorithm does).
  // Several may be under way at once; every rank starts them, and this communicator's other
  // collectives, in the same order (the order of calls is what matches the ranks'). mpi: a
  // reduce-scatter and an all-gather in point-to-point messages, moved on by test() and wait(),
  // which add the rank's piece in rank order between the two; nccl: on a stream of its own
  // that waits for the context's stream.
  virtual std::unique_ptr<Request> all_reduce_sum_start(const Tensor& x) = 0;
  // out (size, ...x.shape) <- every rank's x, in rank order.
  virtual void all_gather(const Tensor& out, const Tensor& x) = 0;
  // x <- root's x.
  virtual void broadcast(const Tensor& x, int root) = 0;
  // Sends `send` to rank `dst` while receiving `recv` from rank `src`; -1 for either means none
  // (the ends of a chain). One step of a ring: dst = rank + 1, src = rank - 1 (mod size).
  virtual void send_recv(const Tensor& send, int dst, const Tensor& recv, int src) = 0;
  virtual void barrier() = 0;
  // Ends every process of the job, `message` on this rank's stderr first: the way out for a rank
  // that cannot go on while the others wait for it in a collective (MPI_Abort). The single
  // backend throws Error(message) instead, as any failure would.
  [[noreturn]] virtual void fail(const std::string& message) = 0;

  // A communicator over the ranks that pass the same `color` (>= 0), ranked by `key` (ties by
  // this rank): MPI_Comm_split. Every rank calls it, in the same order among the collectives.
  // Context parallel training splits the job into groups of consecutive ranks this way. The
  // new communicator is independent of this one (its messages never meet this one's) and of the
  // same backend; the single backend returns another single one.
  virtual std::unique_ptr<Communicator> split(int color, int key) = 0;
};

// "auto": mpi when built with MPI and this process was started by mpirun (or srun), else single.
// "single", "mpi", "nccl" (needs `ctx`, a CUDA context: the GPU this rank uses). Throws Error
// naming what is missing when the backend was not built.
std::unique_ptr<Communicator> make_communicator(const std::string& backend = "auto",
                                                const Context* ctx = nullptr);

// An nccl communicator over the ranks of `mpi` (an mpi communicator: it bootstraps NCCL, and its
// barrier and fail serve the new one) for CUDA tensors on the GPU of `ctx`, which must outlive
// it. Every rank of `mpi` calls it. Throws Error when this build has no NCCL.
std::unique_ptr<Communicator> make_nccl_communicator(Communicator& mpi, const Context& ctx);

// Which backends this build has, and whether the process runs under an MPI launcher.
bool built_with_mpi();
bool built_with_nccl();
bool launched_by_mpi();
// This process's rank among the processes of the job on its machine, and how many there are
// (OMPI_COMM_WORLD_LOCAL_RANK/_SIZE and the like; 0 and 1 outside a job): which GPU a rank takes
// and how many CPU threads it can have without oversubscribing the cores.
int local_rank();
int local_size();

}  // namespace longctx::dist
