// The BLAS kernels longctx runs on (src/cpu/blas.cpp): never OpenBLAS's SSE3 fallback on a CPU
// with AVX2 + FMA, checked against the CPU's own flags and OpenBLAS's own report.
#include <gtest/gtest.h>
#include <strings.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "longctx/context.h"
#include "src/cpu/blas.h"

namespace longctx {
namespace {

std::string openblas_core() {
  const char* name = openblas_get_corename();
  return name ? name : "";
}

// The cores OpenBLAS picks for AVX2-class CPUs: written out here on purpose, not taken from
// blas.cpp, so that a change there has to agree with this list.
bool has_avx2_kernels(const std::string& core) {
  for (const char* name :
       {"Haswell", "Zen", "Excavator", "SkylakeX", "Cooperlake", "SapphireRapids"})
    if (strcasecmp(core.c_str(), name) == 0) return true;
  return false;
}

// Skips unless longctx makes the choice here: an x86 CPU with AVX2 + FMA, a DYNAMIC_ARCH
// OpenBLAS (without it the kernels are fixed at build time: probed by selecting the current core
// again) and OPENBLAS_CORETYPE unset.
#if defined(__x86_64__) && defined(__GNUC__)
#define LONGCTX_SKIP_UNLESS_LONGCTX_CHOOSES()                                                \
  if (std::getenv("OPENBLAS_CORETYPE"))                                                      \
    GTEST_SKIP() << "OPENBLAS_CORETYPE is set: the user's choice is kept, nothing to check"; \
  if (!cpu::select_openblas_core(openblas_core().c_str()))                                   \
    GTEST_SKIP() << "OpenBLAS without DYNAMIC_ARCH: its kernels are fixed at build time";    \
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"))                     \
    GTEST_SKIP() << "this CPU has no AVX2 + FMA: any OpenBLAS kernels will do";
#else
#define LONGCTX_SKIP_UNLESS_LONGCTX_CHOOSES() GTEST_SKIP() << "not an x86-64 CPU";
#endif

TEST(Blas, KernelsMatchTheCpu) {
  LONGCTX_SKIP_UNLESS_LONGCTX_CHOOSES();
  const std::string core = openblas_core();
  EXPECT_EQ(cpu::blas_kernels().core, core);
  EXPECT_EQ(build_info().blas_kernels, core);
  EXPECT_TRUE(has_avx2_kernels(core)) << "OpenBLAS runs its " << core << " kernels";
}

// On any CPU with AVX2: put OpenBLAS back on its Prescott kernels, as it chooses on a CPU newer
// than its table, and check that the choice replaces them and the GEMM still computes A·B.
TEST(Blas, ReplacesTheSse3Fallback) {
  LONGCTX_SKIP_UNLESS_LONGCTX_CHOOSES();
  const std::string before = openblas_core();
  struct Restore {  // the kernels the process ran before, whatever the test's outcome
    std::string core;
    ~Restore() { cpu::select_openblas_core(core.c_str()); }
  } restore{before};
  cpu::select_openblas_core("Prescott");
  ASSERT_EQ(openblas_core(), "Prescott");

  const cpu::BlasKernels kernels = cpu::choose_blas_kernels();
  EXPECT_EQ(kernels.replaced, "Prescott");
  EXPECT_EQ(kernels.core, openblas_core());
  EXPECT_TRUE(has_avx2_kernels(kernels.core)) << kernels.core;
  EXPECT_EQ(std::getenv("OPENBLAS_CORETYPE"), nullptr);

  // C = A·B with C full of NaN (beta = 0 must not read it), against a double sum, within the
  // worst case of any f32 summation order: K·u·Σ|a||b| (u = 2^-24).
  const int64_t M = 37, N = 29, K = 53;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> a(M * K), b(K * N), c(M * N, std::numeric_limits<float>::quiet_NaN());
  for (float& x : a) x = u(rng);
  for (float& x : b) x = u(rng);
  cpu::gemm(false, false, M, N, K, 1.f, a.data(), K, b.data(), N, 0.f, c.data(), N);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double ref = 0, magnitude = 0;
      for (int64_t k = 0; k < K; ++k) {
        ref += double(a[i * K + k]) * b[k * N + j];
        magnitude += std::abs(double(a[i * K + k]) * b[k * N + j]);
      }
      ASSERT_NEAR(c[i * N + j], ref, K * 0x1p-24 * magnitude) << "C(" << i << ", " << j << ")";
    }
}

}  // namespace
}  // namespace longctx
