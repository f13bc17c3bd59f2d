// The BLAS kernels longctx runs on (src/cpu/blas.cpp): never OpenBLAS's SSE3 fallback on a CPU
// with AVX2 + FMA, checked against the CPU's own flags and OpenBLAS's own report.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <strings.h>

#include <cstdlib>
#include <string>

#include "longctx/context.h"
#include "src/cpu/blas.h"

namespace longctx {
namespace {

// OpenBLAS's name for the kernels it runs now, or "" under another BLAS.
std::string openblas_core() {
  auto* corename = reinterpret_cast<char* (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  return corename && corename() ? corename() : "";
}

TEST(Blas, KernelsMatchTheCpu) {
  if (std::getenv("OPENBLAS_CORETYPE"))
    GTEST_SKIP() << "OPENBLAS_CORETYPE is set: the user's choice is kept, nothing to check";
  // The first call chooses (every GEMM wrapper in blas.h calls it first; the rest of the suite
  // checks the GEMMs' results), then what OpenBLAS says it runs.
  const std::string& kernels = cpu::blas_kernels();
  const std::string core = openblas_core();
  if (core.empty()) GTEST_SKIP() << "not OpenBLAS (no openblas_get_corename)";
  EXPECT_EQ(kernels.rfind(core, 0), 0u)
      << "blas_kernels() " << kernels << " should start with " << core;
  EXPECT_EQ(build_info().blas_kernels, kernels);
#if defined(__x86_64__) && defined(__GNUC__)
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"))
    GTEST_SKIP() << "this CPU has no AVX2 + FMA: any OpenBLAS kernels will do";
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
  bool ok = false;
  for (const char* name : {"Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids"})
    ok = ok || strcasecmp(core.c_str(), name) == 0;
  EXPECT_TRUE(ok) << "OpenBLAS runs its " << core << " kernels on a CPU with "
                  << (avx512 ? "AVX-512" : "AVX2 + FMA");
  // Where longctx had to choose, it chose the kernels of the CPU's widest ISA.
  if (kernels.find("OpenBLAS chose") != std::string::npos)
    EXPECT_EQ(core, avx512 ? "SkylakeX" : "Haswell");
#endif
}

}  // namespace
}  // namespace longctx
