// Does a software prefetch raise the L3 stream of the small preset's f32 GEMVs? Its 29 f32
// matrices (3.28 MB a step, beyond one core's 2 MB L2), 4 rows a pass with 16-lane AVX-512 FMAs
// as src/cpu/gemv.cpp does, each 64-byte load of a row with a prefetch `dist` bytes ahead of it
// (0: none), into L1 (T0) or L2 (T2), all variants alternating within each step, one thread.
// (The earlier pass measured the library's "next 4 rows" prefetch for f32 from DRAM only:
// bench/results/2026-12-05-cpu-decode-2/gemv-prefetch.txt.)
//
//   f32_prefetch   (g++ -O2 -std=c++17)
#include <immintrin.h>
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>
namespace {
double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
struct Matrix {
  int rows, cols;
  std::vector<float> w;
};
template <int HINT>
__attribute__((target("avx512f"))) void gemv(const Matrix& m, const float* x, float* y, long dist) {
  for (int o = 0; o < m.rows; o += 4) {
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps()};
    for (int k = 0; k < m.cols; k += 16) {
      const __m512 xv = _mm512_loadu_ps(x + k);
      for (int r = 0; r < 4; ++r) {
        const float* p = m.w.data() + size_t(o + r) * m.cols + k;
        if (dist > 0)  // by integer address: it may lie past the matrix (a prefetch never faults)
          _mm_prefetch(
              reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(p) + uintptr_t(dist)),
              _mm_hint(HINT));
        acc[r] = _mm512_fmadd_ps(_mm512_loadu_ps(p), xv, acc[r]);
      }
    }
    for (int r = 0; r < 4; ++r) y[o + r] = _mm512_reduce_add_ps(acc[r]);
  }
}
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
}  // namespace

int main() {
  std::vector<Matrix> ms;
  auto add = [&](int r, int c) { ms.push_back({r, c, std::vector<float>(size_t(r) * c, 0.01f)}); };
  for (int l = 0; l < 8; ++l) {
    if (l % 2 == 0) {
      add(128, 128);
      add(64, 128);
      add(64, 128);
      add(128, 128);
    } else {
      add(384, 128);
      add(384, 128);
      add(128, 384);
    }
  }
  add(256, 128);
  size_t bytes = 0;
  for (auto& m : ms) bytes += m.w.size() * 4;
  std::vector<float> x(384, 0.5f), y(384);
  long dists[] = {0, 1024, 2048, 4096, 8192, 16384};
  for (int round = 0; round < 2; ++round) {
    std::vector<std::vector<double>> t0s(6), t2s(6);
    for (int s = 0; s < 1500; ++s)
      for (int d = 0; d < 6; ++d) {
        double t = now_s();
        for (auto& m : ms) gemv<3>(m, x.data(), y.data(), dists[d]);
        t0s[d].push_back(1e6 * (now_s() - t));
        t = now_s();
        for (auto& m : ms) gemv<1>(m, x.data(), y.data(), dists[d]);
        t2s[d].push_back(1e6 * (now_s() - t));
      }
    for (int d = 0; d < 6; ++d)
      printf("round %d dist %5ld: T0 %.1f us (%.1f GB/s), T2 %.1f us (%.1f GB/s)\n", round,
             dists[d], median(t0s[d]), bytes / median(t0s[d]) * 1e-3, median(t2s[d]),
             bytes / median(t2s[d]) * 1e-3);
  }
}
