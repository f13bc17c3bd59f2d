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
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "src/core/dispatch.h"
#include "src/cpu/lane_sum.h"
#include "src/cpu/parallel.h"
#include "src/ops/rmsnorm.h"

namespace longctx::cpu {

namespace {

// 1 / sqrt(mean(x²) + eps) for a row of C values whose sum of squares overflowed (|x| from
// ~1.8e19 / √C in f32: out and rstd were 0, as in torch's rms_norm) or may have lost bits as
// subnormals (a sum below C times the smallest normal: rms below ~1.1e-19 in f32): the row summed
// again scaled by the power of two that takes its largest |x| into [0.5, 1), an exact scaling, so
// that these rows keep the usual rounding. Down to rstd's smallest normal (|x| up to ~1e38 in
// f32), then with the subnormal's precision. Out of line, the test for it one range check on
// constants made before the rows: the forward at (4096, 128) f32, 2 threads, took 0.140 ms CPU
// before this path and 0.142 after (medians of six runs alternating the two libraries; 0.147 with
// the test's constant formed in each row, Zen 4 VM, 2026-12-07).
template <class T>
[[gnu::noinline]] T rescaled_inverse_rms(const T* x, int64_t C, T sum_sq, T eps) {
  T largest = 0;
  for (int64_t c = 0; c < C; ++c) largest = std::max(largest, std::abs(x[c]));  // NaN skipped
  int e = 0;
  std::frexp(largest, &e);
  const T scaled_eps = std::ldexp(eps, -2 * e);
  // An inf in x, which no scaling brings into range; or a row so small that eps scaled with it
  // overflows, where mean(x²) is negligible against eps (rstd was 0 for a row of 1e-30 with eps
  // 1e-5, not 1 / sqrt(eps)): as the usual rows. A NaN in x gives NaN either way.
  if (!std::isfinite(largest) || !std::isfinite(scaled_eps))
    return T(1) / std::sqrt(sum_sq / T(C) + eps);
  const T scaled = lane_sum<T>(C, [&](int64_t c) {
    const T v = std::ldexp(x[c], -e);
    return v * v;
  });
  return std::ldexp(T(1) / std::sqrt(scaled / T(C) + scaled_eps), -e);
}

// Σ dy w x̂ (x̂ = x * inv) of a backward row: as Σ dy w x, times inv, where that sum is finite (it
// overflows only for |x| near f32's largest), else summed in x̂. Out of line, as above.
template <class T>
[[gnu::noinline]] T dot_in_x_hat(const T* dy, const T* w, const T* x, T inv, int64_t C) {
  return lane_sum<T>(C, [&](int64_t c) { return dy[c] * w[c] * (x[c] * inv); });
}

}  // namespace

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
    const T eps = T(args.eps), smallest_sum = T(C) * std::numeric_limits<T>::min();
    parallel_for(ctx, args.rows, [&](int64_t row) {
      const T* xr = xp + row * C;
      if (res) {  // h = x + residual; h may be x or residual, element by element
        T* hr = h + row * C;
        const T* rr = res + row * C;
        for (int64_t c = 0; c < C; ++c) hr[c] = xr[c] + rr[c];
        xr = hr;
      }
      const T sum_sq = lane_dot(xr, xr, C);
      // Finite (NaN and inf fail the test) and at least C times the smallest normal.
      const bool usual = sum_sq >= smallest_sum && sum_sq <= std::numeric_limits<T>::max();
      const T inv = __builtin_expect(usual, 1) ? T(1) / std::sqrt(sum_sq / T(C) + eps)
                                               : rescaled_inverse_rms(xr, C, sum_sq, eps);
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
    // y = x̂ * w with x̂ = x * r, r = (mean(x^2) + eps)^-1/2:
    // dx = r * (dy * w) - x̂ * (r / C * sum(dy * w * x̂));  dw = sum_rows(dy * x̂).
    // In x̂ (of order 1) rather than x * r^3, which left f32's range where r did not (r = 8e19
    // for a row of 1e-20: dx was inf; r = 1e-19 for a row of 1e19: 0).
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
        const T dot_hat = std::isfinite(dot) ? dot * inv : dot_in_x_hat(dyr, w, xr, inv, C);
        const T coef = dot_hat * inv / T(C);
        T* dxr = dxp + row * C;
        const T* dhr = dh ? dh + row * C : nullptr;
        for (int64_t c = 0; c < C; ++c) {
          const T x_hat = xr[c] * inv;
          dw[c] += dyr[c] * x_hat;
          const T dnorm = dyr[c] * w[c] * inv - x_hat * coef;
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
