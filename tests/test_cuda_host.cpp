// Host-side logic of the CUDA backend, checked without a GPU: the launch-grid layout, the cache of
// cuBLASLt's algorithm choices and the row chunks of fixed-order reductions (kernels/common/).
// The kernels that use them have their CUDA cases in the op tests.
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <thread>
#include <vector>

#include "harness.h"
#include "kernels/common/gemm_algo_cache.h"
#include "kernels/common/grid.h"
#include "kernels/common/row_chunks.h"

namespace longctx::test {
namespace {

// Every block of a flat grid maps to a distinct (i0, i1, i2) in range, in CUDA's order for a
// 3-D grid (i0 fastest), for shapes whose y or z would pass 65535.
TEST(FlatGrid, UnflattenVisitsEveryIndexOnceInGridOrder) {
  const std::vector<std::array<int64_t, 3>> shapes = {
      {1, 1, 1}, {3, 5, 7}, {1, 1, 70000}, {2, 40000, 1}, {9, 2, 76800}};
  for (const auto& [n0, n1, n2] : shapes) {
    const unsigned blocks = cuda::flat_grid("test", n0, n1, n2);
    ASSERT_EQ(int64_t(blocks), n0 * n1 * n2);
    int64_t expected = 0;
    for (int64_t i2 = 0; i2 < n2; ++i2)
      for (int64_t i1 = 0; i1 < n1; ++i1)
        for (int64_t i0 = 0; i0 < n0; ++i0, ++expected) {
          const cuda::GridIndex g = cuda::unflatten(unsigned(expected), unsigned(n0), unsigned(n1));
          if (g.i0 != i0 || g.i1 != i1 || g.i2 != i2) {
            ADD_FAILURE() << "block " << expected << " of (" << n0 << ", " << n1 << ", " << n2
                          << ") -> (" << g.i0 << ", " << g.i1 << ", " << g.i2 << "), expected ("
                          << i0 << ", " << i1 << ", " << i2 << ")";
            return;
          }
        }
  }
}

TEST(FlatGrid, TwoDimensionalGridsLeaveTheThirdIndexZero) {
  const int64_t n0 = 70000, n1 = 3;
  for (unsigned block = 0; block < n0 * n1; block += 997) {
    const cuda::GridIndex g = cuda::unflatten(block, unsigned(n0));
    EXPECT_EQ(int64_t(g.i0) + n0 * g.i1, int64_t(block));
    EXPECT_EQ(g.i2, 0);
    EXPECT_LT(g.i1, n1);
  }
}

TEST(FlatGrid, TheLargestBlockIndexAndTheLimit) {
  // 2^31 - 1 blocks is the most gridDim.x takes (a prime: only n0 = 2^31 - 1 reaches it); the
  // last block decodes to the last index.
  EXPECT_EQ(int64_t(cuda::flat_grid("test", cuda::kMaxGridX, 1, 1)), cuda::kMaxGridX);
  const int64_t n0 = 65537, n1 = 32767;  // 2^31 - 2^15 - 1 blocks
  const unsigned blocks = cuda::flat_grid("test", n0, n1, 1);
  EXPECT_EQ(int64_t(blocks), n0 * n1);
  const cuda::GridIndex last = cuda::unflatten(blocks - 1, unsigned(n0), unsigned(n1));
  EXPECT_EQ(last.i0, n0 - 1);
  EXPECT_EQ(last.i1, n1 - 1);
  EXPECT_EQ(last.i2, 0);
  EXPECT_LONGCTX_ERROR(cuda::flat_grid("attention (forward)", n0, n1, 2), "attention (forward)",
                       "65537 x 32767 x 2 blocks", "2^31 - 1");
  EXPECT_LONGCTX_ERROR(cuda::flat_grid("op", cuda::kMaxGridX, 1, 2), "op", "2^31 - 1");
  EXPECT_LONGCTX_ERROR(cuda::flat_grid("op", int64_t(1) << 40, int64_t(1) << 40, 1), "op",
                       "2^31 - 1");
  EXPECT_LONGCTX_ERROR(cuda::flat_grid("op", 4, 0, 2), "op", "4 x 0 x 2");
}

cuda::GemmKey some_key() {
  cuda::GemmKey k;
  k.M = 512, k.N = 768, k.K = 256, k.lda = 256, k.ldb = 768, k.ldc = 768;
  k.dtype = 1, k.compute = 68, k.align_a = 256, k.align_b = 16, k.align_c = 256;
  return k;
}

// Each field the heuristic's answer depends on tells keys apart.
TEST(GemmAlgoCache, EveryFieldOfTheKeyCounts) {
  const cuda::GemmKey base = some_key();
  std::vector<cuda::GemmKey> variants;
  auto vary = [&](auto edit) {
    cuda::GemmKey k = base;
    edit(k);
    variants.push_back(k);
  };
  vary([](cuda::GemmKey& k) { k.M += 1; });
  vary([](cuda::GemmKey& k) { k.N += 1; });
  vary([](cuda::GemmKey& k) { k.K += 1; });
  vary([](cuda::GemmKey& k) { k.lda += 1; });
  vary([](cuda::GemmKey& k) { k.ldb += 1; });
  vary([](cuda::GemmKey& k) { k.ldc += 1; });
  vary([](cuda::GemmKey& k) { k.dtype = 2; });
  vary([](cuda::GemmKey& k) { k.compute = 77; });
  vary([](cuda::GemmKey& k) { k.align_a = 4; });
  vary([](cuda::GemmKey& k) { k.align_b = 4; });
  vary([](cuda::GemmKey& k) { k.align_c = 4; });
  vary([](cuda::GemmKey& k) { k.trans_a = true; });
  vary([](cuda::GemmKey& k) { k.trans_b = true; });
  vary([](cuda::GemmKey& k) { k.bias = true; });
  cuda::GemmAlgoCache<int> cache;
  int asked = 0;
  EXPECT_EQ(cache.get(base, [&] { return ++asked; }), 1);
  for (size_t i = 0; i < variants.size(); ++i) {
    EXPECT_FALSE(variants[i] == base) << "variant " << i;
    EXPECT_EQ(cache.get(variants[i], [&] { return ++asked; }), int(i) + 2) << "variant " << i;
  }
  EXPECT_EQ(cache.size(), variants.size() + 1);
  // Asked again, every key answers from the cache.
  EXPECT_EQ(cache.get(base, [&] { return ++asked; }), 1);
  for (size_t i = 0; i < variants.size(); ++i)
    EXPECT_EQ(cache.get(variants[i], [&] { return ++asked; }), int(i) + 2);
  EXPECT_EQ(asked, int(variants.size()) + 1);
}

// Threads asking for the same keys at once: each key's answer is computed once and every thread
// gets it.
TEST(GemmAlgoCache, ConcurrentCallersAskTheHeuristicOncePerKey) {
  cuda::GemmAlgoCache<int64_t> cache;
  std::atomic<int> asked{0};
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&] {
      for (int rep = 0; rep < 200; ++rep)
        for (int64_t m = 1; m <= 16; ++m) {
          cuda::GemmKey k = some_key();
          k.M = m;
          const int64_t got = cache.get(k, [&] {
            ++asked;
            return m * 1000;
          });
          if (got != m * 1000) ++wrong;
        }
    });
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(asked.load(), 16);
  EXPECT_EQ(wrong.load(), 0);
}

