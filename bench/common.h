// What the op benchmarks share: clocks, the copy floor and a fast generator for their inputs.
//
// The copy floor of a memory-bound op: the bytes it must move (every input read once, every
// output written once) over the device-to-device copy bandwidth measured in the same run.
// Datasheet bandwidths are leads; a measured copy is the ceiling an op can be held to (the
// device notes measured ~4.3 TB/s on an H200, counting bytes read plus bytes written).
#pragma once

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdint>

#include "longctx/longctx.h"

namespace longctx::bench {

// Wall-clock seconds, for differences.
inline double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// CPU time of the whole process (all threads), in seconds: on a shared, oversubscribed machine
// this is the work an op did, while wall time also counts the time other jobs held the cores.
inline double cpu_s() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

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

// splitmix64, for benchmark inputs: the GPU sweeps draw hundreds of millions of values on the
// host (bench_attention's check: 1.3G a head dim; bench_scan to 64k: 1.5G), and std::mt19937_64
// with uniform_real_distribution took 30 ns a value on the 2-core machine where this takes 4.
struct SplitMix64 {
  using result_type = uint64_t;
  uint64_t state;
  static constexpr uint64_t min() { return 0; }
  static constexpr uint64_t max() { return ~uint64_t(0); }
  uint64_t operator()() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform(double lo, double hi) {  // [lo, hi)
    return lo + (hi - lo) * (double((*this)() >> 11) * 0x1p-53);
  }
};

}  // namespace longctx::bench
