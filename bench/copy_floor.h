// The copy floor of a memory-bound op: the bytes it must move (every input read once, every
// output written once) over the device-to-device copy bandwidth measured in the same run.
// Datasheet bandwidths are leads; a measured copy is the ceiling an op can be held to (the
// device notes measured ~4.3 TB/s on an H200, counting bytes read plus bytes written).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>

#include "longctx/longctx.h"

namespace longctx::bench {

// GB/s of Tensor::copy_from between two buffers of `bytes` each on ctx's device, counting bytes
// read plus bytes written (the convention of the ops' byte counts). Each timed run makes
// kCopies copies between two synchronisations, so that the host clock's resolution and the
// launch are small next to the copies; the best of `reps` runs after a warm-up.
inline double copy_gb_per_s(const Context& ctx, int64_t bytes, int reps) {
  constexpr int kCopies = 8;
  const Device device = ctx.device();
  const Tensor src = Tensor::empty({bytes / 4}, DType::f32, device, &ctx);
  const Tensor dst = Tensor::empty({bytes / 4}, DType::f32, device, &ctx);
  src.fill(0.5, &ctx);
  double best = 1e30;
  for (int r = 0; r <= reps; ++r) {
    ctx.synchronize();
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < kCopies; ++i) dst.copy_from(src, &ctx);
    ctx.synchronize();
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (r > 0) best = std::min(best, s / kCopies);  // run 0 is the warm-up
  }
  return 2.0 * double(bytes) / best * 1e-9;
}

}  // namespace longctx::bench
