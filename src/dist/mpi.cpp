// The MPI communicator: CPU tensors over Open MPI (or any MPI-3 library).
//
// MPI is initialised once per process, on the first communicator, and finalised at exit; each
// communicator works on its own duplicate of MPI_COMM_WORLD, so its messages never meet another
// one's. Errors come back as codes (MPI_ERRORS_RETURN) and become longctx::Error.
//
// all_reduce_sum and all_reduce_sum_start are one reduce-scatter and all-gather in rank order.
// Rank j owns the j-th of N near-equal pieces of x (some empty when x has fewer than N
// elements). Every rank sends its copy of piece j to rank j; rank j adds the N copies in rank
// order, ((x_0 + x_1) + x_2) + ..., element by element, and sends the summed piece to every
// rank. Each rank receives 2 (N - 1) / N times x's bytes, as in a ring all-reduce, where the
// previous all-gather of whole tensors received (N - 1) times them (bench/results/
// 2026-12-05-cpu-mpi-allreduce: measured times). Every element is added in the same rank order
// as before, whichever rank adds it: the blocking call, a started one and the previous
// all-gather give the same bits, on every rank and in every run, whatever MPI's algorithms or
// message arrival order. (MPI_Iallreduce would leave the order of additions to MPI.)
//
// Both steps are point-to-point messages (MPI_Isend / MPI_Irecv), not MPI_Ialltoallv and
// MPI_Iallgatherv: the second step starts when a rank's test() or wait() finds the first done,
// which happens at different moments on different ranks, while MPI matches a communicator's
// collectives by the order in which ranks start them; with several sums under way ranks would
// start the second collectives in different orders. Messages are matched by tag instead: sum
// number s (counted alike on every rank, as every rank starts the sums in the same order) sends
// its pieces under tag 2 s and its summed pieces under tag 2 s + 1, on a duplicate communicator
// of its own so that no other message shares the tags. A rank takes a sum to its second step
// only inside test() or wait(), so each of those moves every sum under way on the communicator
// on, not only its own: ranks may finish the sums in different orders. While a sum is under way a
// rank holds N copies of its piece, about one copy of x (the all-gather held N copies of x).
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

class MpiAllReduce;
// The sums under way on one communicator. test() or wait() of any one moves all of them on: a
// rank waiting for one sum still takes the others to their second step, which other ranks may
// be waiting for (ranks may finish sums in different orders).
using SumsUnderWay = std::vector<MpiAllReduce*>;

// A sum under way: its pieces travel to their owners, each owner adds its piece's copies, the
// summed pieces travel back.
class MpiAllReduce final : public Request {
 public:
  MpiAllReduce(MPI_Comm comm, int rank, int size, int tag, const Tensor& x,
               std::shared_ptr<SumsUnderWay> under_way)
      : comm_(comm), rank_(rank), size_(size), tag_(tag), x_(x), under_way_(std::move(under_way)) {
    if (size == 1 || x.numel() == 0) {
      step_ = Step::done;  // the sum of one rank's x is x; nothing to add
      return;
    }
    // Every rank's copy of my piece, row r from rank r; my own row copied, the others received.
    const size_t mine = bytes(rank + 1) - bytes(rank);
    rows_.reset(new char[mine * size_t(size)]);  // not zeroed: every row is filled
    std::memcpy(rows_.get() + mine * size_t(rank), data(rank), mine);
    for (int j = 0; j < size; ++j) {
      if (j == rank) continue;
      receive(rows_.get() + mine * size_t(j), mine, j, tag_);
      send(data(j), bytes(j + 1) - bytes(j), j, tag_);
    }
    under_way_->push_back(this);
  }
  ~MpiAllReduce() override {
    // Unfinished: MPI may still read and write x and the rows until the job ends, so both are
    // left allocated rather than freed under it.
    if (step_ == Step::done) return;
    forget();
    (void)rows_.release();
    (void)new Tensor(x_);
  }
  MpiAllReduce(const MpiAllReduce&) = delete;
  MpiAllReduce& operator=(const MpiAllReduce&) = delete;

  bool test() override {
    move_all_on();
    return step_ == Step::done;
  }

  // Polls (MPI_Waitall would wait for this sum's step alone); MPI's own waits poll as well.
  void wait() override {
    while (step_ != Step::done) move_all_on();
  }

 private:
  enum class Step { scatter, gather, done };

  // Rank j's piece is bytes [bytes(j), bytes(j + 1)) of x: elements [n j / N, n (j + 1) / N).
  size_t bytes(int j) const { return size_t(x_.numel() * j / size_) * dtype_size(x_.dtype()); }
  char* data(int j) const { return static_cast<char*>(x_.data()) + bytes(j); }

