// GB/s of a streaming read (4 AVX-512 sums) over buffers of 256 KB .. 64 MB, about 2 GB a size,
// per CPU second (CLOCK_PROCESS_CPUTIME_ID): the L2 (2 MB a core), the L3 and memory seen by one
// core. g++ -O2 -mavx512f cache_read.cpp -o cache_read
#include <immintrin.h>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <vector>
int main(int argc, char** argv) {
  for (long kb : {256L, 1024L, 1536L, 2048L, 3300L, 4096L, 8192L, 65536L}) {
    long n = kb * 1024 / 4;
    std::vector<float> buf(n, 1.0f);
    int reps = int(2e9 / (n * 4)) + 1;
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    timespec a, b;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
    for (int r = 0; r < reps; ++r)
      for (long i = 0; i < n; i += 64) {
        s0 = _mm512_add_ps(s0, _mm512_loadu_ps(&buf[i]));
        s1 = _mm512_add_ps(s1, _mm512_loadu_ps(&buf[i + 16]));
        s2 = _mm512_add_ps(s2, _mm512_loadu_ps(&buf[i + 32]));
        s3 = _mm512_add_ps(s3, _mm512_loadu_ps(&buf[i + 48]));
      }
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
    double t = (b.tv_sec - a.tv_sec) + 1e-9 * (b.tv_nsec - a.tv_nsec);
    float out[16];
    _mm512_storeu_ps(out, _mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
    std::printf("%6ld KB: %.1f GB/s (%g)\n", kb, double(n) * 4 * reps / t * 1e-9, out[0]);
  }
}
