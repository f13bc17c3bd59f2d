// exp2_ps512 (src/cpu/attention.cpp) with and without its two clamps, on every f32 x <= 127 and
// every NaN: the same bits? (kUpTo127 in exp2_ps512.) A copy of the library's code.
//   g++ -O2 -march=native exp2_check.cpp -o exp2_check && ./exp2_check
#include <immintrin.h>

#include <cstdint>
#include <cstdio>
#include <cstring>

constexpr float kExp2Poly[] = {1.5252733804059841e-05f, 1.5403530393381609e-04f,
                               1.3333558146428443e-03f, 9.6181291076284772e-03f,
                               5.5504108664821580e-02f, 2.4022650695910071e-01f,
                               6.9314718055994531e-01f, 1.0f};

template <bool kUpTo127>
__attribute__((target("avx512f"))) inline __m512 exp2_ps512(__m512 x) {
  const __mmask16 all = 0xFFFF;
  const __m512 lo = _mm512_set1_ps(-125.f);
  const __m512 xc =
      kUpTo127 ? x
               : _mm512_maskz_min_ps(all, _mm512_set1_ps(127.f), _mm512_maskz_max_ps(all, lo, x));
  const __m512 n =
      _mm512_maskz_roundscale_ps(all, xc, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(xc, n);
  __m512 p = _mm512_set1_ps(kExp2Poly[0]);
  for (int c = 1; c < 8; ++c) p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kExp2Poly[c]));
  return _mm512_maskz_scalef_ps(~_mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ), p, n);
}

int main() {
  uint64_t checked = 0, differ = 0;
  const __m512i step = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (uint64_t base = 0; base < (uint64_t(1) << 32); base += 16) {
    const __m512i bits = _mm512_add_epi32(_mm512_set1_epi32(int32_t(uint32_t(base))), step);
    const __m512 x = _mm512_castsi512_ps(bits);
    // Inputs in the contract: x <= 127 or NaN (unordered).
    const __mmask16 in = _mm512_cmp_ps_mask(x, _mm512_set1_ps(127.f), _CMP_NGT_UQ);
    const __m512i a = _mm512_castps_si512(exp2_ps512<false>(x));
    const __m512i b = _mm512_castps_si512(exp2_ps512<true>(x));
    differ += __builtin_popcount(_mm512_mask_cmpneq_epi32_mask(in, a, b));
    checked += __builtin_popcount(in);
  }
  std::printf("checked %llu inputs (x <= 127 or NaN), %llu differ\n", (unsigned long long)checked,
              (unsigned long long)differ);
  return differ != 0;
}
