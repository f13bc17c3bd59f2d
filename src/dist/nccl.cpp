// The NCCL communicator: CUDA tensors of one GPU per rank, over NCCL, inside an MPI job.
//
// MPI starts the processes and carries the bootstrap: rank 0 makes NCCL's unique id and
// broadcasts it (128 bytes) to the others, then every rank joins the NCCL communicator on its
// context's GPU. Collectives are queued on the context's stream, as the ops are, so they follow
// the kernels that produced their inputs with no synchronisation; barrier() and fail() go
// through MPI. The Context must outlive the communicator.
//
// all_reduce_sum_start queues its all-reduce on a stream of the communicator's own, after an
// event that marks the context's stream at the call (the kernels that wrote x), so the
// context's stream goes on with the kernels after it (the rest of a backward) while NCCL sums;
// its wait() makes the context's stream wait for the sum's event, without blocking the host.
// Every collective of one NCCL communicator must run in the order the ranks issued them, so the
// blocking ones, on the context's stream, first wait for whatever the side stream holds.
//
// Compiled wherever CUDA, NCCL and MPI are found; it needs several GPUs to run (one GPU cannot
// hold several NCCL ranks), which no machine of this project's CI has: it is untested.
#include <cuda_runtime.h>
#include <nccl.h>

#include <utility>

#include "longctx/error.h"
#include "src/dist/backends.h"

namespace longctx::dist {
namespace {

#define LONGCTX_CHECK_NCCL(call)                                                                 \
  do {                                                                                           \
    const ncclResult_t nccl_result_ = (call);                                                    \
    if (nccl_result_ != ncclSuccess)                                                             \
      throw Error(detail::concat("nccl: ", #call, " failed: ", ncclGetErrorString(nccl_result_), \
                                 " (", __FILE__, ":", __LINE__, ")"));                           \
  } while (0)

#define LONGCTX_CHECK_CUDA_CALL(call)                                                           \
  do {                                                                                          \
    const cudaError_t cuda_error_ = (call);                                                     \
    if (cuda_error_ != cudaSuccess)                                                             \
      throw Error(detail::concat("nccl: ", #call, " failed: ", cudaGetErrorString(cuda_error_), \
                                 " (", __FILE__, ":", __LINE__, ")"));                          \
  } while (0)

ncclDataType_t nccl_type(DType d) {
  switch (d) {
    case DType::f32:
      return ncclFloat32;
    case DType::f64:
      return ncclFloat64;
    default:
      return ncclInt32;
  }
}

// An all-reduce queued on the side stream; done when its event is.
class NcclAllReduce final : public Request {
 public:
  NcclAllReduce(cudaStream_t ctx_stream, cudaEvent_t done) : ctx_stream_(ctx_stream), done_(done) {}
  ~NcclAllReduce() override { cudaEventDestroy(done_); }  // released once the event completes
  NcclAllReduce(const NcclAllReduce&) = delete;
  NcclAllReduce& operator=(const NcclAllReduce&) = delete;

  bool test() override {
    const cudaError_t status = cudaEventQuery(done_);
    if (status == cudaErrorNotReady) return false;
    LONGCTX_CHECK_CUDA_CALL(status);
    return true;
  }
  void wait() override { LONGCTX_CHECK_CUDA_CALL(cudaStreamWaitEvent(ctx_stream_, done_, 0)); }

