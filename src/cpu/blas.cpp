// OpenBLAS's choice of kernels, checked against the CPU (see blas.h).
//
// A DYNAMIC_ARCH OpenBLAS (Debian's, the one longctx builds against) picks its kernels once, at
// load time, from a table of CPU family/model numbers. A CPU newer than its table falls through
// to the SSE3 "Prescott" kernels: Debian 12's OpenBLAS 0.3.21 does that on Emerald Rapids (family
// 6, model 0xCF), whatever AVX-512 the CPU has. Measured there (2-core Xeon VM, 2026-12-06, the
// peer harness's models, f32, 2 threads; bench/results/2026-12-06-cpu-openblas-core/): training
// steps 1.4-2.8x and prefill 0.7-2.2x slower on Prescott than on the SkylakeX kernels.
//
// So, before longctx's first BLAS call, when OpenBLAS runs kernels without AVX2 on a CPU that has
// AVX2 + FMA (AVX-512F/VL: isa.h), its selection is run again with OPENBLAS_CORETYPE naming the
// core for the CPU's ISA — SkylakeX or Haswell — as if the user had set it. A user's own
// OPENBLAS_CORETYPE is left alone, and so is any BLAS without OpenBLAS's dynamic selection
// (looked up by name, so nothing here needs it to link).
#include "src/cpu/blas.h"

#include <dlfcn.h>
#include <strings.h>

#include <cstdlib>
#include <string>

namespace longctx::cpu {

namespace {

template <class F>
F* openblas_function(const char* name) {
  return reinterpret_cast<F*>(dlsym(RTLD_DEFAULT, name));
}

std::string core_name() {
  auto* corename = openblas_function<char*()>("openblas_get_corename");
  const char* name = corename ? corename() : nullptr;
  return name ? name : "";
}

// OpenBLAS's cores whose GEMM kernels use AVX2 or AVX-512 (its names, any case).
bool has_avx2_kernels(const std::string& core) {
  for (const char* fast : {"Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids"})
    if (strcasecmp(core.c_str(), fast) == 0) return true;
  return false;
}

std::string select() {
  const std::string chosen = core_name();
  auto* init = openblas_function<void()>("gotoblas_dynamic_init");
  auto* quit = openblas_function<void()>("gotoblas_dynamic_quit");
  if (chosen.empty() || !init || !quit || std::getenv("OPENBLAS_CORETYPE") ||
      has_avx2_kernels(chosen))
    return chosen;
#if defined(__x86_64__) && defined(__GNUC__)
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return chosen;
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
  // gotoblas_dynamic_init reads OPENBLAS_CORETYPE and does nothing while a core is set; the
  // variable is removed again after, so child processes see the environment they were given.
  setenv("OPENBLAS_CORETYPE", avx512 ? "SkylakeX" : "Haswell", 1);
  quit();
  init();
  unsetenv("OPENBLAS_CORETYPE");
  const std::string now = core_name();
  return now + " (OpenBLAS chose " + chosen + ")";
#else
  return chosen;
#endif
}

}  // namespace

const std::string& blas_kernels() {
  static const std::string kernels = select();
  return kernels;
}

}  // namespace longctx::cpu
