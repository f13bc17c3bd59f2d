// rmsnorm on the CPU: one row per work item; dweight reduced over fixed row chunks so the result
// does not depend on the thread count. With a residual (add_rmsnorm_fwd) a row's sum h is
// written and then normalised while it is in L1; in the backward the residual gradient dh is
// added as dx is written. That saves a pass over (rows, C) and an OpenMP region each way: on
// the presets' (4096, 128) f32 activations 309 us CPU against 491 for add_fwd + rmsnorm_fwd,
// and 373 against 569 for rmsnorm_bwd + add_fwd (medians of 400 alternated calls, 2 threads,
// load 24). Inside a training step, whose activations come from memory, less: 1.5-4 ms CPU of
// the adds and norms per step of the llama, hybrid and mamba2 presets at T = 256 and 4096
// (llama T = 256: 15.6 ms instead of 17.1, 0.5% of the step; per-op profiles alternated with
// main, bench/results/2026-12-05-cpu-fused-norm).
// A row's sums (the forward's sum of squares, the backward's dot) are lane_sum's eight
// interleaved partial sums, not one running sum (a chain of dependent FMAs, which the compiler
// may not reorder): at (4096, 128) f32, 2 threads, medians of 201 calls in three rounds
// alternating with the single sum, forward 0.41-0.47 -> 0.25-0.26 ms CPU, backward 0.64 ->
// 0.38-0.39; at C = 256 1.01-1.03 -> 0.46-0.50 and 1.22-1.23 -> 0.74-0.76 (2-core Emerald
// Rapids VM, bench/results/2026-12-06-cpu-norm-swiglu/norm-ab.txt). In a model the rows come
// from memory and the gain is smaller: in the T = 256 prefill, three rounds alternating
// (norm-prefill-ab.txt there), Mamba-2's gated norms 3.4-3.9 -> 3.1 ms CPU, the residual norms
// unchanged (llama's 4.5-4.7 and 4.7-5.0).
#include <cmath>
#include <vector>

#include "src/core/dispatch.h"
#include "src/cpu/lane_sum.h"
#include "src/cpu/parallel.h"
#include "src/ops/rmsnorm.h"

namespace longctx::cpu {

void rmsnorm_fwd(const Context& ctx, const RMSNormArgs& args) {
  dispatch_cpu_float("rmsnorm_fwd", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t C = args.C;
    const T* xp = static_cast<const T*>(args.x);
    const T* w = static_cast<const T*>(args.weight);
    T* y = static_cast<T*>(args.out);
    T* r = static_cast<T*>(args.rstd);
    const T* res = static_cast<const T*>(args.residual);
    T* h = static_cast<T*>(args.h);
    parallel_for(ctx, args.rows, [&](int64_t row) {
      const T* xr = xp + row * C;
      if (res) {  // h = x + residual; h may be x or residual, element by element
        T* hr = h + row * C;
        const T* rr = res + row * C;
        for (int64_t c = 0; c < C; ++c) hr[c] = xr[c] + rr[c];
        xr = hr;
      }
      const T sum_sq = lane_dot(xr, xr, C);
      const T inv = T(1) / std::sqrt(sum_sq / T(C) + T(args.eps));
      r[row] = inv;
      T* yr = y + row * C;
      for (int64_t c = 0; c < C; ++c) yr[c] = xr[c] * inv * w[c];
    });
  });
}

void rmsnorm_bwd(const Context& ctx, const RMSNormArgs& args) {
  dispatch_cpu_float("rmsnorm_bwd", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t C = args.C, rows = args.rows;
    const T* xp = static_cast<const T*>(args.x);
    const T* w = static_cast<const T*>(args.weight);
    const T* dy = static_cast<const T*>(args.dout);
    const T* r = static_cast<const T*>(args.rstd);
    const T* dh = static_cast<const T*>(args.dh);  // optional; may be dx
    T* dxp = static_cast<T*>(args.dx);
    // y = x * r * w with r = (mean(x^2) + eps)^-1/2:
    // dx = r * (dy * w) - x * r^3 / C * sum(dy * w * x);  dw = sum_rows(dy * x * r).
    constexpr int64_t kChunks = 64;  // fixed, so dweight is the same for any thread count
    const int64_t chunk_rows = (rows + kChunks - 1) / kChunks;
    std::vector<T> partial(size_t(kChunks * C), T(0));
    parallel_for(ctx, kChunks, [&](int64_t chunk) {
      T* dw = partial.data() + chunk * C;
      const int64_t end = std::min(rows, (chunk + 1) * chunk_rows);
      for (int64_t row = chunk * chunk_rows; row < end; ++row) {
        const T* xr = xp + row * C;
        const T* dyr = dy + row * C;
        const T inv = r[row];
        const T dot = lane_sum<T>(C, [&](int64_t c) { return dyr[c] * w[c] * xr[c]; });
        const T coef = dot * inv * inv * inv / T(C);
        T* dxr = dxp + row * C;
        const T* dhr = dh ? dh + row * C : nullptr;
        for (int64_t c = 0; c < C; ++c) {
          dw[c] += dyr[c] * xr[c] * inv;
          const T dnorm = dyr[c] * w[c] * inv - xr[c] * coef;
          dxr[c] = dhr ? dhr[c] + dnorm : dnorm;
        }
      }
    });
    T* dw = static_cast<T*>(args.dweight);
    for (int64_t c = 0; c < C; ++c) {
      T sum = 0;
      for (int64_t chunk = 0; chunk < kChunks; ++chunk) sum += partial[size_t(chunk * C + c)];
      dw[c] = sum;
    }
  });
}

}  // namespace longctx::cpu
