// The 93M llama's bf16 weight matrices (d_model 1024, 8 attention + 8 MLP layers: per attention
// layer q, o 1024x1024 and k, v 512x1024; per MLP gate, up 2816x1024 and down 1024x2816; 186 MB)
// through GEMV variants, 2 threads (each a contiguous block of rows, one OpenMP region per
// matrix, as src/cpu/gemv.cpp), alternating. ms a pass (wall and CPU) and GB/s of weights.
// Every variant's y is checked bitwise against variant 0 (the library's kernel as of 1c6035e).
// Build: g++ -O2 -std=c++17 -fopenmp -march=x86-64-v3 bf16_stream.cpp -o bf16_stream
#include <immintrin.h>
#include <omp.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

static double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
static double cpu_now() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

struct Mat {
  int64_t rows, cols;
  uint16_t* w;
};

__attribute__((target("avx512f"))) static inline __m512 widen16(const uint16_t* p) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

__attribute__((target("avx512f"))) static inline float reduce(__m512 a) {
  const __m256 lo = _mm512_castps512_ps256(a);
  const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1));
  const __m256 a8 = _mm256_add_ps(lo, hi);
  const __m128 a4 = _mm_add_ps(_mm256_castps256_ps128(a8), _mm256_extractf128_ps(a8, 1));
  const __m128 a2 = _mm_add_ps(a4, _mm_movehl_ps(a4, a4));
  return _mm_cvtss_f32(_mm_add_ss(a2, _mm_movehdup_ps(a2)));
}

// NR rows from o0. PF: 0 none; 1 = T0 next pass same cols every 16 cols (the library);
// 2 = T1 `dist` rows ahead, once per 64-byte line; 3 = T0 once per line, NR rows ahead;
// 4 = T2 `dist` rows ahead once per line.
template <int NR, int PF>
__attribute__((target("avx512f"))) static void rows_k(int64_t o0, int64_t Cin, const uint16_t* w,
                                                      const float* x, float* y, int64_t dist) {
  __m512 acc[NR];
  for (int r = 0; r < NR; ++r) acc[r] = _mm512_setzero_ps();
  const uintptr_t base = reinterpret_cast<uintptr_t>(w);
  for (int64_t k = 0; k < Cin; k += 16) {
    const __m512 xv = _mm512_loadu_ps(x + k);
    if (PF == 1)
      for (int r = 0; r < NR; ++r)
        _mm_prefetch(reinterpret_cast<const char*>(base + uintptr_t((o0 + r + NR) * Cin + k) * 2),
                     _MM_HINT_T0);
    if (PF == 2 && k % 32 == 0)
      for (int r = 0; r < NR; ++r)
        _mm_prefetch(reinterpret_cast<const char*>(base + uintptr_t((o0 + r + dist) * Cin + k) * 2),
                     _MM_HINT_T1);
    if (PF == 3 && k % 32 == 0)
      for (int r = 0; r < NR; ++r)
        _mm_prefetch(reinterpret_cast<const char*>(base + uintptr_t((o0 + r + NR) * Cin + k) * 2),
                     _MM_HINT_T0);
    if (PF == 4 && k % 32 == 0)
      for (int r = 0; r < NR; ++r)
        _mm_prefetch(reinterpret_cast<const char*>(base + uintptr_t((o0 + r + dist) * Cin + k) * 2),
                     _MM_HINT_T2);
    for (int r = 0; r < NR; ++r)
      acc[r] = _mm512_fmadd_ps(widen16(w + (o0 + r) * Cin + k), xv, acc[r]);
  }
  for (int r = 0; r < NR; ++r) y[o0 + r] = reduce(acc[r]);
}

// Not a GEMV: the same bytes read by 4 independent integer sums (the read floor of this split).
template <int NR>
__attribute__((target("avx512f"))) static void read_k(int64_t o0, int64_t Cin, const uint16_t* w,
                                                      const float*, float* y, int64_t) {
  __m512i a[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(),
                  _mm512_setzero_si512()};
  const __m512i* p = reinterpret_cast<const __m512i*>(w + o0 * Cin);
  const int64_t n = NR * Cin / 32;
  for (int64_t i = 0; i < n; i += 4)
    for (int j = 0; j < 4; ++j) a[j] = _mm512_add_epi32(a[j], _mm512_load_si512(p + i + j));
  y[o0] = float(_mm512_reduce_add_epi32(
      _mm512_add_epi32(_mm512_add_epi32(a[0], a[1]), _mm512_add_epi32(a[2], a[3]))));
}

typedef void (*RowsFn)(int64_t, int64_t, const uint16_t*, const float*, float*, int64_t);
struct Variant {
  const char* name;
  RowsFn fn;
  int nr;
  int64_t dist;
  int64_t
      chunk;  // 0: one contiguous block of rows a thread; else chunks of that many rows, dynamic
};

// The read floor as bench_decode measures it: each thread one half of the whole buffer.
__attribute__((target("avx512f"))) static float read_whole(const uint16_t* w, int64_t bytes,
                                                           int threads) {
  float total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
  {
    const int64_t n = bytes / 64, p = omp_get_thread_num(), parts = omp_get_num_threads();
    const int64_t i0 = n * p / parts / 4 * 4, i1 = n * (p + 1) / parts / 4 * 4;
    __m512i a[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(),
                    _mm512_setzero_si512()};
    const __m512i* q = reinterpret_cast<const __m512i*>(w);
    for (int64_t i = i0; i < i1; i += 4)
      for (int j = 0; j < 4; ++j) a[j] = _mm512_add_epi32(a[j], _mm512_load_si512(q + i + j));
    total += float(_mm512_reduce_add_epi32(
        _mm512_add_epi32(_mm512_add_epi32(a[0], a[1]), _mm512_add_epi32(a[2], a[3]))));
  }
  return total;
}

