// rope on the CPU: one (b, t) position per work item; its D/2 angles' cos/sin computed once in
// double and applied to all H heads. Forward and backward are the same rotation with the sign of
// the angle flipped.
#include <cmath>
#include <vector>

#include "src/core/dispatch.h"
#include "src/cpu/parallel.h"
#include "src/ops/rope.h"

namespace longctx::cpu {

// out = rotate(in, sign * angle); out may be in (each pair is read before it is written).
void rope(const Context& ctx, const RopeArgs& args) {
  dispatch_cpu_float("rope", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t T_len = args.T, H = args.H, D = args.D, half = D / 2;
    std::vector<double> inv_freq(static_cast<size_t>(half));
    for (int64_t i = 0; i < half; ++i)
      inv_freq[size_t(i)] = std::pow(args.theta, -double(2 * i) / double(D));
    const T* x = static_cast<const T*>(args.in);  // (B, T, H, D)
    T* y = static_cast<T*>(args.out);             // (B, T, H, D)
    const int32_t* pos = args.positions;          // (B, T)
    parallel_for(ctx, args.B * T_len, [&](int64_t bt) {
      const double p = pos ? double(pos[bt]) : double(bt % T_len);
      std::vector<T> cos_a(static_cast<size_t>(half)), sin_a(static_cast<size_t>(half));
      for (int64_t i = 0; i < half; ++i) {
        const double a = p * inv_freq[size_t(i)];
        cos_a[size_t(i)] = T(std::cos(a));
        sin_a[size_t(i)] = T(args.sign * std::sin(a));
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

}  // namespace longctx::cpu
