// OpenBLAS's choice of kernels, checked against the CPU (see blas.h).
//
// A DYNAMIC_ARCH OpenBLAS (Debian's, the one longctx builds against) picks its kernels once, at
// load time, from a table of CPU family/model numbers. A CPU newer than its table falls through
// to the SSE3 "Prescott" kernels: Debian 12's OpenBLAS 0.3.21 does that on Emerald Rapids (family
// 6, model 0xCF), whatever AVX-512 the CPU has. Measured there (2-core Xeon VM, 2026-12-06,
// `longctx bench scaling`, 4096 tokens a batch, f32, 2 threads, one binary with
// OPENBLAS_CORETYPE=Prescott and without, alternating, medians of 3;
// bench/results/2026-12-06-cpu-openblas-core/): training steps 1.7-2.9x faster on the SkylakeX
// kernels (llama T = 256 9.6k -> 20.3k tokens/s, mamba2 5.7k -> 16.6k), prefill 1.1-1.8x; llama at
// T = 4096, where attention (no BLAS) dominates, within the noise.
//
// So, when OpenBLAS runs kernels without AVX2 on a CPU with AVX2 + FMA, its selection is run
// again with OPENBLAS_CORETYPE naming the core for the CPU's widest ISA — SkylakeX (AVX-512F and
// VL, as isa.h asks) or Haswell — as if the user had set it. This swaps OpenBLAS's kernels for the
// whole process, so it happens while the library loads (single-threaded, before any BLAS call of
// the program's own); a user's own OPENBLAS_CORETYPE, any value, is left alone.
#include "src/cpu/blas.h"

#include <strings.h>

#include <cstdlib>

// OpenBLAS's run-time core selection (driver/others/dynamic.c): exported by its DYNAMIC_ARCH
// builds, absent from the others — weak, so that a BLAS without them links and is left alone.
extern "C" void gotoblas_dynamic_init(void) __attribute__((weak));
extern "C" void gotoblas_dynamic_quit(void) __attribute__((weak));

namespace longctx::cpu {

namespace {

std::string core_name() {
  const char* name = openblas_get_corename();
  return name ? name : "";
}

// OpenBLAS's cores whose GEMM kernels use AVX2 or AVX-512 (its names, any case).
bool has_avx2_kernels(const std::string& core) {
  for (const char* fast :
       {"Haswell", "Zen", "Excavator", "SkylakeX", "Cooperlake", "SapphireRapids"})
    if (strcasecmp(core.c_str(), fast) == 0) return true;
  return false;
}

// Chosen while the library loads (the static initialisers of a shared library run after those
// of the libraries it depends on, OpenBLAS among them).
const BlasKernels chosen_at_load = choose_blas_kernels();

}  // namespace

BlasKernels choose_blas_kernels() {
  BlasKernels kernels{core_name(), ""};
  if (!gotoblas_dynamic_init || !gotoblas_dynamic_quit || std::getenv("OPENBLAS_CORETYPE") ||
      has_avx2_kernels(kernels.core))
    return kernels;
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();  // may run before libgcc's own constructor has filled the CPU model
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return kernels;
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
  // gotoblas_dynamic_init reads OPENBLAS_CORETYPE and does nothing while a core is set; the
  // variable is removed again after, so child processes see the environment they were given.
  setenv("OPENBLAS_CORETYPE", avx512 ? "SkylakeX" : "Haswell", 1);
  gotoblas_dynamic_quit();
  gotoblas_dynamic_init();
  unsetenv("OPENBLAS_CORETYPE");
  kernels.replaced = kernels.core;
  kernels.core = core_name();
#endif
  return kernels;
}

const BlasKernels& blas_kernels() {
  return chosen_at_load;
}

}  // namespace longctx::cpu
