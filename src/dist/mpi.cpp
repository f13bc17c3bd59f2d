// The MPI communicator: CPU tensors over Open MPI (or any MPI-3 library).
//
// MPI is initialised once per process, on the first communicator, and finalised at exit; each
// communicator works on its own duplicate of MPI_COMM_WORLD, so its messages never meet another
// one's. Errors come back as codes (MPI_ERRORS_RETURN) and become longctx::Error.
//
// all_reduce_sum is a reduce-scatter and an all-gather, as a ring all-reduce is, but with the
// additions in rank order: rank j receives every rank's j-th piece (MPI_Alltoallv), adds them
// (x_0 + x_1) + x_2 ..., and the summed pieces are gathered to everyone (MPI_Allgatherv). Each
// byte crosses the network twice, as in a ring, and the result does not depend on which
// algorithm MPI picks or on message arrival order: the same bits on every rank and in every run.
//
// all_reduce_sum_start is one non-blocking all-gather (MPI_Iallgather) of the whole tensor, the
// rank-order sum done by test() or wait() once it is in: the same bits as all_reduce_sum. One
// collective, not the two above, because the second of those would be started whenever a rank's
// test() saw the first done, and MPI matches a communicator's collectives by the order ranks
// start them: with several requests under way, ranks would start them in different orders. The
// price: each rank receives (N - 1) copies of x rather than 2 (N - 1) / N (the same bytes for
// N = 2, N / 2 times as many beyond) and holds N copies until the request is done. MPI_Iallreduce
// would leave the order of additions to MPI.
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "longctx/error.h"
#include "src/dist/backends.h"

namespace longctx::dist {
namespace {

#define LONGCTX_CHECK_MPI(call)                                                                 \
  do {                                                                                          \
    const int mpi_code_ = (call);                                                               \
    if (mpi_code_ != MPI_SUCCESS) {                                                             \
      char mpi_text_[MPI_MAX_ERROR_STRING];                                                     \
      int mpi_len_ = 0;                                                                         \
      MPI_Error_string(mpi_code_, mpi_text_, &mpi_len_);                                        \
      throw Error(detail::concat("mpi: ", #call, " failed: ", std::string(mpi_text_, mpi_len_), \
                                 " (", __FILE__, ":", __LINE__, ")"));                          \
    }                                                                                           \
  } while (0)

void finalize_at_exit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

// MPI_Init once per process. FUNNELED: only the thread that initialised calls MPI (the OpenMP
// workers never do).
void ensure_initialized() {
  static std::once_flag once;
  std::call_once(once, [] {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (initialized) return;  // the program did it; it finalises too
    int provided = 0;
    LONGCTX_CHECK_MPI(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided));
    std::atexit(finalize_at_exit);
  });
}

MPI_Datatype mpi_type(DType d) {
  switch (d) {
    case DType::f32:
      return MPI_FLOAT;
    case DType::f64:
      return MPI_DOUBLE;
    default:
      return MPI_INT32_T;
  }
}

// MPI counts are int: a message of more bytes goes in pieces of at most this many.
constexpr size_t kMaxMessageBytes = size_t(1) << 30;

int as_count(size_t n, const char* op) {
  LONGCTX_CHECK(n <= size_t(INT_MAX), "mpi ", op, ": ", n,
                " bytes in one message is beyond MPI's int counts");
  return int(n);
}

template <class T>
void add_rows(T* out, const T* rows, int64_t n, int size) {
  std::copy(rows, rows + n, out);
  for (int r = 1; r < size; ++r)
    for (int64_t i = 0; i < n; ++i) out[i] += rows[int64_t(r) * n + i];
}
// out (n) <- ((row 0 + row 1) + row 2) + ... of rows (size, n), elements of `dtype` (f32, f64 or
// i32, as check_sum_dtype allows).
void add_rows(DType dtype, char* out, const char* rows, int64_t n, int size) {
  if (dtype == DType::f32)
    add_rows(reinterpret_cast<float*>(out), reinterpret_cast<const float*>(rows), n, size);
  else if (dtype == DType::f64)
    add_rows(reinterpret_cast<double*>(out), reinterpret_cast<const double*>(rows), n, size);
  else
    add_rows(reinterpret_cast<int32_t*>(out), reinterpret_cast<const int32_t*>(rows), n, size);
}

// An all_reduce_sum under way: every rank's x gathered into `rows`, in pieces whose N rows fit
// MPI's int counts, then added in rank order into x.
class MpiAllReduce final : public Request {
 public:
  MpiAllReduce(MPI_Comm comm, int size, const Tensor& x) : size_(size), x_(x) {
    if (size == 1) return;  // the sum of one rank's x is x
    const size_t item = dtype_size(x.dtype());
    const int64_t piece = int64_t(kMaxMessageBytes / item / size_t(size));
    for (int64_t begin = 0, n = x.numel(); begin < n; begin += piece) {
      Piece p{begin, std::min(piece, n - begin), nullptr};
      p.rows.reset(new char[size_t(p.n) * item * size_t(size)]);  // not zeroed: MPI fills it
      const int bytes = int(size_t(p.n) * item);
      requests_.push_back(MPI_REQUEST_NULL);
      LONGCTX_CHECK_MPI(MPI_Iallgather(data(p.begin), bytes, MPI_BYTE, p.rows.get(), bytes,
                                       MPI_BYTE, comm, &requests_.back()));
      pieces_.push_back(std::move(p));
      done_ = false;
    }
  }
  ~MpiAllReduce() override {
    // Unfinished: MPI may still read x and write the rows until the job ends, so both are left
    // allocated rather than freed under it.
    if (done_) return;
    for (Piece& p : pieces_) (void)p.rows.release();
    (void)new Tensor(x_);
  }
  MpiAllReduce(const MpiAllReduce&) = delete;
  MpiAllReduce& operator=(const MpiAllReduce&) = delete;