// A failed question caches nothing; past kMaxEntries keys the cache starts over.
TEST(GemmAlgoCache, ThrowingQuestionsAreNotCachedAndTheSizeIsBounded) {
  cuda::GemmAlgoCache<int> cache;
  const cuda::GemmKey k = some_key();
  EXPECT_THROW(cache.get(k, []() -> int { throw Error("heuristic failed"); }), Error);
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_EQ(cache.get(k, [] { return 7; }), 7);
  for (size_t i = 0; i < cuda::GemmAlgoCache<int>::kMaxEntries + 10; ++i) {
    cuda::GemmKey other = some_key();
    other.K = int64_t(i) + 1000;
    cache.get(other, [] { return 1; });
    ASSERT_LE(cache.size(), cuda::GemmAlgoCache<int>::kMaxEntries);
  }
}

// The chunks of a fixed-order reduction over rows cover every row once, none empty, at most
// max_chunks of them, at least min_rows rows each but the last.
TEST(RowChunks, CoverTheRowsWithinTheBounds) {
  for (int64_t rows : {0, 1, 63, 64, 65, 8200, 16384, 16385, 20000, 1 << 22}) {
    const cuda::RowChunks s = cuda::row_chunks(rows, 256, 64);
    EXPECT_LE(s.chunks, 256) << rows;
    EXPECT_GE(s.rows_per_chunk, 64) << rows;
    EXPECT_GE(s.chunks * s.rows_per_chunk, rows) << rows;
    if (rows == 0) {
      EXPECT_EQ(s.chunks, 0);
      continue;
    }
    EXPECT_LT((s.chunks - 1) * s.rows_per_chunk, rows) << rows << ": the last chunk is empty";
  }
  EXPECT_EQ(cuda::row_chunks(8200, 256, 64).chunks, 129);
  EXPECT_EQ(cuda::row_chunks(20000, 256, 64).rows_per_chunk, 79);
}

}  // namespace
}  // namespace longctx::test
