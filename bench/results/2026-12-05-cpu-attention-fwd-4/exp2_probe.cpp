// exp2_shifted_avx512 (src/cpu/attention.cpp at 9608fdb) against the same with exp2_ps512's
// max(-125, x) clamp removed, and two rows a call: (1) the two exp2s' bits on all 2^32 inputs,
// (2) CPU time of the forward's exp2 pass over a 128 x 256 tile of scores (rows 272 floats
// apart, L2-resident as in attend_rows; the tile copied in first, as the S kernel's stores, and
// the copy timed alone), alternating, one thread.
//   g++ -O2 -std=c++17 -mavx2 -mfma exp2_probe.cpp -o exp2_probe && ./exp2_probe
#include <immintrin.h>
#include <time.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

namespace {

constexpr float kExp2Poly[] = {1.5252733804059841e-05f, 1.5403530393381609e-04f,
                               1.3333558146428443e-03f, 9.6181291076284772e-03f,
                               5.5504108664821580e-02f, 2.4022650695910071e-01f,
                               6.9314718055994531e-01f, 1.0f};

template <bool kClampLow>
__attribute__((target("avx512f"))) inline __m512 exp2_ps512(__m512 x) {
  const __mmask16 all = 0xFFFF;
  const __m512 lo = _mm512_set1_ps(-125.f);
  const __m512 xl = kClampLow ? _mm512_maskz_max_ps(all, lo, x) : x;
  const __m512 xc = _mm512_maskz_min_ps(all, _mm512_set1_ps(127.f), xl);
  const __m512 n =
      _mm512_maskz_roundscale_ps(all, xc, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(xc, n);
  __m512 p = _mm512_set1_ps(kExp2Poly[0]);
  for (int c = 1; c < 8; ++c) p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kExp2Poly[c]));
  return _mm512_maskz_scalef_ps(~_mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ), p, n);
}

template <bool kClampLow>
__attribute__((target("avx512f"))) float exp2_shifted(float* s, int64_t n, float m) {
  const __m512 m16 = _mm512_set1_ps(m);
  __m512 sum = _mm512_setzero_ps();
  for (int64_t j = 0; j + 16 <= n; j += 16) {
    const __m512 p = exp2_ps512<kClampLow>(_mm512_sub_ps(_mm512_loadu_ps(s + j), m16));
    _mm512_storeu_ps(s + j, p);
    sum = _mm512_add_ps(sum, p);
  }
  return _mm512_reduce_add_ps(sum);
}

// Two rows per call, their iterations interleaved (the same values and sums as two calls).
__attribute__((target("avx512f"))) void exp2_shifted_two(float* s0, float* s1, int64_t n, float m0,
                                                         float m1, float* sums) {
  const __m512 a16 = _mm512_set1_ps(m0), b16 = _mm512_set1_ps(m1);
  __m512 sa = _mm512_setzero_ps(), sb = _mm512_setzero_ps();
  for (int64_t j = 0; j + 16 <= n; j += 16) {
    const __m512 pa = exp2_ps512<true>(_mm512_sub_ps(_mm512_loadu_ps(s0 + j), a16));
    const __m512 pb = exp2_ps512<true>(_mm512_sub_ps(_mm512_loadu_ps(s1 + j), b16));
    _mm512_storeu_ps(s0 + j, pa);
    _mm512_storeu_ps(s1 + j, pb);
    sa = _mm512_add_ps(sa, pa);
    sb = _mm512_add_ps(sb, pb);
  }
  sums[0] = _mm512_reduce_add_ps(sa);
  sums[1] = _mm512_reduce_add_ps(sb);
}

__attribute__((target("avx512f"))) bool same_on_all_inputs() {
  alignas(64) uint32_t bits[16];
  alignas(64) float a[16], b[16];
  for (uint64_t base = 0; base < (uint64_t(1) << 32); base += 16) {
    for (int l = 0; l < 16; ++l) bits[l] = uint32_t(base + l);
    __m512 x;
    std::memcpy(&x, bits, 64);
    _mm512_store_ps(a, exp2_ps512<true>(x));
    _mm512_store_ps(b, exp2_ps512<false>(x));
    if (std::memcmp(a, b, 64) != 0) {
      std::printf("differ near input bits 0x%08x\n", unsigned(base));
      return false;
    }
  }
  return true;
}

double cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

}  // namespace

int main() {
  std::printf("same bits on all 2^32 inputs: %s\n", same_on_all_inputs() ? "yes" : "no");
  constexpr int64_t rows = 128, nk = 256, ld = 272, reps = 4000;
  std::vector<float> src(rows * ld), S(rows * ld);
  std::mt19937 gen(1);
  std::uniform_real_distribution<float> u(-12.f, 0.f);
  for (float& x : src) x = u(gen);
  double best[4] = {1e30, 1e30, 1e30, 1e30};
  volatile float sink = 0;
  for (int round = 0; round < 10; ++round)
    for (int v = 0; v < 4; ++v) {
      const double t0 = cpu_seconds();
      for (int64_t it = 0; it < reps; ++it) {
        std::memcpy(S.data(), src.data(), S.size() * sizeof(float));  // as the S kernel's stores
        float l = 0;
        if (v == 3) continue;  // the copy alone
        if (v == 2) {
          for (int64_t r = 0; r < rows; r += 2) {
            float two[2];
            exp2_shifted_two(S.data() + r * ld, S.data() + (r + 1) * ld, nk, 0.f, 0.f, two);
            l += two[0] + two[1];
          }
        } else {
          for (int64_t r = 0; r < rows; ++r)
            l += v == 0 ? exp2_shifted<true>(S.data() + r * ld, nk, 0.f)
                        : exp2_shifted<false>(S.data() + r * ld, nk, 0.f);
        }
        sink = sink + l;
      }
      best[v] = std::min(best[v], cpu_seconds() - t0);
    }
  std::printf(
      "per tile, best of 10 (us): copy alone %.2f; copy + exp2 pass: clamp %.2f, no clamp %.2f, "
      "two rows a call %.2f\n",
      best[3] / reps * 1e6, best[0] / reps * 1e6, best[1] / reps * 1e6, best[2] / reps * 1e6);
}
