// Jobs of several processes, started with mpirun from here: `longctx train` on two ranks against
// the same command on one process, and a failing rank (an exception; a SIGKILL) ending the whole
// job within seconds with its message, leaving the last complete checkpoint and nothing else.
// The collectives themselves are tested under mpirun by tests/mpi (ctest: mpi_np2, mpi_np4).
// Also the context parallel layout's arithmetic, which needs no second process.
#include <sys/wait.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "harness.h"
#include "longctx/dist/communicator.h"
#include "longctx/dist/layout.h"
#include "longctx/io/safetensors.h"

namespace longctx::test {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

struct Job {
  int status = -1;
  double seconds = 0;
  std::string out, err;
};

// mpirun (as root too: containers and CI run as root) with `np` ranks of `command`; for the
// sanitizer builds, leak checks off (Open MPI's own allocations outlive MPI_Finalize) and Open
// MPI's memory patcher off (it rewrites entry points AddressSanitizer intercepts).
Job mpirun(const TempDir& dir, int np, const std::string& env, const std::string& command) {
  const std::string out = dir.file("stdout.txt"), err = dir.file("stderr.txt");
  const std::string line =
      "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 "
      "ASAN_OPTIONS=detect_leaks=0 OMPI_MCA_memory=^patcher " +
      env + " '" + LONGCTX_MPIEXEC + "' -np " + std::to_string(np) + " --oversubscribe " + command +
      " > " + out + " 2> " + err;
  const auto t0 = std::chrono::steady_clock::now();
  const int raw = std::system(line.c_str());
  Job j;
  j.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  j.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
  j.out = slurp(out);
  j.err = slurp(err);
  return j;
}

#define SKIP_WITHOUT_MPI()                                                                    \
  do {                                                                                        \
    if (!dist::built_with_mpi())                                                              \
      GTEST_SKIP() << "built without MPI (install libopenmpi-dev and openmpi-bin, configure " \
                      "with -DLONGCTX_MPI=ON)";                                               \
    if (!std::filesystem::exists(LONGCTX_MPIEXEC))                                            \
      GTEST_SKIP() << "no mpirun at " << LONGCTX_MPIEXEC;                                     \
  } while (0)

std::vector<nlohmann::json> step_lines(const std::string& run_dir) {
  std::vector<nlohmann::json> out;
  std::istringstream in(slurp(run_dir + "/log.jsonl"));
  for (std::string line; std::getline(in, line);) {
    const nlohmann::json j = nlohmann::json::parse(line);
    if (j.contains("loss")) out.push_back(j);
  }
  return out;
}

#ifdef LONGCTX_CLI
// The same command line on one process and on two ranks trains the same model: the same losses
// within the f32 bound of tests/mpi/test_data_parallel.cpp (1e-6 relative, from the f32
// rounding of the regrouped sums), rank 0 alone reporting.
TEST(DataParallelJob, TrainOnTwoRanksMatchesOneProcess) {
  SKIP_WITHOUT_MPI();
  TempDir dir;
  const std::string args =
      " train --task mqar --pattern 'S*' --d-model 16 --seq-len 16 --vocab 32 --num-pairs 3 "
      "--test-sequences 8 --eval-sequences 8 --eval-every 0 --steps 3 --batch 6 --warmup 1 "
      "--device cpu --threads 1 --log-every 1 --out ";
  const std::string cli = std::string("'") + LONGCTX_CLI + "'";
  const int one = std::system((cli + args + dir.file("one") + " > /dev/null 2>&1").c_str());
  ASSERT_EQ(one, 0);
  const Job two = mpirun(dir, 2, "", cli + args + dir.file("two"));
  ASSERT_EQ(two.status, 0) << two.err;
  const auto a = step_lines(dir.file("one")), b = step_lines(dir.file("two"));
  ASSERT_EQ(a.size(), 3u);
  ASSERT_EQ(b.size(), 3u);
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_LE(std::abs(a[i]["loss"].get<double>() - b[i]["loss"].get<double>()),
              1e-6 * a[i]["loss"].get<double>())
        << "step " << i + 1;
  // One result line (rank 0's), one banner naming the ranks.
  EXPECT_EQ(std::count(two.out.begin(), two.out.end(), '\n'), 1) << two.out;
  EXPECT_NE(two.err.find("x 2 ranks (mpi, data parallel)"), std::string::npos) << two.err;
  std::filesystem::remove_all(dir.file("one"));
  std::filesystem::remove_all(dir.file("two"));
}
#endif

class DataParallelFailure : public testing::TestWithParam<std::string> {};

TEST_P(DataParallelFailure, EndsEveryRankWithinSecondsKeepingTheLastCheckpoint) {
  SKIP_WITHOUT_MPI();
  const std::string mode = GetParam();
  TempDir dir;
  const std::string run = dir.file("run");
  const Job job = mpirun(dir, 2, "LONGCTX_FAILURE=" + mode + " LONGCTX_FAILURE_DIR=" + run,
                         std::string("'") + LONGCTX_MPI_TESTS +
                             "' --gtest_also_run_disabled_tests "
                             "--gtest_filter=DISABLED_DataParallelFailure.*");
  std::printf("%s: the job ended in %.1f s with status %d\n", mode.c_str(), job.seconds,
              job.status);
  EXPECT_NE(job.status, 0) << job.err;
  // Rank 1 fails after step 3 (a few ms a step); everyone is gone within seconds, not hung.
  EXPECT_LT(job.seconds, 30.0) << job.err;
  EXPECT_EQ(job.err.find("the run went on past the failure"), std::string::npos) << job.err;
  if (mode == "throw")
    EXPECT_NE(job.err.find("train: rank 1 of 2: injected failure after step 3"), std::string::npos)
        << job.err;
  // The checkpoint of step 2, whole; no temporary file beside it.
  const SafetensorsFile ckpt = load_safetensors(run + "/checkpoint.safetensors");
  EXPECT_EQ(ckpt.metadata.at("train.step"), "2");
  for (const auto& e : std::filesystem::directory_iterator(run)) {
    const std::string name = e.path().filename().string();
    EXPECT_TRUE(name == ".lock" || name == "checkpoint.safetensors" || name == "log.jsonl" ||
                name == "options.json")
        << "left behind: " << name;
  }
  std::filesystem::remove_all(run);
}

INSTANTIATE_TEST_SUITE_P(Modes, DataParallelFailure, testing::Values("throw", "kill"),
                         [](const testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

// The slices' bounds are floor(T * c / parts) for every T, against 128-bit arithmetic: T * c
// overflowed int64 for T near its range ([2^62 - 1, -1) for rank 1 of 2 at T = 2^63 - 1).
TEST(ContextParallelLayout, SliceBoundsHoldForEveryLength) {
  auto floor_div = [](int64_t T, int64_t c, int64_t parts) {
    return int64_t(static_cast<__int128>(T) * c / parts);
  };
  Rng rng(5);
  for (int i = 0; i < 2000; ++i) {
    const int64_t T = i < 1000 ? rng.integer(0, 1000000) : INT64_MAX - rng.integer(0, 1000000);
    const int n = i % 3 == 0 ? (1 << 30) : int(rng.integer(1, 64));
    const int r = int(rng.integer(0, n - 1));
    const auto z = dist::zigzag_chunks(T, n, r);
    EXPECT_EQ(z[0].begin, floor_div(T, r, 2 * int64_t(n))) << T << " " << n << " " << r;
    EXPECT_EQ(z[0].end, floor_div(T, r + 1, 2 * int64_t(n)));
    EXPECT_EQ(z[1].begin, floor_div(T, 2 * int64_t(n) - 1 - r, 2 * int64_t(n)));
    EXPECT_EQ(z[1].end, floor_div(T, 2 * int64_t(n) - r, 2 * int64_t(n)));
    const auto c = dist::slice_ranges(T, n, r, dist::CpLayout::contiguous);
    ASSERT_EQ(c.size(), 1u);
    EXPECT_EQ(c[0].begin, floor_div(T, r, n));
    EXPECT_EQ(c[0].end, floor_div(T, r + 1, n));
  }
  const auto last = dist::slice_ranges(INT64_MAX, 2, 1, dist::CpLayout::contiguous);
  EXPECT_EQ(last[0].begin, INT64_MAX / 2);
  EXPECT_EQ(last[0].end, INT64_MAX);
  // Past kMaxRanks the remainder's product could overflow: refused.
  EXPECT_LONGCTX_ERROR(dist::zigzag_chunks(10, dist::kMaxRanks + 1, 0), "1 <= n <= 1073741824");
}

}  // namespace
}  // namespace longctx::test
