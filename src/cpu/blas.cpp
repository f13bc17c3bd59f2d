// OpenBLAS's choice of kernels, checked against the CPU (see blas.h).
//
// A DYNAMIC_ARCH OpenBLAS (Debian's, the one longctx builds against) picks its kernels once, at
// load time, from a table of CPU family/model numbers. A CPU newer than its table falls through
// to the SSE3 "Prescott" kernels: Debian 12's OpenBLAS 0.3.21 does that on Emerald Rapids (family
// 6, model 0xCF), whatever AVX-512 the CPU has. Measured there (2-core Xeon VM, 2026-12-06,
// `longctx bench scaling`, 4096 tokens a batch, f32, 2 threads, one binary with
// OPENBLAS_CORETYPE=Prescott and without, alternating, medians of 3;
// bench/results/2026-12-06-cpu-openblas-core/): training steps 1.7-2.9x faster on the SkylakeX
// kernels (llama T = 256 9.6k -> 20.3k tokens/s, mamba2 5.7k -> 16.6k), prefill 1.1-1.8x; llama's
// training at T = 4096, where attention (no BLAS) dominates, not resolved on this VM (0.83, the
// chosen kernels' rounds 3.6k-6.0k tokens/s against Prescott's 4.2k-4.5k).
//
// So, when OpenBLAS runs kernels without AVX2 on a CPU with AVX2 + FMA, its selection is run
// again with OPENBLAS_CORETYPE naming the core for the CPU's widest ISA — SkylakeX (AVX-512F and
// VL, as isa.h asks) or Haswell — as if the user had set it. This swaps OpenBLAS's kernels for the
// whole process, so it happens while the library loads: in a program linked with it, before main
// and before any BLAS call of the program's own. A host that dlopen()s longctx while its own
// threads run OpenBLAS should set OPENBLAS_CORETYPE (any value: a user's choice is left alone).
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

// The cores OpenBLAS itself picks for CPUs of the AVX2 class and newer (its names, any case):
// its choice is kept there (Excavator's GEMM kernels are AVX + FMA3, OpenBLAS's own call).
bool has_avx2_kernels(const std::string& core) {
  for (const char* fast :
       {"Haswell", "Zen", "Excavator", "SkylakeX", "Cooperlake", "SapphireRapids"})
    if (strcasecmp(core.c_str(), fast) == 0) return true;
  return false;
}

// Makes the choice while the library loads.
[[maybe_unused]] const BlasKernels& chosen_at_load = blas_kernels();

}  // namespace

bool select_openblas_core(const char* core) {
  if (!gotoblas_dynamic_init || !gotoblas_dynamic_quit) return false;
  // gotoblas_dynamic_init reads OPENBLAS_CORETYPE and does nothing while a core is set; the
  // variable is removed again after, so child processes see the environment they were given.
  setenv("OPENBLAS_CORETYPE", core, 1);
  gotoblas_dynamic_quit();
  gotoblas_dynamic_init();
  unsetenv("OPENBLAS_CORETYPE");
  return true;
}

BlasKernels choose_blas_kernels() {
  // OpenBLAS's own choice first: a shared OpenBLAS has made it already (the libraries a library
  // depends on are initialised before it), a static one may not have yet (then this makes it).
  if (gotoblas_dynamic_init) gotoblas_dynamic_init();
  BlasKernels kernels{core_name(), ""};
  if (std::getenv("OPENBLAS_CORETYPE") || has_avx2_kernels(kernels.core)) return kernels;
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();  // may run before libgcc's own constructor has filled the CPU model
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return kernels;
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
  if (!select_openblas_core(avx512 ? "SkylakeX" : "Haswell")) return kernels;
  const std::string now = core_name();
  if (now != kernels.core) kernels = {now, kernels.core};  // (an OpenBLAS without the core: same)
#endif
  return kernels;
}

const BlasKernels& blas_kernels() {
  static const BlasKernels kernels = choose_blas_kernels();
  return kernels;
}

}  // namespace longctx::cpu