 private:
  cudaStream_t ctx_stream_;
  cudaEvent_t done_;
};

cudaEvent_t make_event() {
  cudaEvent_t event = nullptr;
  LONGCTX_CHECK_CUDA_CALL(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  return event;
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(const Context& ctx, std::unique_ptr<Communicator> mpi)
      : ctx_(&ctx), mpi_(std::move(mpi)) {
    static_assert(sizeof(ncclUniqueId) % sizeof(int32_t) == 0);
    ncclUniqueId id{};
    if (mpi_->rank() == 0) LONGCTX_CHECK_NCCL(ncclGetUniqueId(&id));
    mpi_->broadcast(
        Tensor(&id, DType::i32, Device::cpu(), {int64_t(sizeof(ncclUniqueId) / sizeof(int32_t))}),
        /*root=*/0);
    LONGCTX_CHECK_CUDA_CALL(cudaSetDevice(ctx.device().index));
    LONGCTX_CHECK_NCCL(ncclCommInitRank(&comm_, mpi_->size(), id, mpi_->rank()));
    LONGCTX_CHECK_CUDA_CALL(cudaStreamCreateWithFlags(&side_, cudaStreamNonBlocking));
    side_done_ = make_event();
    ctx_mark_ = make_event();
  }
  ~NcclCommunicator() override {
    cudaStreamSynchronize(side_);
    ncclCommDestroy(comm_);
    cudaEventDestroy(ctx_mark_);
    cudaEventDestroy(side_done_);
    cudaStreamDestroy(side_);
  }
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  std::string backend() const override { return "nccl"; }
  int rank() const override { return mpi_->rank(); }
  int size() const override { return mpi_->size(); }
  bool accepts(Device device) const override { return device == ctx_->device(); }

  void all_reduce_sum(const Tensor& x) override {
    check_collective_tensor(*this, "all_reduce_sum", "x", x);
    check_sum_dtype("nccl", x);
    after_side_stream();
    LONGCTX_CHECK_NCCL(ncclAllReduce(x.data(), x.data(), size_t(x.numel()), nccl_type(x.dtype()),
                                     ncclSum, comm_, stream()));
  }

  std::unique_ptr<Request> all_reduce_sum_start(const Tensor& x) override {
    check_collective_tensor(*this, "all_reduce_sum", "x", x);
    check_sum_dtype("nccl", x);
    LONGCTX_CHECK_CUDA_CALL(cudaEventRecord(ctx_mark_, stream()));
    LONGCTX_CHECK_CUDA_CALL(cudaStreamWaitEvent(side_, ctx_mark_, 0));
    LONGCTX_CHECK_NCCL(ncclAllReduce(x.data(), x.data(), size_t(x.numel()), nccl_type(x.dtype()),
                                     ncclSum, comm_, side_));
    cudaEvent_t done = make_event();
    LONGCTX_CHECK_CUDA_CALL(cudaEventRecord(done, side_));
    return std::make_unique<NcclAllReduce>(stream(), done);
  }

  void all_gather(const Tensor& out, const Tensor& x) override {
    check_collective_tensor(*this, "all_gather", "out", out);
    check_collective_tensor(*this, "all_gather", "x", x);
    check_gather_shapes(*this, out, x);
    after_side_stream();
    LONGCTX_CHECK_NCCL(ncclAllGather(x.data(), out.data(), x.nbytes(), ncclUint8, comm_, stream()));
  }

  void broadcast(const Tensor& x, int root) override {
    check_collective_tensor(*this, "broadcast", "x", x);
    check_root(*this, root);
    after_side_stream();
    LONGCTX_CHECK_NCCL(
        ncclBroadcast(x.data(), x.data(), x.nbytes(), ncclUint8, root, comm_, stream()));
  }

  void send_recv(const Tensor& send, int dst, const Tensor& recv, int src) override {
    check_peer(*this, "dst", dst);
    check_peer(*this, "src", src);
    if (dst >= 0) check_collective_tensor(*this, "send_recv", "send", send);
    if (src >= 0) check_collective_tensor(*this, "send_recv", "recv", recv);
    after_side_stream();
    // In one group, so that every rank's send and receive of a ring step cannot deadlock.
    LONGCTX_CHECK_NCCL(ncclGroupStart());
    if (dst >= 0)
      LONGCTX_CHECK_NCCL(ncclSend(send.data(), send.nbytes(), ncclUint8, dst, comm_, stream()));
    if (src >= 0)
      LONGCTX_CHECK_NCCL(ncclRecv(recv.data(), recv.nbytes(), ncclUint8, src, comm_, stream()));
    LONGCTX_CHECK_NCCL(ncclGroupEnd());
  }

  void barrier() override {
    LONGCTX_CHECK_CUDA_CALL(cudaStreamSynchronize(side_));
    LONGCTX_CHECK_CUDA_CALL(cudaStreamSynchronize(stream()));
    mpi_->barrier();
  }

  // The MPI ranks split first; the part's rank 0 makes a new unique id for its NCCL
  // communicator (NCCL's own ncclCommSplit needs NCCL 2.18, this needs nothing new).
  std::unique_ptr<Communicator> split(int color, int key) override {
    check_color(*this, color);
    return make_nccl_communicator(*ctx_, mpi_->split(color, key));
  }

  [[noreturn]] void fail(const std::string& message) override {
    mpi_->fail(message);
    throw Error(message);  // not reached: the virtual call hides that fail() does not return
  }

 private:
  cudaStream_t stream() const { return static_cast<cudaStream_t>(ctx_->stream()); }

  // The context's stream waits for what the side stream holds (the started all-reduces), so a
  // blocking collective runs after them, in the order the ranks issued them.
  void after_side_stream() {
    LONGCTX_CHECK_CUDA_CALL(cudaEventRecord(side_done_, side_));
    LONGCTX_CHECK_CUDA_CALL(cudaStreamWaitEvent(stream(), side_done_, 0));
  }

  const Context* ctx_;
  std::unique_ptr<Communicator> mpi_;  // the bootstrap, barrier and abort
  ncclComm_t comm_ = nullptr;
  cudaStream_t side_ = nullptr;                           // the started all-reduces
  cudaEvent_t side_done_ = nullptr, ctx_mark_ = nullptr;  // marks on the two streams
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(const Context& ctx,
                                                     std::unique_ptr<Communicator> mpi) {
  return std::make_unique<NcclCommunicator>(ctx, std::move(mpi));
}

std::unique_ptr<Communicator> make_nccl_communicator(const Context& ctx) {
  return make_nccl_communicator(ctx, make_mpi_communicator());
}

}  // namespace longctx::dist
