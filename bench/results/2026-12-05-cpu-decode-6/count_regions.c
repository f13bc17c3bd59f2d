// Counts a process's OpenMP parallel regions: an LD_PRELOAD shim around libgomp's entry points
// for `#pragma omp parallel` (GOMP_parallel, GCC's since 4.9) and the loop-combined forms GCC
// emits for `parallel for` with a schedule, printing the counts at exit. Regions a token = the
// difference of two runs' counts over the difference of their token counts.
//
//   gcc -O2 -shared -fPIC count_regions.c -o count_regions.so -ldl
//   LD_PRELOAD=./count_regions.so bench_decode ...
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>

static unsigned long regions, loops;

typedef void (*parallel_fn)(void (*)(void*), void*, unsigned, unsigned);
void GOMP_parallel(void (*fn)(void*), void* data, unsigned num_threads, unsigned flags) {
  static parallel_fn real;
  if (!real) real = (parallel_fn)dlsym(RTLD_NEXT, "GOMP_parallel");
  __atomic_fetch_add(&regions, 1, __ATOMIC_RELAXED);
  real(fn, data, num_threads, flags);
}

typedef void (*loop_fn)(void (*)(void*), void*, unsigned, long, long, long, long, unsigned);
#define LOOP(name)                                                                     \
  void name(void (*fn)(void*), void* data, unsigned n, long a, long b, long c, long d, \
            unsigned flags) {                                                          \
    static loop_fn real;                                                               \
    if (!real) real = (loop_fn)dlsym(RTLD_NEXT, #name);                                \
    __atomic_fetch_add(&loops, 1, __ATOMIC_RELAXED);                                   \
    real(fn, data, n, a, b, c, d, flags);                                              \
  }
LOOP(GOMP_parallel_loop_static)
LOOP(GOMP_parallel_loop_dynamic)

__attribute__((destructor)) static void report(void) {
  fprintf(stderr, "count_regions: GOMP_parallel %lu, GOMP_parallel_loop_* %lu\n", regions, loops);
}
