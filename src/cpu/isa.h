// The vector instruction set the CPU kernels use, chosen at run time. The library is built for
// x86-64-v3 (AVX2 + FMA) so that one binary runs on every machine of that class; kernels that
// also have AVX-512 versions (compiled for it by function attribute) use them when the CPU has
// AVX-512F and AVX-512VL (every AVX-512 CPU since Skylake-SP; the VL forms give 256-bit code the
// 32 registers). Both versions compute the same sums in the same order: results are bitwise the
// same whichever runs.
//
// LONGCTX_CPU_ISA=avx2 in the environment (read once, at the first call) keeps the AVX2 kernels
// on an AVX-512 machine: to benchmark the two in one build. Tests use set_cpu_isa_cap.
#pragma once

namespace longctx::cpu {

enum class CpuIsa { avx2, avx512 };

// The widest ISA both the CPU and the build support, at most the cap.
CpuIsa cpu_isa();

// Caps cpu_isa() (tests: the AVX2 kernels on an AVX-512 machine); not for use while ops run.
void set_cpu_isa_cap(CpuIsa cap);

const char* cpu_isa_name(CpuIsa isa);

}  // namespace longctx::cpu
