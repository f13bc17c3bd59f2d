// cross_entropy on the CPU: one row per work item (max, then sum of exp, in the compute type);
// the loss is summed over rows in row order in double, so it does not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "longctx/ops/cross_entropy.h"
#include "src/core/dispatch.h"
#include "src/cpu/parallel.h"
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

}  // namespace

void cross_entropy_fwd(const Context& ctx, const Tensor& loss, const Tensor& lse,
                       const Tensor& logits, const Tensor& targets,
                       const CrossEntropyParams& params) {
  dispatch_cpu_float("cross_entropy_fwd", logits.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t V = logits.size(-1), N = logits.numel() / V;
    const int32_t* tgt = targets.data_as<int32_t>();  // (N)
    const int64_t labelled = check_targets("cross_entropy_fwd", tgt, N, V, params.ignore_index);
    const T* x = logits.data_as<T>();  // (N, V)
    T* lse_p = lse.data_as<T>();       // (N)
    std::vector<T> row_loss(static_cast<size_t>(N));
    parallel_for(ctx, N, [&](int64_t n) {
      const T* xr = x + n * V;
      T m = -std::numeric_limits<T>::infinity();
      for (int64_t v = 0; v < V; ++v) m = std::max(m, xr[v]);
      T sum = 0;
      // exp(-inf - -inf) would be NaN: a row of -inf logits has lse = -inf.
      if (m != -std::numeric_limits<T>::infinity())
        for (int64_t v = 0; v < V; ++v) sum += std::exp(xr[v] - m);
      const T row_lse = sum > 0 ? m + std::log(sum) : m;
      lse_p[n] = row_lse;
      row_loss[size_t(n)] = tgt[n] == params.ignore_index ? T(0) : row_lse - xr[tgt[n]];
    });
    double total = 0;
    for (int64_t n = 0; n < N; ++n) total += double(row_loss[size_t(n)]);
    loss.data_as<T>()[0] = labelled > 0 ? T(total / double(labelled)) : T(0);
  });
}

void cross_entropy_bwd(const Context& ctx, const Tensor& dlogits, const Tensor& dloss,
                       const Tensor& logits, const Tensor& targets, const Tensor& lse,
                       const CrossEntropyParams& params) {
  dispatch_cpu_float("cross_entropy_bwd", logits.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t V = logits.size(-1), N = logits.numel() / V;
    const int32_t* tgt = targets.data_as<int32_t>();  // (N)
    const int64_t labelled = check_targets("cross_entropy_bwd", tgt, N, V, params.ignore_index);
    const T scale = labelled > 0 ? dloss.data_as<T>()[0] / T(labelled) : T(0);
    const T* x = logits.data_as<T>();   // (N, V)
    const T* lse_p = lse.data_as<T>();  // (N)
    T* dx = dlogits.data_as<T>();       // (N, V); may be x (each element read, then written)
    parallel_for(ctx, N, [&](int64_t n) {
      const T* xr = x + n * V;
      T* dxr = dx + n * V;
      if (tgt[n] == params.ignore_index) {
        std::fill(dxr, dxr + V, T(0));
        return;
      }
      const T row_lse = lse_p[n];
      for (int64_t v = 0; v < V; ++v) dxr[v] = scale * std::exp(xr[v] - row_lse);
      dxr[tgt[n]] -= scale;
    });
  });
}

}  // namespace longctx::cpu
