// Run-time choice of the CPU kernels' ISA (see isa.h).
#include "src/cpu/isa.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

namespace longctx::cpu {

namespace {

// What the CPU and the build allow, and LONGCTX_CPU_ISA's cap, once.
CpuIsa detected() {
#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__) && defined(__GNUC__)
  static const CpuIsa isa = [] {
    const char* env = std::getenv("LONGCTX_CPU_ISA");
    if (env && std::strcmp(env, "avx2") == 0) return CpuIsa::avx2;
    const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
    return avx512 ? CpuIsa::avx512 : CpuIsa::avx2;
  }();
  return isa;
#else
  return CpuIsa::avx2;  // no AVX-512 kernels in this build (the AVX2 ones may be absent too)
#endif
}

std::atomic<int> cap{int(CpuIsa::avx512)};

}  // namespace

CpuIsa cpu_isa() {
  return CpuIsa(std::min(int(detected()), cap.load(std::memory_order_relaxed)));
}

void set_cpu_isa_cap(CpuIsa isa) {
  cap.store(int(isa), std::memory_order_relaxed);
}

const char* cpu_isa_name(CpuIsa isa) {
  return isa == CpuIsa::avx512 ? "avx512" : "avx2";
}

}  // namespace longctx::cpu