  bool test() override {
    if (done_) return true;
    int flag = 0;
    LONGCTX_CHECK_MPI(
        MPI_Testall(int(requests_.size()), requests_.data(), &flag, MPI_STATUSES_IGNORE));
    if (flag) add();
    return done_;
  }

  void wait() override {
    if (done_) return;
    LONGCTX_CHECK_MPI(MPI_Waitall(int(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE));
    add();
  }

 private:
  struct Piece {
    int64_t begin, n;              // elements of x
    std::unique_ptr<char[]> rows;  // (size, n): row r from rank r
  };

  char* data(int64_t begin) const {
    return static_cast<char*>(x_.data()) + size_t(begin) * dtype_size(x_.dtype());
  }

  // ((x_0 + x_1) + x_2) + ..., element by element, as all_reduce_sum adds.
  void add() {
    for (const Piece& p : pieces_) add_rows(x_.dtype(), data(p.begin), p.rows.get(), p.n, size_);
    done_ = true;
  }

  int size_;
  Tensor x_;
  std::vector<Piece> pieces_;
  std::vector<MPI_Request> requests_;  // one per piece
  bool done_ = true;                   // until a piece is under way
};

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator() {
    ensure_initialized();
    LONGCTX_CHECK_MPI(MPI_Comm_dup(MPI_COMM_WORLD, &comm_));
    init();
  }
  // Takes ownership of `comm` (a split of another communicator's).
  explicit MpiCommunicator(MPI_Comm comm) : comm_(comm) { init(); }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
  }
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  std::string backend() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  bool accepts(Device device) const override { return device.is_cpu(); }

  void all_reduce_sum(const Tensor& x) override {
    check_collective_tensor(*this, "all_reduce_sum", "x", x);
    check_sum_dtype("mpi", x);
    if (size_ == 1) return;
    const size_t item = dtype_size(x.dtype());
    const int64_t bucket = int64_t(kMaxMessageBytes / item);
    char* data = static_cast<char*>(x.data());
    for (int64_t begin = 0, n = x.numel(); begin < n; begin += bucket)
      all_reduce_bucket(data + begin * item, std::min(bucket, n - begin), x.dtype());
  }

  std::unique_ptr<Request> all_reduce_sum_start(const Tensor& x) override {
    check_collective_tensor(*this, "all_reduce_sum", "x", x);
    check_sum_dtype("mpi", x);
    return std::make_unique<MpiAllReduce>(comm_, size_, x);
  }

