// How long one thread takes to read q, k and v of the target point (B = 1, T = 8192, H = 8,
// K = V = 128, f32: 3 x 32 MB) from memory, in the order the forward reads them and
// sequentially, with and without 2 MB pages (madvise(MADV_HUGEPAGE)); process CPU time, best of
// --reps, fresh buffers touched once before (as the op's inputs are). The lower bound the memory
// puts on the forward at this point, measured on the loaded machine.
//   g++ -O2 -march=x86-64-v3 -fopenmp read_probe.cpp -o read_probe && ./read_probe
#include <immintrin.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace {

constexpr long T = 8192, H = 8, K = 128, C = 64, G = 8;  // G heads in lockstep, as the forward

double cpu_s() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

float* buffer(long n, bool huge) {
  const size_t bytes = size_t(n) * sizeof(float), align = size_t(2) << 20;
  void* p = nullptr;
  if (posix_memalign(&p, align, bytes)) std::abort();
  if (huge) madvise(p, bytes / align * align, MADV_HUGEPAGE);
  float* x = static_cast<float*>(p);
  for (long i = 0; i < n; ++i) x[i] = float(i % 7);
  return x;
}

// Sums 512 B (one row of a head) into acc.
inline __m256 add_row(__m256 acc, const float* r) {
  for (long c = 0; c < K; c += 8) acc = _mm256_add_ps(acc, _mm256_loadu_ps(r + c));
  return acc;
}

// The forward's order: chunk by chunk, head after head, the chunk's C rows of q, k and v.
float read_forward_order(const float* q, const float* k, const float* v) {
  __m256 acc = _mm256_setzero_ps();
  for (long p0 = 0; p0 < T; p0 += C)
    for (long h = 0; h < G; ++h)
      for (long i = 0; i < C; ++i) {
        const long at = ((p0 + i) * H + h) * K;
        acc = add_row(add_row(add_row(acc, q + at), k + at), v + at);
      }
  float s[8];
  _mm256_storeu_ps(s, acc);
  return s[0] + s[7];
}

float read_sequential(const float* q, const float* k, const float* v) {
  __m256 acc = _mm256_setzero_ps();
  for (const float* x : {q, k, v})
    for (long at = 0; at < T * H * K; at += K) acc = add_row(acc, x + at);
  float s[8];
  _mm256_storeu_ps(s, acc);
  return s[0] + s[7];
}

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 5;
  for (int huge = 0; huge < 2; ++huge) {
    float* q = buffer(T * H * K, huge);
    float* k = buffer(T * H * K, huge);
    float* v = buffer(T * H * K, huge);
    float* flush = buffer(64L << 20, false);  // 256 MB: evicts q, k, v from the caches
    double best_f = 1e9, best_s = 1e9;
    float sink = 0;
    for (int r = 0; r < reps; ++r) {
      for (int order = 0; order < 2; ++order) {
        for (long i = 0; i < (64L << 20); i += 16) flush[i] += 1;
        const double t0 = cpu_s();
        sink += order ? read_sequential(q, k, v) : read_forward_order(q, k, v);
        const double t = cpu_s() - t0;
        (order ? best_s : best_f) = std::min(order ? best_s : best_f, t);
      }
    }
    const double gb = 3.0 * T * H * K * sizeof(float) / 1e9;
    std::printf(
        "%s pages: 96 MB of q, k, v: forward order %.1f ms (%.2f GB/s), sequential %.1f ms "
        "(%.2f GB/s) [%g]\n",
        huge ? "2 MB" : "4 KB", best_f * 1e3, gb / best_f, best_s * 1e3, gb / best_s, double(sink));
    std::free(q), std::free(k), std::free(v), std::free(flush);
  }
}
