// cross_entropy on the CPU: one row per work item (max, then sum of exp, in the compute type);
// the loss is summed over rows in row order in double, so it does not depend on the thread count.
// The exponentials go through exp_array (src/cpu/exp_array.h: vectorized in f32, std::exp in
// f64), a row's in chunks of kChunk in a stack scratch (forward) or in place in dlogits
// (backward), and the forward sums them in 8 interleaved partial sums added in a fixed order. With
// a scalar std::exp per logit before: in the llama preset's training step (T = 256, vocab 256,
// 4096 rows, 2 threads, `longctx bench scaling --profile`, three alternating runs) the forward
// 6.8-7.5 -> 2.7-2.8 ms CPU and the backward 5.7-5.9 -> 1.0-1.4
// (bench/results/2026-12-06-cpu-gates/).
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "src/core/dispatch.h"
#include "src/cpu/exp_array.h"
#include "src/cpu/parallel.h"
#include "src/ops/cross_entropy.h"
#include "src/ops/index_errors.h"

namespace longctx::cpu {

namespace {

// Throws for a target that is neither ignore_index nor in [0, V); returns the labelled count.
int64_t check_targets(const char* op, const int32_t* targets, int64_t N, int64_t V,
                      int32_t ignore_index) {
  int64_t labelled = 0;
  for (int64_t i = 0; i < N; ++i) {
    const int32_t t = targets[i];
    if (t == ignore_index) continue;
    if (t < 0 || t >= V)
      throw_index_out_of_range(op, "targets", i, t, V,
                               ", or ignore_index = " + std::to_string(ignore_index));
    ++labelled;
  }
  return labelled;
}

// Σ_v exp(x[v] − m) over a row of V logits: kChunk at a time through exp_array, summed in 8
// interleaved partial sums (element v into sum v % 8), added in a fixed order at the end.
template <class T>
T sum_exp_shifted(const T* x, int64_t V, T m) {
  constexpr int64_t kChunk = 256;  // a multiple of 8: every chunk starts at lane 0
  T e[kChunk], part[8] = {};
  for (int64_t v0 = 0; v0 < V; v0 += kChunk) {
    const int64_t n = std::min(kChunk, V - v0);
    for (int64_t j = 0; j < n; ++j) e[j] = x[v0 + j] - m;
    exp_array(e, e, n);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
      for (int l = 0; l < 8; ++l) part[l] += e[j + l];
    for (; j < n; ++j) part[j % 8] += e[j];
  }
  return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
}

}  // namespace

// On the CPU stat_dtype(dtype) is dtype itself (f32 -> f32, f64 -> f64): lse and the loss are T.
void cross_entropy_fwd(const Context& ctx, const CrossEntropyArgs& args) {
  dispatch_cpu_float("cross_entropy_fwd", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t V = args.V, N = args.N;
    const int32_t ignore = args.ignore_index;
    const int32_t* tgt = args.targets;  // (N)
    const int64_t labelled = check_targets("cross_entropy_fwd", tgt, N, V, ignore);
    const T* x = static_cast<const T*>(args.logits);  // (N, V)
    T* lse_p = static_cast<T*>(args.lse);             // (N)
    std::vector<T> row_loss(static_cast<size_t>(N));
    parallel_for(ctx, N, [&](int64_t n) {
      const T* xr = x + n * V;
      T m = -std::numeric_limits<T>::infinity();
      for (int64_t v = 0; v < V; ++v) m = std::max(m, xr[v]);
      T sum = 0;
      // exp(-inf - -inf) would be NaN: a row of -inf logits has lse = -inf.
      if (m != -std::numeric_limits<T>::infinity()) sum = sum_exp_shifted(xr, V, m);
      const T row_lse = sum > 0 ? m + std::log(sum) : m;
      lse_p[n] = row_lse;
      row_loss[size_t(n)] = tgt[n] == ignore ? T(0) : row_lse - xr[tgt[n]];
    });
    double total = 0;
    for (int64_t n = 0; n < N; ++n) total += double(row_loss[size_t(n)]);
    static_cast<T*>(args.loss)[0] = labelled > 0 ? T(total / double(labelled)) : T(0);
  });
}

void cross_entropy_bwd(const Context& ctx, const CrossEntropyArgs& args) {
  dispatch_cpu_float("cross_entropy_bwd", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t V = args.V, N = args.N;
    const int32_t ignore = args.ignore_index;
    const int32_t* tgt = args.targets;  // (N)
    const int64_t labelled = check_targets("cross_entropy_bwd", tgt, N, V, ignore);
    const T scale = labelled > 0 ? static_cast<const T*>(args.dloss)[0] / T(labelled) : T(0);
    const T* x = static_cast<const T*>(args.logits);   // (N, V)
    const T* lse_p = static_cast<const T*>(args.lse);  // (N)
    T* dx = static_cast<T*>(args.dlogits);  // (N, V); may be x (each element read, then written)
    parallel_for(ctx, N, [&](int64_t n) {
      const T* xr = x + n * V;
      T* dxr = dx + n * V;
      if (tgt[n] == ignore) {
        std::fill(dxr, dxr + V, T(0));
        return;
      }
      const T row_lse = lse_p[n];
      for (int64_t v = 0; v < V; ++v) dxr[v] = xr[v] - row_lse;
      exp_array(dxr, dxr, V);
      for (int64_t v = 0; v < V; ++v) dxr[v] *= scale;
      dxr[tgt[n]] -= scale;
    });
  });
}

}  // namespace longctx::cpu
