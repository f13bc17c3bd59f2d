// CPU threading: a parallel for over [0, n) with the context's thread count (OpenMP underneath).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

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

// The gates' elementwise ops (rglru_gate, gdn_gate) take a row in slices of this many channels,
// each slice through the vectorized exp_array.h functions with its scratch on the stack.
constexpr int64_t kBlockChannels = 64;

// Calls f(row, c0, c1) for the slices [c0, c1) of kBlockChannels channels of every row of a
// (rows, D) array, parallel over rows, each row's slices in order, for elementwise work: the rows
// stream contiguously. (Parallel over blocks of channels, each walking down the rows, the gates'
// forward took 2-3x as long at D = 2560: every row a new page once a row is 4 KB or more, where
// the hardware prefetchers stop; bench/results/2026-12-06-cpu-gates/.)
template <class F>
void for_each_row_slice(const Context& ctx, int64_t rows, int64_t D, F&& f) {
  parallel_for(ctx, rows, [&](int64_t r) {
    for (int64_t c0 = 0; c0 < D; c0 += kBlockChannels) f(r, c0, std::min(D, c0 + kBlockChannels));
  });
}

// for_each_row_slice for elementwise work that also sums over the rows per channel (a gate's
// parameter gradients): f(row, c0, c1, sums) adds its slice's terms into sums (n_sums rows of D,
// sums[k * D + c]), which belong to the row's group (kSumRows rows, more where there would be over
// kMaxSumGroups groups: the groups' sums take at most kMaxSumGroups x n_sums x D values); the
// groups' sums are then added in group order into out (n_sums x D, overwritten). Every sum's order
// depends on the shape alone, not the thread count (deterministic), and the rows stream as in
// for_each_row_slice: rglru_gate's backward at rows = 4096, D = 2560, f32, one thread, 19.5-24.0
// ns an element parallel over channel blocks (each summing its rows in order), 8.5-8.8 so
// (bench/results/2026-12-06-cpu-gates/README.md, the stages). Fewer than 2 x kSumRows rows run on
// one thread.
constexpr int64_t kSumRows = 64, kMaxSumGroups = 256;
template <class T, class F>
void for_each_row_slice_summing(const Context& ctx, int64_t rows, int64_t D, int64_t n_sums, T* out,
                                F&& f) {
  const int64_t group_rows = std::max(kSumRows, (rows + kMaxSumGroups - 1) / kMaxSumGroups);
  const int64_t groups = (rows + group_rows - 1) / group_rows, width = n_sums * D;
  std::vector<T> partial(static_cast<size_t>(groups * width), T(0));
  parallel_for(ctx, groups, [&](int64_t g) {
    T* sums = partial.data() + g * width;
    for (int64_t r = g * group_rows; r < std::min(rows, (g + 1) * group_rows); ++r)
      for (int64_t c0 = 0; c0 < D; c0 += kBlockChannels)
        f(r, c0, std::min(D, c0 + kBlockChannels), sums);
  });
  std::fill(out, out + width, T(0));
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t i = 0; i < width; ++i) out[i] += partial[size_t(g * width + i)];
}

}  // namespace longctx::cpu
