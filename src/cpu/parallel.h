// CPU threading: a parallel for over [0, n) with the context's thread count (OpenMP underneath).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>

#include "longctx/context.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace longctx::cpu {

// Calls body(i) for every i in [0, n) across ctx.cpu_threads() threads, statically scheduled:
// the callers split work into equal items (rows, heads, tiles), so static is fair and cheap.
// A BLAS call inside body stays on its worker's thread: OpenBLAS's OpenMP build sizes its team
// from the caller's nthreads ICV whenever the region is inactive (one thread), and with
// cpu_threads = 1 the SSD's per-chunk sgemms then each started a team of every core, ~25x slower
// on a loaded 2-core machine (the ICV set here lasts for the worker's implicit task only).
//
// One item or one thread runs on the calling thread with no OpenMP region: a region that the
// if clause keeps to one thread still costs libgomp a team (an allocation) and its set-up. A
// d_model 128 llama decode step makes ~40 such calls (norms, adds, RoPE, the cache append). The
// llama preset at d_model 16 (tiny.json in bench/results/2026-12-05-cpu-decode-2, where nearly
// all of a step is per-op overhead) took 45-50 us a token (median of 400 steps) with them and
// 40-43 without (with the KV positions from the arena, src/model/attention_mixer.cpp; one
// thread, 2-core AVX-512 dev VM, load 10-15). The worker's nthreads ICV is 1 there too, as
// inside a region (see below).
#ifdef _OPENMP
class OneThreadIcv {  // omp_set_num_threads(1) for a scope, restored after
 public:
  OneThreadIcv() : saved_(omp_get_max_threads()) { omp_set_num_threads(1); }
  ~OneThreadIcv() { omp_set_num_threads(saved_); }
  OneThreadIcv(const OneThreadIcv&) = delete;
  OneThreadIcv& operator=(const OneThreadIcv&) = delete;

 private:
  int saved_;
};

// Runs body(0 .. n-1) on the calling thread, without a region, when there is one item or one
// thread; says whether it did.
template <class Body>
bool ran_on_caller(const Context& ctx, int64_t n, Body& body) {
  if (n > 1 && ctx.cpu_threads() != 1) return false;
  const OneThreadIcv one;
  for (int64_t i = 0; i < n; ++i) body(i);
  return true;
}
#endif

template <class Body>
void parallel_for(const Context& ctx, int64_t n, Body&& body) {
#ifdef _OPENMP
  if (ran_on_caller(ctx, n, body)) return;
#pragma omp parallel num_threads(ctx.cpu_threads())
  {
    omp_set_num_threads(1);
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i) body(i);
  }
#else
  (void)ctx;
  for (int64_t i = 0; i < n; ++i) body(i);
#endif
}

// Calls first(i) for every i in [0, n1), then, after all of them, second(j) for every j in
// [0, n2): two statically scheduled loops in one region, the loop's barrier between them, for an
// op whose second loop reads what the first wrote (rope's table of angles): one wake-up of the
// sleeping workers instead of two. Not for a first loop whose output the other thread then reads
// in full: small_k_gemm's weight packed this way, half by each thread, made the T = 256 llama
// prefill's 29 projections 2.3 ms CPU and 1.4 ms wall slower (the packed panels travel between
// the cores' caches; bench/results/2026-12-05-cpu-llama-prefill).
template <class First, class Second>
void parallel_for_then(const Context& ctx, int64_t n1, First&& first, int64_t n2, Second&& second) {
#ifdef _OPENMP
  if (ctx.cpu_threads() == 1 || (n1 <= 1 && n2 <= 1)) {
    const OneThreadIcv one;
    for (int64_t i = 0; i < n1; ++i) first(i);
    for (int64_t j = 0; j < n2; ++j) second(j);
    return;
  }
#pragma omp parallel num_threads(ctx.cpu_threads())
  {
    omp_set_num_threads(1);
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n1; ++i) first(i);
#pragma omp for schedule(static)
    for (int64_t j = 0; j < n2; ++j) second(j);
  }
#else
  (void)ctx;
  for (int64_t i = 0; i < n1; ++i) first(i);
  for (int64_t j = 0; j < n2; ++j) second(j);
#endif
}

// Same as parallel_for, with dynamic scheduling for items of uneven cost (causal attention tiles).
template <class Body>
void parallel_for_dynamic(const Context& ctx, int64_t n, Body&& body) {
#ifdef _OPENMP
  if (ran_on_caller(ctx, n, body)) return;
#pragma omp parallel num_threads(ctx.cpu_threads())
  {
    omp_set_num_threads(1);
#pragma omp for schedule(dynamic, 1)
    for (int64_t i = 0; i < n; ++i) body(i);
  }
#else
  (void)ctx;
  for (int64_t i = 0; i < n; ++i) body(i);
#endif
}

// Same as parallel_for, with each thread first taking the items of its own contiguous share (so
// the rows a thread writes stay in its cache for the next op's threads), then, done with those,
// the unclaimed items of the others' shares: the caller works on while a sleeping worker wakes,
// and a worker that lost its core holds back one item. Each item runs once, on some thread: for
// bodies whose result does not depend on which thread runs them (small_k_gemm's row blocks).
template <class Body>
void parallel_for_stealing(const Context& ctx, int64_t n, Body&& body) {
#ifdef _OPENMP
  if (ran_on_caller(ctx, n, body)) return;
  const int threads = int(std::min<int64_t>(ctx.cpu_threads(), n));
  struct alignas(64) Next {  // a share's next unclaimed item, one cache line each
    std::atomic<int64_t> offset{0};
  };
  const std::unique_ptr<Next[]> next(new Next[size_t(threads)]);
#pragma omp parallel num_threads(threads)
  {
    omp_set_num_threads(1);
    const int team = omp_get_num_threads(), t = omp_get_thread_num();
    for (int i = 0; i < team; ++i) {  // its own share, then the ones after it
      const int owner = (t + i) % team;
      const int64_t begin = n * owner / team, end = n * (owner + 1) / team;
      for (int64_t item;
           (item = begin + next[owner].offset.fetch_add(1, std::memory_order_relaxed)) < end;)
        body(item);
    }
  }
#else
  (void)ctx;
  for (int64_t i = 0; i < n; ++i) body(i);
#endif
}

// Calls f(row, c) for every element of a (rows, D) array, parallel over blocks of 64 channels and
// rows in order within each: per-channel sums over the rows (the gates' parameter gradients) come
// out in a fixed order whatever the thread count.
template <class F>
void for_each_by_channel(const Context& ctx, int64_t rows, int64_t D, F&& f) {
  constexpr int64_t kChannelBlock = 64;
  parallel_for(ctx, (D + kChannelBlock - 1) / kChannelBlock, [&](int64_t block) {
    const int64_t c0 = block * kChannelBlock, c1 = std::min(D, c0 + kChannelBlock);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = c0; c < c1; ++c) f(r, c);
  });
}

}  // namespace longctx::cpu
