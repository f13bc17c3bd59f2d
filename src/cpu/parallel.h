// CPU threading: a parallel for over [0, n) with the context's thread count (OpenMP underneath).
#pragma once

#include <cstdint>

#include "longctx/context.h"

namespace longctx::cpu {

// Calls body(i) for every i in [0, n) across ctx.cpu_threads() threads, statically scheduled:
// the callers split work into equal items (rows, heads, tiles), so static is fair and cheap.
template <class Body>
void parallel_for(const Context& ctx, int64_t n, Body&& body) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(ctx.cpu_threads()) if (n > 1)
  for (int64_t i = 0; i < n; ++i) body(i);
#else
  (void)ctx;
  for (int64_t i = 0; i < n; ++i) body(i);
#endif
}

// Same, with dynamic scheduling for items of uneven cost (causal attention tiles).
template <class Body>
void parallel_for_dynamic(const Context& ctx, int64_t n, Body&& body) {
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(ctx.cpu_threads()) if (n > 1)
  for (int64_t i = 0; i < n; ++i) body(i);
#else
  (void)ctx;
  for (int64_t i = 0; i < n; ++i) body(i);
#endif
}

}  // namespace longctx::cpu