  void all_gather(const Tensor& out, const Tensor& x) override {
    check_collective_tensor(*this, "all_gather", "out", out);
    check_collective_tensor(*this, "all_gather", "x", x);
    check_gather_shapes(*this, out, x);
    const int bytes = as_count(x.nbytes(), "all_gather");
    LONGCTX_CHECK_MPI(MPI_Allgather(x.data(), bytes, MPI_BYTE, out.data(), bytes, MPI_BYTE, comm_));
  }

  void broadcast(const Tensor& x, int root) override {
    check_collective_tensor(*this, "broadcast", "x", x);
    check_root(*this, root);
    char* data = static_cast<char*>(x.data());
    for (size_t begin = 0, n = x.nbytes(); begin < n; begin += kMaxMessageBytes) {
      const int bytes = int(std::min(kMaxMessageBytes, n - begin));
      LONGCTX_CHECK_MPI(MPI_Bcast(data + begin, bytes, MPI_BYTE, root, comm_));
    }
  }

  void send_recv(const Tensor& send, int dst, const Tensor& recv, int src) override {
    check_peer(*this, "dst", dst);
    check_peer(*this, "src", src);
    if (dst >= 0) check_collective_tensor(*this, "send_recv", "send", send);
    if (src >= 0) check_collective_tensor(*this, "send_recv", "recv", recv);
    const int send_bytes = dst >= 0 ? as_count(send.nbytes(), "send_recv") : 0;
    const int recv_bytes = src >= 0 ? as_count(recv.nbytes(), "send_recv") : 0;
    LONGCTX_CHECK_MPI(MPI_Sendrecv(dst >= 0 ? send.data() : nullptr, send_bytes, MPI_BYTE,
                                   dst >= 0 ? dst : MPI_PROC_NULL, kTag,
                                   src >= 0 ? recv.data() : nullptr, recv_bytes, MPI_BYTE,
                                   src >= 0 ? src : MPI_PROC_NULL, kTag, comm_, MPI_STATUS_IGNORE));
  }

  void barrier() override { LONGCTX_CHECK_MPI(MPI_Barrier(comm_)); }

  std::unique_ptr<Communicator> split(int color, int key) override {
    check_color(*this, color);
    MPI_Comm part = MPI_COMM_NULL;
    LONGCTX_CHECK_MPI(MPI_Comm_split(comm_, color, key, &part));
    return std::make_unique<MpiCommunicator>(part);
  }

  [[noreturn]] void fail(const std::string& message) override {
    std::fprintf(stderr, "%s\n", message.c_str());
    std::fflush(stderr);
    MPI_Abort(comm_, 1);
    std::_Exit(1);  // MPI_Abort does not return; should a library's do so, end this rank anyway
  }

 private:
  static constexpr int kTag = 17;

  // Errors as codes; this rank and the size.
  void init() {
    LONGCTX_CHECK_MPI(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
    LONGCTX_CHECK_MPI(MPI_Comm_rank(comm_, &rank_));
    LONGCTX_CHECK_MPI(MPI_Comm_size(comm_, &size_));
  }

  // Rank j owns elements [start(j), start(j + 1)) of the bucket.
  int64_t start(int j, int64_t n) const { return n * j / size_; }

  void all_reduce_bucket(char* data, int64_t n, DType dtype) {
    const size_t item = dtype_size(dtype);
    const MPI_Datatype type = mpi_type(dtype);
    const int64_t mine = start(rank_ + 1, n) - start(rank_, n);
    std::vector<int> send_counts(size_), send_displs(size_), recv_counts(size_), recv_displs(size_);
    for (int j = 0; j < size_; ++j) {
      send_counts[j] = int(start(j + 1, n) - start(j, n));
      send_displs[j] = int(start(j, n));
      recv_counts[j] = int(mine);
      recv_displs[j] = int(mine * j);
    }
    // Every rank's copy of my piece, row r from rank r; then their sum into my piece of data.
    std::vector<char> rows(size_t(mine) * size_t(size_) * item);
    LONGCTX_CHECK_MPI(MPI_Alltoallv(data, send_counts.data(), send_displs.data(), type, rows.data(),
                                    recv_counts.data(), recv_displs.data(), type, comm_));
    add_rows(dtype, data + start(rank_, n) * item, rows.data(), mine, size_);
    LONGCTX_CHECK_MPI(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, data, send_counts.data(),
                                     send_displs.data(), type, comm_));
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator() {
  return std::make_unique<MpiCommunicator>();
}

}  // namespace longctx::dist
