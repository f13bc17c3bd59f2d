// rope on the CPU: the D/2 angles' cos/sin of each distinct position computed once in double,
// then one (b, t) position per work item, its angles applied to all H heads. Forward and backward
// are the same rotation with the sign of the angle flipped.
#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "src/core/dispatch.h"
#include "src/cpu/parallel.h"
#include "src/ops/rope.h"

namespace longctx::cpu {

namespace {

// A decode step calls rope twice a layer (q and k) at the same position, with the same theta and
// D in every layer: the small preset's step makes 8 calls that each computed the same 16 pow and
// 32 cos/sin in double (9-13 us of an 88-130 us step in decode_breakdown's profile at
// T = 256-376, ~1 us a call of which is the profile's own clocks). Each thread keeps the last
// (theta, D)'s inverse frequencies and the last position's cos/sin (both keyed by what they are
// computed from), so 7 of the 8 calls reuse the first one's: the same doubles, so the same table
// bits. Measured on the 2-core Zen 4 VM, one thread, T = 256-296, median of 2000 steps, 6
// alternating runs (passive and unset OMP_WAIT_POLICY alike, load 1.5-1.6;
// bench/results/2026-12-06-cpu-decode-small/ab-loop.txt): f32 weights 87.0-88.4 -> 85.0-86.0 us a
// step, bf16 77.3-79.0 -> 74.6-76.0.
struct FreqMemo {
  double theta = -1;
  int64_t D = -1;
  std::vector<double> inv_freq;  // theta^(-2i / D), i < D/2
};
struct AngleMemo {
  double theta = -1, pos = -1;
  int64_t D = -1;
  std::vector<double> cos_sin;  // cos(pos · inv_freq[i]), then sin(...)
};
thread_local FreqMemo freq_memo;
thread_local AngleMemo angle_memo;

const std::vector<double>& inverse_frequencies(double theta, int64_t D) {
  FreqMemo& m = freq_memo;
  if (m.theta != theta || m.D != D) {
    m.inv_freq.resize(size_t(D / 2));
    for (int64_t i = 0; i < D / 2; ++i)
      m.inv_freq[size_t(i)] = std::pow(theta, -double(2 * i) / double(D));
    m.theta = theta, m.D = D;
  }
  return m.inv_freq;
}

// cos, then sin, of position p's D/2 angles; inv_freq is inverse_frequencies(theta, D) (computed
// on the calling thread, which may not be this one).
const double* angles_at(double theta, int64_t D, double p, const std::vector<double>& inv_freq) {
  AngleMemo& m = angle_memo;
  if (m.theta != theta || m.D != D || m.pos != p) {
    const int64_t half = D / 2;
    m.cos_sin.resize(size_t(D));
    for (int64_t i = 0; i < half; ++i) {
      const double a = p * inv_freq[size_t(i)];
      m.cos_sin[size_t(i)] = std::cos(a);
      m.cos_sin[size_t(i + half)] = std::sin(a);
    }
    m.theta = theta, m.D = D, m.pos = p;
  }
  return m.cos_sin.data();
}

}  // namespace

// out = rotate(in, sign * angle); out may be in (each pair is read before it is written).
void rope(const Context& ctx, const RopeArgs& args) {
  dispatch_cpu_float("rope", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t T_len = args.T, H = args.H, D = args.D, half = D / 2;
    const std::vector<double>& inv_freq = inverse_frequencies(args.theta, D);
    const T* x = static_cast<const T*>(args.in);  // (B, T, H, D)
    T* y = static_cast<T*>(args.out);             // (B, T, H, D)
    const int32_t* pos = args.positions;          // (B, T)
    // The angles' cos and sin once per distinct position (T rows when the positions are absent:
    // every sequence of the batch shares them; B * T rows otherwise), then the rotation. The
    // libm cos/sin in double were most of this op's time, computed for every (b, t) with two
    // vectors allocated each. llama preset, 2 threads, load ~9-10, CPU time of the 16 rope
    // calls of a training step, 2 rounds alternating (bench/results/2026-12-05-cpu-train-2):
    // T = 256 (B = 16) 16.5 -> 7.2 ms, T = 1024 (B = 4) 20 -> 8 ms, T = 4096 (B = 1, every
    // position distinct) 21 -> 22 ms; the same values.
    const int64_t rows = pos ? args.B * T_len : T_len;
    // Row r: cos[half], then sin[half]; at most 1/H of the input's size.
    std::vector<T> table(static_cast<size_t>(rows * D));
    auto exact_row = [&](int64_t r, double p) {
      const double* cs = angles_at(args.theta, D, p, inv_freq);
      T* cos_a = table.data() + r * D;
      for (int64_t i = 0; i < half; ++i) {
        cos_a[i] = T(cs[i]);
        cos_a[i + half] = T(args.sign * cs[i + half]);
      }
    };
    auto apply = [&](int64_t bt) {
      const T* cos_a = table.data() + (pos ? bt : bt % T_len) * D;
      const T* sin_a = cos_a + half;
      for (int64_t h = 0; h < H; ++h) {
        const T* xr = x + (bt * H + h) * D;
        T* yr = y + (bt * H + h) * D;
        for (int64_t i = 0; i < half; ++i) {
          const T lo = xr[i], hi = xr[i + half];
          yr[i] = lo * cos_a[i] - hi * sin_a[i];
          yr[i + half] = hi * cos_a[i] + lo * sin_a[i];
        }
      }
    };
    // The table and the rotation in one parallel region (the table's loop, then the rotation's
    // over (b, t)): one wake-up of the workers a call instead of two. The llama preset's T = 256
    // prefill (8 calls, 71 -> 63 regions): rope_fwd 2.10-2.15 -> 1.77-1.85 ms wall and 2.69-2.78
    // -> 2.48-2.53 ms CPU (4 rounds alternating, 2 threads, passive waiting, load 1.7;
    // bench/results/2026-12-05-cpu-llama-prefill/ab-run-3.txt).
    if (pos || !std::is_same_v<T, float>) {
      parallel_for_then(
          ctx, rows, [&](int64_t r) { exact_row(r, pos ? double(pos[r]) : double(r)); },
          args.B * T_len, apply);
    } else {
      // f32 without positions (every prefill and training step): row t's angles are t * w_i, so
      // within a run of kRun rows each row is the previous one rotated by w_i, a complex product
      // in double, and only each run's first row calls cos/sin. The recurrence's error, < kRun
      // double roundings (~1e-14), is far below f32's half ulp (3e-8): the f32 table is the same
      // but in rare ties. The per-call libm cos/sin of T rows were most of rope's time at long T
      // (D/2 = 16 of each per row, 65536 per call at T = 4096). llama preset, a prefill + a
      // training step (16 rope_fwd, 8 rope_bwd calls), 2 threads, load 16-20, 2 rounds
      // alternating (bench/results/2026-12-05-cpu-elementwise): T = 4096 rope_fwd 19.7-19.9 ->
      // 6.8 ms CPU, rope_bwd 10.4-10.9 -> 3.2-4.2; T = 1024 8.0 -> 4.8-5.2 and 4.1 -> 2.5-2.6.
      constexpr int64_t kRun = 64;
      std::vector<double> step(static_cast<size_t>(D));  // cos w_i, then sin w_i
      for (int64_t i = 0; i < half; ++i) {
        step[size_t(i)] = std::cos(inv_freq[size_t(i)]);
        step[size_t(i + half)] = std::sin(inv_freq[size_t(i)]);
      }
      auto run_rows = [&](int64_t run) {
        const int64_t r0 = run * kRun, r1 = std::min(rows, r0 + kRun);
        std::vector<double> c(static_cast<size_t>(half)), sn(static_cast<size_t>(half));
        for (int64_t i = 0; i < half; ++i) {
          const double a = double(r0) * inv_freq[size_t(i)];
          c[size_t(i)] = std::cos(a);
          sn[size_t(i)] = std::sin(a);
        }
        for (int64_t r = r0; r < r1; ++r) {
          T* cos_a = table.data() + r * D;
          for (int64_t i = 0; i < half; ++i) {
            cos_a[i] = T(c[size_t(i)]);
            cos_a[i + half] = T(args.sign * sn[size_t(i)]);
            const double cw = step[size_t(i)], sw = step[size_t(i + half)];
            const double next_c = c[size_t(i)] * cw - sn[size_t(i)] * sw;
            sn[size_t(i)] = sn[size_t(i)] * cw + c[size_t(i)] * sw;
            c[size_t(i)] = next_c;
          }
        }
      };
      parallel_for_then(ctx, (rows + kRun - 1) / kRun, run_rows, args.B * T_len, apply);
    }
  });
}

}  // namespace longctx::cpu
