// The Communicator against plain arithmetic, on the backend the job has: run under
// `mpirun -np N` (ctest does, N = 2 and 4) every rank draws its values from (seed, rank), so
// each rank can compute every other rank's contribution and the expected result by itself.
// Without mpirun the same tests run on the single-process backend.
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "harness.h"
#include "mpi/world.h"

namespace longctx::test {
namespace {

using dist::Communicator;

// Rank `rank`'s values: magnitudes spread over eight decades, so that adding them in another
// order than rank order changes the low bits of the f32/f64 sums.
Tensor rank_values(DType dtype, const Shape& shape, int rank, uint64_t seed) {
  Rng rng(seed * 7919 + uint64_t(rank));
  const Tensor t = Tensor::empty(shape, dtype);
  for (int64_t i = 0; i < t.numel(); ++i) {
    const double v = rng.uniform(-1, 1) * std::pow(10.0, std::floor(rng.uniform(-4, 4)));
    if (dtype == DType::f32) t.data_as<float>()[i] = float(v);
    if (dtype == DType::f64) t.data_as<double>()[i] = v;
    if (dtype == DType::i32) t.data_as<int32_t>()[i] = int32_t(std::lround(v * 1000));
  }
  return t;
}

// ((x_0 + x_1) + x_2) + ... in the dtype's own arithmetic.
template <class T>
void add_into(const Tensor& acc, const Tensor& x) {
  for (int64_t i = 0; i < acc.numel(); ++i) acc.data_as<T>()[i] += x.data_as<T>()[i];
}

// Lengths for the sums over N ranks, each owning the j-th of N near-equal pieces: none; fewer
// elements than ranks (some ranks own an empty piece); N + 1 and 4097 (pieces of unequal
// length); a large odd length (several hundred kB per rank).
std::vector<int64_t> sum_lengths(int N) {
  return {0, 1, N - 1, N, N + 1, 3, 1000, 4097, 262147};
}

TEST(Communicator, AllReduceSumAddsInRankOrder) {
  Communicator& comm = world();
  for (DType dtype : {DType::f32, DType::f64, DType::i32})
    for (int64_t n : sum_lengths(comm.size())) {
      const uint64_t seed = uint64_t(n) + 17 * uint64_t(dtype);
      const Tensor x = rank_values(dtype, {n}, comm.rank(), seed);
      const Tensor expected = rank_values(dtype, {n}, 0, seed);
      for (int r = 1; r < comm.size(); ++r) {
        const Tensor other = rank_values(dtype, {n}, r, seed);
        if (dtype == DType::f32) add_into<float>(expected, other);
        if (dtype == DType::f64) add_into<double>(expected, other);
        if (dtype == DType::i32) add_into<int32_t>(expected, other);
      }
      comm.all_reduce_sum(x);
      expect_equal(x, expected,
                   std::string("all_reduce_sum ") + dtype_name(dtype) + " n=" + std::to_string(n));
    }
}

// Several sums under way at once, of every dtype and of lengths down to 0, polled, then waited
// for in reverse order: each equals the rank-order sum worked out here, bit for bit, and so
// equals the blocking all_reduce_sum's (checked by the test above against the same sums).
TEST(Communicator, AllReduceSumStartAddsInRankOrder) {
  Communicator& comm = world();
  std::vector<Tensor> xs, expected;
  std::vector<std::string> names;
  for (DType dtype : {DType::f32, DType::f64, DType::i32})
    for (int64_t n : sum_lengths(comm.size())) {
      const uint64_t seed = 1000 + uint64_t(n) + 17 * uint64_t(dtype);
      xs.push_back(rank_values(dtype, {n}, comm.rank(), seed));
      expected.push_back(rank_values(dtype, {n}, 0, seed));
      for (int r = 1; r < comm.size(); ++r) {
        const Tensor other = rank_values(dtype, {n}, r, seed);
        if (dtype == DType::f32) add_into<float>(expected.back(), other);
        if (dtype == DType::f64) add_into<double>(expected.back(), other);
        if (dtype == DType::i32) add_into<int32_t>(expected.back(), other);
      }
      names.push_back(std::string("all_reduce_sum_start ") + dtype_name(dtype) +
                      " n=" + std::to_string(n));
    }
  std::vector<std::unique_ptr<dist::Request>> requests;
  for (const Tensor& x : xs) requests.push_back(comm.all_reduce_sum_start(x));
  for (auto& request : requests) request->test();
  // A blocking collective while the sums are under way: matched in the order of calls.
  const Tensor one = Tensor::zeros({1}, DType::i32);
  one.fill(1.0);
  comm.all_reduce_sum(one);
  EXPECT_EQ(one.data_as<int32_t>()[0], comm.size());
  for (size_t i = requests.size(); i-- > 0;) {
    requests[i]->wait();
    EXPECT_TRUE(requests[i]->test());
    expect_equal(xs[i], expected[i], names[i]);
  }
}

// Sums finished in an order that differs from rank to rank (even ranks wait for the last one
// started first, odd ranks for the first): a rank moves a sum to its second step (the gather)
// whenever it finds the first done, so the ranks start those steps in different orders, and
// each sum must still meet its own messages.
TEST(Communicator, AllReduceSumStartFinishedInRankDependentOrder) {
  Communicator& comm = world();
  const int sums = 6;
  std::vector<Tensor> xs;
  std::vector<std::unique_ptr<dist::Request>> requests;
  for (int k = 0; k < sums; ++k) {
    xs.push_back(rank_values(DType::f32, {1001 + 37 * k}, comm.rank(), 2000 + uint64_t(k)));
    requests.push_back(comm.all_reduce_sum_start(xs.back()));
  }
  for (int i = 0; i < sums; ++i) {
    const int k = comm.rank() % 2 == 0 ? sums - 1 - i : i;
    requests[size_t(k)]->wait();
    const Tensor expected = rank_values(DType::f32, {1001 + 37 * k}, 0, 2000 + uint64_t(k));
    for (int r = 1; r < comm.size(); ++r)
      add_into<float>(expected, rank_values(DType::f32, {1001 + 37 * k}, r, 2000 + uint64_t(k)));
    expect_equal(xs[size_t(k)], expected, "sum " + std::to_string(k));
  }
}

TEST(Communicator, AllGatherStacksEveryRankInOrder) {
  Communicator& comm = world();
  for (DType dtype : {DType::f32, DType::f64, DType::i32, DType::bf16}) {
    const DType drawn = dtype == DType::bf16 ? DType::i32 : dtype;  // bytes are bytes
    const Tensor x = rank_values(drawn, {2, 3}, comm.rank(), 5);
    const Tensor out = Tensor::empty({comm.size(), 2, 3}, drawn);
    out.fill(-7);
    comm.all_gather(out, x);
    for (int r = 0; r < comm.size(); ++r)
      expect_equal(out.select(0, r), rank_values(drawn, {2, 3}, r, 5),
                   std::string("all_gather row ") + std::to_string(r));
  }
}

TEST(Communicator, BroadcastCopiesTheRootsValues) {
  Communicator& comm = world();
  for (int root = 0; root < comm.size(); ++root) {
    const Tensor x = rank_values(DType::f64, {257}, comm.rank(), 11);
    comm.broadcast(x, root);
    expect_equal(x, rank_values(DType::f64, {257}, root, 11),
                 std::string("broadcast from ") + std::to_string(root));
  }
}

TEST(Communicator, SendRecvRingAndChain) {
  Communicator& comm = world();
  const int r = comm.rank(), n = comm.size();
  // A ring: everyone sends to the next rank and receives from the previous one.
  const Tensor send = rank_values(DType::f32, {5, 4}, r, 3);
  const Tensor recv = Tensor::empty({5, 4}, DType::f32);
  recv.fill(-7);
  comm.send_recv(send, (r + 1) % n, recv, (r + n - 1) % n);
  expect_equal(recv, rank_values(DType::f32, {5, 4}, (r + n - 1) % n, 3), "ring step");
  // A chain (a halo passed forward): the first rank receives nothing, the last sends nothing.
  const Tensor halo = Tensor::empty({3}, DType::f64);
  halo.fill(-7);
  comm.send_recv(rank_values(DType::f64, {3}, r, 4), r + 1 < n ? r + 1 : -1, halo,
                 r > 0 ? r - 1 : -1);
  if (r > 0)
    expect_equal(halo, rank_values(DType::f64, {3}, r - 1, 4), "chain step");
  else
    for (int i = 0; i < 3; ++i) EXPECT_EQ(halo.data_as<double>()[i], -7.0) << "rank 0 got data";
}

// After the barrier every rank sees the file every other rank wrote before it.
TEST(Communicator, BarrierOrdersWhatRanksDoBeforeAndAfter) {
  Communicator& comm = world();
  const std::string dir = shared_temp_dir(comm);
  std::ofstream(dir + "/rank" + std::to_string(comm.rank())) << comm.rank();
  comm.barrier();
  for (int r = 0; r < comm.size(); ++r)
    EXPECT_TRUE(std::filesystem::exists(dir + "/rank" + std::to_string(r)))
        << "rank " << comm.rank() << " passed the barrier before rank " << r << " wrote";
  comm.barrier();  // nobody removes the directory while another still looks
  if (comm.rank() == 0) std::filesystem::remove_all(dir);
}

TEST(Communicator, BadArgumentsAreNamedBeforeAnyMessage) {
  Communicator& comm = world();
  const std::string b = comm.backend();
  const Tensor m = Tensor::zeros({2, 3}, DType::f32);
  EXPECT_LONGCTX_ERROR(comm.all_reduce_sum(Tensor::zeros({4}, DType::bf16)), "all_reduce_sum",
                       "f32, f64 or i32", "bf16");
  EXPECT_LONGCTX_ERROR(comm.all_reduce_sum(m.transpose(0, 1)), "all_reduce_sum",
                       "must be contiguous");
  EXPECT_LONGCTX_ERROR(comm.all_reduce_sum(Tensor()), "all_reduce_sum", "undefined");
  EXPECT_LONGCTX_ERROR(comm.all_reduce_sum_start(Tensor::zeros({4}, DType::bf16)), "all_reduce_sum",
                       "f32, f64 or i32");
  EXPECT_LONGCTX_ERROR(comm.all_gather(Tensor::zeros({comm.size() + 1, 2, 3}, DType::f32), m),
                       "all_gather", "(size, ...x.shape)");
  EXPECT_LONGCTX_ERROR(comm.all_gather(Tensor::zeros({comm.size(), 2, 3}, DType::f64), m),
                       "all_gather", "f32");
  EXPECT_LONGCTX_ERROR(comm.broadcast(m, comm.size()), "broadcast", "root");
  EXPECT_LONGCTX_ERROR(comm.send_recv(m, comm.size(), m, -1), "send_recv", "dst");
  EXPECT_LONGCTX_ERROR(comm.send_recv(m, -1, m, -2), "send_recv", "src");
  EXPECT_LONGCTX_ERROR(dist::make_communicator("gloo"), "auto, single, mpi or nccl", "gloo");
  EXPECT_LONGCTX_ERROR(dist::make_communicator("nccl"), "nccl needs a CUDA context");
  EXPECT_LONGCTX_ERROR(
      dist::make_nccl_communicator(*dist::make_communicator("single"), context_for(Device::cpu())),
      "make_nccl_communicator", "an mpi communicator", "single");
  // Every rank still agrees on what follows.
  comm.barrier();
}

// Groups of two consecutive ranks (the context parallel groups of C = 2), and the reverse order
// by key: each part's ranks, sizes and sums are those of its members alone, and a collective on
// the parts does not disturb one on the whole job between them.
TEST(Communicator, SplitMakesIndependentGroups) {
  Communicator& comm = world();
  const int r = comm.rank(), n = comm.size();
  const auto pairs = comm.split(r / 2, r);
  const int first = r / 2 * 2, members = std::min(2, n - first);
  EXPECT_EQ(pairs->backend(), comm.backend());
  EXPECT_EQ(pairs->size(), members);
  EXPECT_EQ(pairs->rank(), r - first);
  const Tensor x = rank_values(DType::f64, {7}, r, 21);
  pairs->all_reduce_sum(x);
  const Tensor expected = rank_values(DType::f64, {7}, first, 21);
  for (int j = first + 1; j < first + members; ++j)
    add_into<double>(expected, rank_values(DType::f64, {7}, j, 21));
  expect_equal(x, expected, "all_reduce_sum over the pair");
  const Tensor count = Tensor::empty({1}, DType::i32);
  count.data_as<int32_t>()[0] = 1;
  comm.all_reduce_sum(count);
  EXPECT_EQ(count.data_as<int32_t>()[0], n) << "the whole job's sum after the pair's";
  // Key n - r: ranks in reverse order, one group of everyone.
  const auto reversed = comm.split(0, n - r);
  EXPECT_EQ(reversed->size(), n);
  EXPECT_EQ(reversed->rank(), n - 1 - r);
  EXPECT_LONGCTX_ERROR(comm.split(-1, 0), "split", "color must be >= 0", "-1");
}

TEST(Communicator, SingleBackendIsTheIdentity) {
  const auto single = dist::make_communicator("single");
  EXPECT_EQ(single->rank(), 0);
  EXPECT_EQ(single->size(), 1);
  const Tensor x = rank_values(DType::f64, {9}, 0, 2);
  single->all_reduce_sum(x);
  single->broadcast(x, 0);
  expect_equal(x, rank_values(DType::f64, {9}, 0, 2), "single all_reduce_sum and broadcast");
  const Tensor out = Tensor::zeros({1, 9}, DType::f64), back = Tensor::zeros({9}, DType::f64);
  single->all_gather(out, x);
  single->send_recv(x, 0, back, 0);
  expect_equal(out.select(0, 0), x, "single all_gather");
  expect_equal(back, x, "single send_recv to itself");
  EXPECT_LONGCTX_ERROR(single->fail("rank 0 of 1: gave up"), "rank 0 of 1: gave up");
  const auto part = single->split(3, 0);
  EXPECT_EQ(part->backend(), "single");
  EXPECT_EQ(part->size(), 1);
}

}  // namespace
}  // namespace longctx::test
