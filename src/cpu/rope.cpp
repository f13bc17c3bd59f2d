// rope on the CPU: one (b, t) position per work item; its D/2 angles' cos/sin computed once in
// double and applied to all H heads. Forward and backward are the same rotation with the sign of
// the angle flipped.
#include <cmath>
#include <vector>

#include "longctx/ops/rope.h"
#include "src/core/dispatch.h"
#include "src/cpu/parallel.h"

namespace longctx::cpu {

namespace {

// out = rotate(in, sign * angle); out may be in (each pair is read before it is written).
void rotate(const Context& ctx, const char* op, const Tensor& out, const Tensor& in,
            const Tensor& positions, const RopeParams& params, double sign) {
  dispatch_cpu_float(op, in.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t B = in.size(0), T_len = in.size(1), H = in.size(2), D = in.size(3);
    const int64_t half = D / 2;
    std::vector<double> inv_freq(static_cast<size_t>(half));
    for (int64_t i = 0; i < half; ++i)
      inv_freq[size_t(i)] = std::pow(params.theta, -double(2 * i) / double(D));
    const T* x = in.data_as<T>();  // (B, T, H, D)
    T* y = out.data_as<T>();       // (B, T, H, D)
    const int32_t* pos = positions.defined() ? positions.data_as<int32_t>() : nullptr;  // (B, T)
    parallel_for(ctx, B * T_len, [&](int64_t bt) {
      const double p = pos ? double(pos[bt]) : double(bt % T_len);
      std::vector<T> cos_a(static_cast<size_t>(half)), sin_a(static_cast<size_t>(half));
      for (int64_t i = 0; i < half; ++i) {
        const double a = p * inv_freq[size_t(i)];
        cos_a[size_t(i)] = T(std::cos(a));
        sin_a[size_t(i)] = T(sign * std::sin(a));
      }
      for (int64_t h = 0; h < H; ++h) {
        const T* xr = x + (bt * H + h) * D;
        T* yr = y + (bt * H + h) * D;
        for (int64_t i = 0; i < half; ++i) {
          const T lo = xr[i], hi = xr[i + half];
          yr[i] = lo * cos_a[size_t(i)] - hi * sin_a[size_t(i)];
          yr[i + half] = hi * cos_a[size_t(i)] + lo * sin_a[size_t(i)];
        }
      }
    });
  });
}

}  // namespace

void rope_fwd(const Context& ctx, const Tensor& out, const Tensor& x, const Tensor& positions,
              const RopeParams& params) {
  rotate(ctx, "rope_fwd", out, x, positions, params, /*sign=*/1.0);
}

void rope_bwd(const Context& ctx, const Tensor& dx, const Tensor& dout, const Tensor& positions,
              const RopeParams& params) {
  rotate(ctx, "rope_bwd", dx, dout, positions, params, /*sign=*/-1.0);
}

}  // namespace longctx::cpu
