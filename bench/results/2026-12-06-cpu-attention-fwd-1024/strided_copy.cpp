// How fast one thread copies one head's rows out of a (B·T, H, D) f32 tensor (rows of D = 64
// floats, H·D = 512 floats = 2 KB apart: two rows of a head per 4 KB page), as the forward's Q
// copy and K/V packing do, with and without a software prefetch `dist` rows ahead. Between
// passes a 64 MB buffer is swept so that the tensor (8 MB, B·T = 4096, H = 8) starts out of L2
// (it fits the 32 MB L3; `cold` sweeps after every head instead, with the same effect on L2).
//   g++ -O2 -mavx2 -std=c++17 strided_copy.cpp -o strided_copy && ./strided_copy
#include <immintrin.h>
#include <time.h>

#include <cstdio>
#include <cstring>
#include <vector>

static double now() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

int main() {
  const long BT = 4096, H = 8, D = 64;
  std::vector<float> src(BT * H * D, 1.f), dst(BT * D), junk(16 << 20, 2.f);
  volatile float sink = 0;
  for (int round = 0; round < 3; ++round)
    for (int dist : {0, 4, 8, 16, 32}) {
      double t = 0;
      for (long h = 0; h < H; ++h) {
        for (size_t i = 0; i < junk.size(); i += 16) junk[i] += 1.f;  // evict src from L2
        sink = sink + junk[round];
        const double t0 = now();
        for (long r = 0; r < BT; ++r) {
          const float* s = src.data() + (r * H + h) * D;
          if (dist && r + dist < BT) {
            const char* p = reinterpret_cast<const char*>(s + dist * H * D);
            for (int c = 0; c < 256; c += 64) _mm_prefetch(p + c, _MM_HINT_T0);
          }
          for (long d = 0; d < D; d += 8)
            _mm256_storeu_ps(dst.data() + r * D + d, _mm256_loadu_ps(s + d));
        }
        t += now() - t0;
        sink = sink + dst[h];
      }
      const double bytes = double(BT) * H * D * 4;
      if (dist == 0) {  // the same bytes contiguously (one head's rows packed), for reference
        double tc = 0;
        for (long h = 0; h < H; ++h) {
          for (size_t i = 0; i < junk.size(); i += 16) junk[i] += 1.f;
          sink = sink + junk[round];
          const float* s = src.data() + h * BT * D;
          const double t0 = now();
          for (long i = 0; i < BT * D; i += 8)
            _mm256_storeu_ps(dst.data() + i, _mm256_loadu_ps(s + i));
          tc += now() - t0;
          sink = sink + dst[h];
        }
        std::printf("round %d contiguous:           %.2f ms per 8 MB\n", round, tc * 1e3);
      }
      std::printf("round %d prefetch %2d rows ahead: %.2f ms per 8 MB tensor, %.1f GB/s\n", round,
                  dist, t * 1e3, bytes / t * 1e-9);
    }
}
