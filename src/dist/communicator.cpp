// The single-process communicator, the choice of backend, and the checks every backend shares.
#include <algorithm>
#include <cstdlib>

#include "longctx/error.h"
#include "src/dist/backends.h"

namespace longctx::dist {

void check_collective_tensor(const Communicator& comm, const char* op, const char* arg,
                             const Tensor& t) {
  const std::string who = comm.backend() + " " + op;
  LONGCTX_CHECK(t.defined(), who, ": ", arg, " is undefined");
  LONGCTX_CHECK(t.is_contiguous(), who, ": ", arg, " must be contiguous, got ", t.describe());
  LONGCTX_CHECK(comm.accepts(t.device()), who, ": ", arg, " is on ", t.device().str(),
                ", which the ", comm.backend(), " backend does not reach (",
                comm.backend() == "mpi" ? "CPU tensors only" : "its own GPU only", ")");
}

void check_sum_dtype(const char* backend, const Tensor& x) {
  const DType d = x.dtype();
  LONGCTX_CHECK(d == DType::f32 || d == DType::f64 || d == DType::i32, backend,
                " all_reduce_sum: x must be f32, f64 or i32, got ", dtype_name(d));
}

void check_gather_shapes(const Communicator& comm, const Tensor& out, const Tensor& x) {
  Shape want{int64_t(comm.size())};
  want.insert(want.end(), x.shape().begin(), x.shape().end());
  LONGCTX_CHECK(out.shape() == want && out.dtype() == x.dtype(), comm.backend(),
                " all_gather: out must be ", dtype_name(x.dtype()), " ", shape_str(want),
                " (size, ...x.shape), got ", out.describe());
}

void check_peer(const Communicator& comm, const char* arg, int peer) {
  LONGCTX_CHECK(peer >= -1 && peer < comm.size(), comm.backend(), " send_recv: ", arg,
                " must be -1 (none) or a rank in [0, ", comm.size(), "), got ", peer);
}

void check_root(const Communicator& comm, int root) {
  LONGCTX_CHECK(root >= 0 && root < comm.size(), comm.backend(),
                " broadcast: root must be a rank in [0, ", comm.size(), "), got ", root);
}

void check_color(const Communicator& comm, int color) {
  LONGCTX_CHECK(color >= 0, comm.backend(), " split: color must be >= 0, got ", color);
}

namespace {

// A request finished when it was made.
class DoneRequest final : public Request {
 public:
  bool test() override { return true; }
  void wait() override {}
};

// One process: the sum, the gather and the broadcast of one rank are its own values.
class SingleCommunicator final : public Communicator {
 public:
  std::string backend() const override { return "single"; }
  int rank() const override { return 0; }
  int size() const override { return 1; }
  bool accepts(Device) const override { return true; }

