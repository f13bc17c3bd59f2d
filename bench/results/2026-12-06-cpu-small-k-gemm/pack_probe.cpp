// Probe: the w (N, K) pack by rows k (k-outer, commit 9fbed8b) vs by 8 x 8 AVX2 transposes (new),
// one thread: best of 300 hot, and mean of 10 with w and the panels evicted (64 MB touched
// between). The base's by-columns pack is in the first version of this file (git log). g++ -O3
// -march=x86-64-v3 pack_probe.cpp
#include <immintrin.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>
__attribute__((noinline)) void pack_k(const float* w, long N, long K, float* wp) {
  const long NR = 32, panels = (N + NR - 1) / NR;
  for (long p = 0; p < panels; ++p) {
    float* panel = wp + p * NR * K;
    long n0 = p * NR, cols = std::min(NR, N - n0);
    const float* wr = w + n0 * K;
    for (long k = 0; k < K; ++k) {
      float* out = panel + k * NR;
      for (long j = 0; j < cols; ++j) out[j] = wr[j * K + k];
      for (long j = cols; j < NR; ++j) out[j] = 0.f;
    }
  }
}
static inline void transpose8(const float* src, long lds, float* dst, long ldd) {
  __m256 r[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * lds);
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  _mm256_storeu_ps(dst + 0 * ldd, _mm256_permute2f128_ps(u0, u4, 0x20));
  _mm256_storeu_ps(dst + 1 * ldd, _mm256_permute2f128_ps(u1, u5, 0x20));
  _mm256_storeu_ps(dst + 2 * ldd, _mm256_permute2f128_ps(u2, u6, 0x20));
  _mm256_storeu_ps(dst + 3 * ldd, _mm256_permute2f128_ps(u3, u7, 0x20));
  _mm256_storeu_ps(dst + 4 * ldd, _mm256_permute2f128_ps(u0, u4, 0x31));
  _mm256_storeu_ps(dst + 5 * ldd, _mm256_permute2f128_ps(u1, u5, 0x31));
  _mm256_storeu_ps(dst + 6 * ldd, _mm256_permute2f128_ps(u2, u6, 0x31));
  _mm256_storeu_ps(dst + 7 * ldd, _mm256_permute2f128_ps(u3, u7, 0x31));
}
__attribute__((noinline)) void pack_v(const float* w, long N, long K, float* wp) {
  const long NR = 32, panels = (N + NR - 1) / NR;
  for (long p = 0; p < panels; ++p) {
    float* panel = wp + p * NR * K;
    long n0 = p * NR, cols = std::min(NR, N - n0);
    const float* wr = w + n0 * K;
    if (cols < NR) std::fill(panel, panel + NR * K, 0.f);
    long j0 = 0;
    for (; j0 + 8 <= cols; j0 += 8) {
      long k = 0;
      for (; k + 8 <= K; k += 8) transpose8(wr + j0 * K + k, K, panel + k * NR + j0, NR);
      for (; k < K; ++k)
        for (long i = 0; i < 8; ++i) panel[k * NR + j0 + i] = wr[(j0 + i) * K + k];
    }
    for (long k = 0; k < K; ++k)
      for (long j = j0; j < cols; ++j) panel[k * NR + j] = wr[j * K + k];
  }
}
int main() {
  for (auto [N, K] : std::vector<std::pair<long, long>>{
           {128, 128}, {64, 128}, {384, 128}, {128, 384}, {256, 128}, {131, 127}}) {
    std::vector<float> w(N * K);
    for (long i = 0; i < N * K; ++i) w[i] = i;
    long sz = ((N + 31) / 32 * 32) * K;
    float* a = (float*)aligned_alloc(64, sz * 4 + 64);
    float* b = (float*)aligned_alloc(64, sz * 4 + 64);
    // cold: flush by touching 64 MB between
    std::vector<char> junk(64 << 20);
    double bj = 1e9, bk = 1e9, cj = 0, ck = 0;
    for (int r = 0; r < 300; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      pack_k(w.data(), N, K, a);
      auto t1 = std::chrono::steady_clock::now();
      pack_v(w.data(), N, K, b);
      auto t2 = std::chrono::steady_clock::now();
      bj = std::min(bj, std::chrono::duration<double>(t1 - t0).count());
      bk = std::min(bk, std::chrono::duration<double>(t2 - t1).count());
    }
    for (int r = 0; r < 10; ++r) {
      for (size_t i = 0; i < junk.size(); i += 64) junk[i]++;
      auto t0 = std::chrono::steady_clock::now();
      pack_k(w.data(), N, K, a);
      auto t1 = std::chrono::steady_clock::now();
      for (size_t i = 0; i < junk.size(); i += 64) junk[i]++;
      auto t2 = std::chrono::steady_clock::now();
      pack_v(w.data(), N, K, b);
      auto t3 = std::chrono::steady_clock::now();
      cj += std::chrono::duration<double>(t1 - t0).count() / 10;
      ck += std::chrono::duration<double>(t3 - t2).count() / 10;
    }
    std::printf(
        "N %ld K %ld: hot k-outer %.1f us, 8x8 %.1f us; cold k-outer %.1f us, 8x8 %.1f us; same "
        "%d\n",
        N, K, bj * 1e6, bk * 1e6, cj * 1e6, ck * 1e6, (int)std::equal(a, a + sz, b));
  }
}
