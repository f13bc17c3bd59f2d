// Old and new MPI gradient sums in one binary, alternated: the previous all_reduce_sum_start
// (MPI_Iallgather of the whole tensor, then the rank-order addition), the previous blocking
// all_reduce_sum (MPI_Alltoallv of pieces, rank-order addition, MPI_Allgatherv), and the
// library's current one (point-to-point reduce-scatter and all-gather, all_reduce_sum_start +
// wait; the blocking call is the same code). Both old versions are re-typed here from the
// commit before the change (2dff8f4, src/dist/mpi.cpp), reduced to f32 and one bucket.
//
//   mpicxx -O2 -std=c++17 -I include allreduce_probe.cpp -L build-cpu -llongctx
//   mpirun -np N ./probe MB REPS
// Per call: wall (slowest rank) and CPU time (summed over ranks), median over REPS, and whether
// every variant's result has the same bits as the new one's.
#include <mpi.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "longctx/dist/communicator.h"

namespace {

double cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

void add_rows(float* out, const float* rows, int64_t n, int size) {
  std::copy(rows, rows + n, out);
  for (int r = 1; r < size; ++r)
    for (int64_t i = 0; i < n; ++i) out[i] += rows[int64_t(r) * n + i];
}

// The previous started sum: every rank's whole x gathered, then added in rank order.
void old_iallgather(float* x, int64_t n, int size) {
  std::vector<float> rows(size_t(n) * size_t(size));
  MPI_Request request;
  MPI_Iallgather(x, int(n), MPI_FLOAT, rows.data(), int(n), MPI_FLOAT, MPI_COMM_WORLD, &request);
  MPI_Wait(&request, MPI_STATUS_IGNORE);
  add_rows(x, rows.data(), n, size);
}

// The previous blocking sum: pieces to their owners (MPI_Alltoallv), added, gathered back.
void old_alltoallv(float* x, int64_t n, int rank, int size) {
  auto start = [&](int j) { return n * j / size; };
  const int64_t mine = start(rank + 1) - start(rank);
  std::vector<int> send_counts(size), send_displs(size), recv_counts(size), recv_displs(size);
  for (int j = 0; j < size; ++j) {
    send_counts[j] = int(start(j + 1) - start(j));
    send_displs[j] = int(start(j));
    recv_counts[j] = int(mine);
    recv_displs[j] = int(mine * j);
  }
  std::vector<float> rows(size_t(mine) * size_t(size));
  MPI_Alltoallv(x, send_counts.data(), send_displs.data(), MPI_FLOAT, rows.data(),
                recv_counts.data(), recv_displs.data(), MPI_FLOAT, MPI_COMM_WORLD);
  add_rows(x + start(rank), rows.data(), mine, size);
  MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, x, send_counts.data(), send_displs.data(),
                 MPI_FLOAT, MPI_COMM_WORLD);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  using namespace longctx;
  MPI_Init(&argc, &argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const double mb = argc > 1 ? std::atof(argv[1]) : 25;
  const int reps = argc > 2 ? std::atoi(argv[2]) : 5;
  const int64_t n = int64_t(mb * (1 << 20) / 4);
  const auto comm = dist::make_communicator("mpi");
  const Tensor x = Tensor::empty({n}, DType::f32);
  std::vector<float> input(static_cast<size_t>(n));
  uint64_t state = 88172645463325252ull + uint64_t(rank);
  for (float& v : input) {  // xorshift: magnitudes over several decades, signs mixed
    state ^= state << 13, state ^= state >> 7, state ^= state << 17;
    v = float(int64_t(state % 2000001) - 1000000) * (state & 8 ? 1e-6f : 1e-2f);
  }
  const char* names[3] = {"old Iallgather (started sum)", "old Alltoallv+Allgatherv (blocking)",
                          "new point-to-point (started and blocking)"};
  std::vector<double> wall[3], cpu[3];
  std::vector<float> result[3];
  for (int rep = 0; rep < reps; ++rep)
    for (int v = 0; v < 3; ++v) {
      float* data = x.data_as<float>();
      std::memcpy(data, input.data(), size_t(n) * 4);
      MPI_Barrier(MPI_COMM_WORLD);
      const double c0 = cpu_seconds();
      const auto t0 = std::chrono::steady_clock::now();
      if (v == 0) old_iallgather(data, n, size);
      if (v == 1) old_alltoallv(data, n, rank, size);
      if (v == 2) comm->all_reduce_sum_start(x)->wait();
      double times[2] = {
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
          cpu_seconds() - c0};
      double slowest = 0, cpu_sum = 0;
      MPI_Reduce(&times[0], &slowest, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
      MPI_Reduce(&times[1], &cpu_sum, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
      wall[v].push_back(slowest);
      cpu[v].push_back(cpu_sum);
      if (rep == 0) result[v].assign(data, data + n);
    }
  int same[2] = {0, 0};
  for (int v = 0; v < 2; ++v)
    same[v] = std::memcmp(result[v].data(), result[2].data(), size_t(n) * 4) == 0;
  int all_same[2];
  MPI_Reduce(same, all_same, 2, MPI_INT, MPI_MIN, 0, MPI_COMM_WORLD);
  if (rank == 0) {
    std::printf("{\"ranks\": %d, \"mb\": %g, \"reps\": %d, \"variants\": [\n", size, mb, reps);
    for (int v = 0; v < 3; ++v)
      std::printf(
          "  {\"name\": \"%s\", \"wall_s_median\": %.4f, \"wall_s_min\": %.4f, "
          "\"cpu_s_all_ranks_median\": %.4f, \"bits_equal_new\": %s}%s\n",
          names[v], median(wall[v]), *std::min_element(wall[v].begin(), wall[v].end()),
          median(cpu[v]),
          v == 2        ? "true"
          : all_same[v] ? "true"
                        : "false",
          v < 2 ? "," : "");
    std::printf("]}\n");
  }
  MPI_Finalize();
  return 0;
}