  void all_reduce_sum(const Tensor& x) override {
    check_collective_tensor(*this, "all_reduce_sum", "x", x);
    check_sum_dtype("single", x);
  }
  std::unique_ptr<Request> all_reduce_sum_start(const Tensor& x) override {
    all_reduce_sum(x);
    return std::make_unique<DoneRequest>();
  }
  void all_gather(const Tensor& out, const Tensor& x) override {
    check_collective_tensor(*this, "all_gather", "out", out);
    check_collective_tensor(*this, "all_gather", "x", x);
    check_gather_shapes(*this, out, x);
    out.reshape(x.shape()).copy_from(x);
  }
  void broadcast(const Tensor& x, int root) override {
    check_collective_tensor(*this, "broadcast", "x", x);
    check_root(*this, root);
  }
  void send_recv(const Tensor& send, int dst, const Tensor& recv, int src) override {
    check_peer(*this, "dst", dst);
    check_peer(*this, "src", src);
    if (dst == 0) check_collective_tensor(*this, "send_recv", "send", send);
    if (src == 0) {
      check_collective_tensor(*this, "send_recv", "recv", recv);
      LONGCTX_CHECK(dst == 0 && send.shape() == recv.shape() && send.dtype() == recv.dtype(),
                    "single send_recv: receiving from itself needs a send of the same shape and "
                    "dtype, got send ",
                    send.defined() ? send.describe() : "(none)", ", recv ", recv.describe());
      recv.copy_from(send);
    }
  }
  void barrier() override {}
  std::unique_ptr<Communicator> split(int color, int) override {
    check_color(*this, color);
    return std::make_unique<SingleCommunicator>();
  }
  [[noreturn]] void fail(const std::string& message) override { throw Error(message); }
};

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

}  // namespace

bool built_with_mpi() {
  return LONGCTX_WITH_MPI;
}
bool built_with_nccl() {
  return LONGCTX_WITH_NCCL;
}

// Open MPI's mpirun sets OMPI_COMM_WORLD_SIZE; PMIx and Slurm launchers set PMIX_RANK or
// PMI_SIZE. Without them MPI_Init would make a "singleton" job of one process: slower to start
// and of no use, so a plain run stays single.
bool launched_by_mpi() {
  return env("OMPI_COMM_WORLD_SIZE") || env("PMIX_RANK") || env("PMI_SIZE");
}

int local_rank() {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"})
    if (const char* v = env(name)) return std::max(0, std::atoi(v));
  return 0;
}

int local_size() {
  for (const char* name :
       {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"})
    if (const char* v = env(name)) return std::max(1, std::atoi(v));
  return 1;
}

std::unique_ptr<Communicator> make_communicator(const std::string& backend, const Context* ctx) {
  LONGCTX_CHECK(backend == "auto" || backend == "single" || backend == "mpi" || backend == "nccl",
                "make_communicator: backend must be auto, single, mpi or nccl, got '", backend,
                "'");
  if (backend == "single" || (backend == "auto" && !(built_with_mpi() && launched_by_mpi())))
    return std::make_unique<SingleCommunicator>();
  if (backend == "nccl") {
    LONGCTX_CHECK(ctx && ctx->device().is_cuda(),
                  "make_communicator: nccl needs a CUDA context (the GPU of this rank), got ",
                  ctx ? ctx->device().str() : std::string("none"));
#if LONGCTX_WITH_NCCL
    return make_nccl_communicator(*ctx);
#else
    throw Error(
        "make_communicator: this longctx was built without NCCL (it needs CUDA and MPI: "
        "configure with -DLONGCTX_CUDA=ON -DLONGCTX_MPI=ON where NCCL is installed)");
#endif
  }
#if LONGCTX_WITH_MPI
  return make_mpi_communicator();
#else
  throw Error(
      "make_communicator: this longctx was built without MPI (install Open MPI, e.g. Debian's "
      "libopenmpi-dev, and configure with -DLONGCTX_MPI=ON)");
#endif
}

std::unique_ptr<Communicator> make_nccl_communicator(Communicator& mpi, const Context& ctx) {
  LONGCTX_CHECK(mpi.backend() == "mpi",
                "make_nccl_communicator: mpi must be an mpi communicator "
                "(NCCL's bootstrap), got the ",
                mpi.backend(), " backend");
  LONGCTX_CHECK(ctx.device().is_cuda(),
                "make_nccl_communicator: ctx must be a CUDA context (the GPU of this rank), got ",
                ctx.device().str());
#if LONGCTX_WITH_NCCL
  // A communicator of its own (the same ranks), so NCCL's bootstrap and barriers never meet
  // the messages of `mpi`.
  return make_nccl_communicator(ctx, mpi.split(0, mpi.rank()));
#else
  throw Error(
      "make_nccl_communicator: this longctx was built without NCCL (it needs CUDA and MPI: "
      "configure with -DLONGCTX_CUDA=ON -DLONGCTX_MPI=ON where NCCL is installed)");
#endif
}

}  // namespace longctx::dist