static void gemv(const Variant& v, const Mat& m, const float* x, float* y, int threads) {
  if (v.chunk > 0) {
    const int64_t chunks = m.rows / v.chunk;  // all shapes are multiples of 64
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (int64_t c = 0; c < chunks; ++c)
      for (int64_t o = c * v.chunk; o < (c + 1) * v.chunk; o += v.nr)
        v.fn(o, m.cols, m.w, x, y, v.dist);
    return;
  }
  const int64_t groups = m.rows / v.nr;  // all shapes are multiples of 8
#pragma omp parallel num_threads(threads)
  {
    const int64_t p = omp_get_thread_num(), parts = omp_get_num_threads();
    const int64_t o0 = groups * p / parts * v.nr, o1 = groups * (p + 1) / parts * v.nr;
    for (int64_t o = o0; o < o1; o += v.nr) v.fn(o, m.cols, m.w, x, y, v.dist);
  }
}

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 3;
  std::vector<Mat> mats;
  auto add = [&](int64_t r, int64_t c) { mats.push_back({r, c, nullptr}); };
  for (int l = 0; l < 8; ++l) {
    add(1024, 1024), add(512, 1024), add(512, 1024), add(1024, 1024);
    add(2816, 1024), add(2816, 1024), add(1024, 2816);
  }
  int64_t bytes = 0;
  for (const Mat& m : mats) bytes += m.rows * m.cols * 2;
  // All matrices in one buffer, one after the other (the "whole buffer" read streams it in halves).
  uint16_t* all = static_cast<uint16_t*>(std::aligned_alloc(4096, size_t(bytes)));
  uint32_t s = 12345;
  int64_t at = 0;
  for (Mat& m : mats) {
    m.w = all + at;
    at += m.rows * m.cols;
    for (int64_t i = 0; i < m.rows * m.cols; ++i) {
      s = s * 1664525u + 1013904223u;
      m.w[i] = uint16_t(0x3c00 + (s >> 20) % 0x400) | uint16_t((s >> 8) & 0x8000);
    }
  }
  std::vector<float> x(2816), y(2816), yref(2816);
  for (auto& v : x) s = s * 1664525u + 1013904223u, v = float(s >> 8) / float(1 << 24) - 0.5f;
  const Variant vars[] = {
      {"lib: 4 rows, T0 next pass every 16 cols", rows_k<4, 1>, 4, 4, 0},
      {"4 rows, no prefetch", rows_k<4, 0>, 4, 0, 0},
      {"read only (4 int sums), 8 rows a call", read_k<8>, 8, 0, 0},
      {"4 rows, T0 next pass once a line", rows_k<4, 3>, 4, 4, 0},
      {"4 rows, T1 8 rows ahead once a line", rows_k<4, 2>, 4, 8, 0},
      {"same, dynamic 32-row chunks", rows_k<4, 2>, 4, 8, 32},
      {"same, dynamic 64-row chunks", rows_k<4, 2>, 4, 8, 64},
      {"lib, dynamic 64-row chunks", rows_k<4, 1>, 4, 4, 64},
  };
  const int nv = sizeof(vars) / sizeof(vars[0]);
  std::vector<std::vector<double>> wall(nv + 1), cpu(nv + 1);
  float sink = 0;
  for (int round = 0; round < rounds; ++round) {
    for (int pass = 0; pass < 6; ++pass) {
      const double t0 = now(), c0 = cpu_now();
      sink += read_whole(all, bytes, threads);
      const double t1 = now(), c1 = cpu_now();
      if (pass > 0) wall[nv].push_back(t1 - t0), cpu[nv].push_back(c1 - c0);
    }
    for (int v = 0; v < nv; ++v) {
      for (int pass = 0; pass < 6; ++pass) {
        const double t0 = now(), c0 = cpu_now();
        for (const Mat& m : mats) gemv(vars[v], m, x.data(), y.data(), threads);
        const double t1 = now(), c1 = cpu_now();
        if (pass > 0) wall[v].push_back(t1 - t0), cpu[v].push_back(c1 - c0);
      }
      // bitwise check on the last matrix
      gemv(vars[0], mats.back(), x.data(), yref.data(), threads);
      gemv(vars[v], mats.back(), x.data(), y.data(), threads);
      if (vars[v].fn != read_k<8> &&
          std::memcmp(y.data(), yref.data(), size_t(mats.back().rows) * 4) != 0)
        std::printf("MISMATCH variant %d\n", v);
    }
  }
  std::printf("(sink %g)\n", sink);
  std::printf("%d threads, %.1f MB of bf16 weights, %d rounds x 5 passes, alternating\n", threads,
              bytes * 1e-6, rounds);
  for (int v = 0; v <= nv; ++v) {
    std::sort(wall[v].begin(), wall[v].end());
    std::sort(cpu[v].begin(), cpu[v].end());
    const size_t n = wall[v].size();
    std::printf("%-42s wall ms median %6.2f best %6.2f (%.1f GB/s)  cpu ms median %6.2f\n",
                v < nv ? vars[v].name : "read floor: whole buffer, one half a thread",
                wall[v][n / 2] * 1e3, wall[v][0] * 1e3, bytes / wall[v][n / 2] * 1e-9,
                cpu[v][n / 2] * 1e3);
  }
}