  // One message, or several in order when it is beyond MPI's int counts (both ends split it
  // alike); none when it is empty (both ends know).
  void send(const char* p, size_t n, int peer, int tag) {
    for (size_t begin = 0; begin < n; begin += kMaxMessageBytes) {
      requests_.push_back(MPI_REQUEST_NULL);
      LONGCTX_CHECK_MPI(MPI_Isend(p + begin, int(std::min(kMaxMessageBytes, n - begin)), MPI_BYTE,
                                  peer, tag, comm_, &requests_.back()));
    }
  }
  void receive(char* p, size_t n, int peer, int tag) {
    for (size_t begin = 0; begin < n; begin += kMaxMessageBytes) {
      requests_.push_back(MPI_REQUEST_NULL);
      LONGCTX_CHECK_MPI(MPI_Irecv(p + begin, int(std::min(kMaxMessageBytes, n - begin)), MPI_BYTE,
                                  peer, tag, comm_, &requests_.back()));
    }
  }

  // Every sum under way on the communicator, oldest first, one step on where its messages are
  // done (a copy of the list: a sum that finishes leaves it).
  void move_all_on() {
    const SumsUnderWay sums = *under_way_;
    for (MpiAllReduce* sum : sums) sum->move_on();
  }

  void move_on() {
    int flag = 0;
    LONGCTX_CHECK_MPI(
        MPI_Testall(int(requests_.size()), requests_.data(), &flag, MPI_STATUSES_IGNORE));
    if (flag) next_step();
  }

  void forget() { under_way_->erase(std::find(under_way_->begin(), under_way_->end(), this)); }

  // The current step's messages are done: scattered rows become my summed piece, sent to every
  // rank while theirs come in; or the gather is done, and so is the sum.
  void next_step() {
    requests_.clear();
    if (step_ == Step::gather) {
      step_ = Step::done;
      forget();
      return;
    }
    const size_t item = dtype_size(x_.dtype());
    add_rows(x_.dtype(), data(rank_), rows_.get(),
             int64_t((bytes(rank_ + 1) - bytes(rank_)) / item), size_);
    rows_.reset();
    for (int j = 0; j < size_; ++j) {
      if (j == rank_) continue;
      receive(data(j), bytes(j + 1) - bytes(j), j, tag_ + 1);
      send(data(rank_), bytes(rank_ + 1) - bytes(rank_), j, tag_ + 1);
    }
    step_ = Step::gather;
  }

  MPI_Comm comm_;
  int rank_, size_, tag_;
  Tensor x_;
  std::shared_ptr<SumsUnderWay> under_way_;  // this one among them until it is done
  std::unique_ptr<char[]> rows_;             // scatter: (N, my piece), row r from rank r
  std::vector<MPI_Request> requests_;        // the current step's messages
  Step step_ = Step::scatter;
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
    if (finalized) return;
    MPI_Comm_free(&sum_comm_);
    MPI_Comm_free(&comm_);
  }
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  std::string backend() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  bool accepts(Device device) const override { return device.is_cpu(); }

  void all_reduce_sum(const Tensor& x) override { all_reduce_sum_start(x)->wait(); }

  std::unique_ptr<Request> all_reduce_sum_start(const Tensor& x) override {
    check_collective_tensor(*this, "all_reduce_sum", "x", x);
    check_sum_dtype("mpi", x);
    // Tags 2 s and 2 s + 1 for sum number s, from 0 again past the largest tag MPI allows: a tag
    // comes back only after tag_ub / 2 (>= 16383) more sums, far more than are ever under way.
    const int tag = next_tag_;
    next_tag_ = next_tag_ + 3 > tag_ub_ ? 0 : next_tag_ + 2;
    return std::make_unique<MpiAllReduce>(sum_comm_, rank_, size_, tag, x, under_way_);
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

  // Errors as codes; this rank and the size; the sums' communicator and tags.
  void init() {
    LONGCTX_CHECK_MPI(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
    LONGCTX_CHECK_MPI(MPI_Comm_rank(comm_, &rank_));
    LONGCTX_CHECK_MPI(MPI_Comm_size(comm_, &size_));
    // A duplicate keeps the error handler: errors as codes there too.
    LONGCTX_CHECK_MPI(MPI_Comm_dup(comm_, &sum_comm_));
    int* tag_ub = nullptr;
    int found = 0;
    LONGCTX_CHECK_MPI(MPI_Comm_get_attr(comm_, MPI_TAG_UB, &tag_ub, &found));
    if (found) tag_ub_ = *tag_ub;
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  MPI_Comm sum_comm_ = MPI_COMM_NULL;  // the sums' messages alone
  int rank_ = 0, size_ = 1;
  int tag_ub_ = 32767;  // the largest tag, from MPI (the standard's least)
  int next_tag_ = 0;
  std::shared_ptr<SumsUnderWay> under_way_ = std::make_shared<SumsUnderWay>();
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator() {
  return std::make_unique<MpiCommunicator>();
}

}  // namespace longctx::dist
