// The core's clock against the TSC (2.6 GHz here): 4000 iterations of a dec/jnz loop (one
// iteration per core cycle, a dependent chain) timed by rdtsc. No hardware counters in this
// guest, so this is how the core frequency around the products is seen.
#pragma once
#include <x86intrin.h>

inline double core_ghz() {
  const unsigned long long t0 = __rdtsc();
  int n = 4000;
  asm volatile("1: dec %0\n\tjnz 1b" : "+r"(n));
  return 4000.0 / double(__rdtsc() - t0) * 2.6;
}
