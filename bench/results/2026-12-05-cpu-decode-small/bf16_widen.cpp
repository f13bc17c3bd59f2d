// Is the bf16 GEMV of the small preset bound by widening bf16 to f32? The preset's 29 matrices
// in bf16 (1.65 MB, in one core's L2 if little else is), y = W x with f32 accumulation, four
// kernels, alternating, one thread:
//   cvt      today's src/cpu/gemv.cpp AVX-512 path: 16 bf16 zero-extended (vpmovzxwd) then
//            shifted left 16, one FMA: 16-lane partial sums over k mod 16;
//   andshift 32 bf16 in one load, the odd ones by an AND with 0xffff0000 and the even ones by a
//            shift, each with its own 16-lane sum against x pre-split into even and odd k (once
//            per call): two ops of widening for 32 weights instead of four, but another
//            summation order (k mod 32, even and odd apart), so other bits.
//   perm     16 bf16 to the high halves of 16 dwords by one masked vpermw (AVX512BW), no shift:
//            the same order and bits as cvt, one uop of widening instead of two;
//   noreduce cvt without each row's 16-lane reduction (the 4 rows' sums added, one lane kept:
//            wrong results, for the reduction's cost).
// All run 4 rows a pass as the library does (no prefetch).
//
//   bf16_widen [steps 2000] [rounds 3] [once|percall] [layers 8]
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Matrix {
  int rows, cols;
  std::vector<uint16_t> w;  // bf16 bits
};

__attribute__((target("avx512f"))) float hsum(__m512 v) {
  return _mm512_reduce_add_ps(v);
}

__attribute__((target("avx512f,avx512bw"))) void gemv_cvt(const Matrix& m, const float* x,
                                                          float* y) {
  for (int o = 0; o < m.rows; o += 4) {
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps()};
    for (int k = 0; k < m.cols; k += 16) {
      const __m512 xv = _mm512_loadu_ps(x + k);
      for (int r = 0; r < 4; ++r) {
        const __m256i h = _mm256_loadu_si256(
            reinterpret_cast<const __m256i*>(m.w.data() + size_t(o + r) * size_t(m.cols) + k));
        const __m512 wv = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
        acc[r] = _mm512_fmadd_ps(wv, xv, acc[r]);
      }
    }
    for (int r = 0; r < 4; ++r) y[o + r] = hsum(acc[r]);
  }
}

// cvt with a vpermw for the widening: word i of the 16 loaded to the high half of dword i.
__attribute__((target("avx512f,avx512bw"))) void gemv_perm(const Matrix& m, const float* x,
                                                           float* y) {
  const __m512i idx = _mm512_set_epi16(15, 15, 14, 14, 13, 13, 12, 12, 11, 11, 10, 10, 9, 9, 8, 8,
                                       7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
  for (int o = 0; o < m.rows; o += 4) {
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps()};
    for (int k = 0; k < m.cols; k += 16) {
      const __m512 xv = _mm512_loadu_ps(x + k);
      for (int r = 0; r < 4; ++r) {
        const __m256i h = _mm256_loadu_si256(
            reinterpret_cast<const __m256i*>(m.w.data() + size_t(o + r) * size_t(m.cols) + k));
        const __m512i wide =
            _mm512_maskz_permutexvar_epi16(0xaaaaaaaau, idx, _mm512_castsi256_si512(h));
        acc[r] = _mm512_fmadd_ps(_mm512_castsi512_ps(wide), xv, acc[r]);
      }
    }
    for (int r = 0; r < 4; ++r) y[o + r] = hsum(acc[r]);
  }
}

// cvt without the reduction of each row.
__attribute__((target("avx512f,avx512bw"))) void gemv_noreduce(const Matrix& m, const float* x,
                                                               float* y) {
  alignas(64) float lanes[16];
  for (int o = 0; o < m.rows; o += 4) {
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps()};
    for (int k = 0; k < m.cols; k += 16) {
      const __m512 xv = _mm512_loadu_ps(x + k);
      for (int r = 0; r < 4; ++r) {
        const __m256i h = _mm256_loadu_si256(
            reinterpret_cast<const __m256i*>(m.w.data() + size_t(o + r) * size_t(m.cols) + k));
        const __m512 wv = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
        acc[r] = _mm512_fmadd_ps(wv, xv, acc[r]);
      }
    }
    _mm512_store_ps(lanes,
                    _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
    y[o] = lanes[o % 16];
  }
}

// x_even[k/2 over each 32-block] and x_odd likewise: lane i of a 32-block's pair is k = 2i, 2i+1.
__attribute__((target("avx512f,avx512bw"))) void gemv_andshift(const Matrix& m, const float* x_even,
                                                               const float* x_odd, float* y) {
  const __m512i hi_mask = _mm512_set1_epi32(int32_t(0xffff0000u));
  for (int o = 0; o < m.rows; o += 4) {
    __m512 ev[4], od[4];
    for (int r = 0; r < 4; ++r) ev[r] = od[r] = _mm512_setzero_ps();
    for (int k = 0; k < m.cols; k += 32) {
      const __m512 xe = _mm512_loadu_ps(x_even + k / 2), xo = _mm512_loadu_ps(x_odd + k / 2);
      for (int r = 0; r < 4; ++r) {
        const __m512i w = _mm512_loadu_si512(m.w.data() + size_t(o + r) * size_t(m.cols) + k);
        od[r] = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(w, hi_mask)), xo, od[r]);
        ev[r] = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(w, 16)), xe, ev[r]);
      }
    }
    for (int r = 0; r < 4; ++r) y[o + r] = hsum(_mm512_add_ps(ev[r], od[r]));
  }
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  if (!__builtin_cpu_supports("avx512bw")) {
    std::printf("needs AVX-512 (BW)\n");
    return 0;
  }
  const int steps = argc > 1 ? std::atoi(argv[1]) : 2000;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 3;
  std::vector<Matrix> ms;
  auto add = [&](int rows, int cols) {
    Matrix m{rows, cols, std::vector<uint16_t>(size_t(rows) * size_t(cols))};
    for (size_t i = 0; i < m.w.size(); ++i) {
      const float f = float(int(i % 7) - 3) * 0.01f;
      uint32_t bits;
      std::memcpy(&bits, &f, 4);
      m.w[i] = uint16_t(bits >> 16);
    }
    ms.push_back(std::move(m));
  };
  // argv[4]: the layer count (8, the preset's; fewer: a smaller working set, for the cache's part).
  const int layers = argc > 4 ? std::atoi(argv[4]) : 8;
  for (int layer = 0; layer < layers; ++layer) {
    if (layer % 2 == 0) {
      add(128, 128), add(64, 128), add(64, 128), add(128, 128);
    } else {
      add(384, 128), add(384, 128), add(128, 384);
    }
  }
  add(256, 128);
  size_t bytes = 0;
  for (const auto& m : ms) bytes += m.w.size() * 2;
  std::vector<float> x(384), xe(192), xo(192), y(384), y2(384), y3(384), y4(384);
  for (int k = 0; k < 384; ++k) x[size_t(k)] = 0.5f + 0.001f * float(k);
  // x split by parity, as a kernel would once per call (scalar here), or once for all (argv[3]
  // "once": the cost of the widening alone).
  const bool split_per_call = !(argc > 3 && !std::strcmp(argv[3], "once"));
  auto split = [&](int cols) {
    for (int k = 0; k < cols; k += 32)
      for (int i = 0; i < 16; ++i)
        xe[size_t(k / 2 + i)] = x[size_t(k + 2 * i)],
                          xo[size_t(k / 2 + i)] = x[size_t(k + 2 * i + 1)];
  };
  split(384);
  std::printf("%zu matrices, %.2f MB of bf16 a step; x split %s\n", ms.size(), double(bytes) * 1e-6,
              split_per_call ? "per call" : "once");
  for (int r = 0; r < rounds; ++r) {
    std::vector<double> a, b, c, d;
    auto timed = [&](std::vector<double>& us, auto&& body) {
      const double t0 = now_s();
      body();
      us.push_back(1e6 * (now_s() - t0));
    };
    for (int s = 0; s < steps; ++s) {
      timed(a, [&] {
        for (const auto& m : ms) gemv_cvt(m, x.data(), y.data());
      });
      timed(b, [&] {
        for (const auto& m : ms) {
          if (split_per_call) split(m.cols);
          gemv_andshift(m, xe.data(), xo.data(), y2.data());
        }
      });
      timed(c, [&] {
        for (const auto& m : ms) gemv_perm(m, x.data(), y3.data());
      });
      timed(d, [&] {
        for (const auto& m : ms) gemv_noreduce(m, x.data(), y4.data());
      });
    }
    auto rate = [&](const std::vector<double>& us) { return double(bytes) / median(us) * 1e-3; };
    std::printf(
        "round %d: us/step (GB/s): cvt %.1f (%.1f), andshift %.1f (%.1f), perm %.1f (%.1f), "
        "noreduce %.1f (%.1f); y[0] cvt %g, andshift %g, perm %g\n",
        r + 1, median(a), rate(a), median(b), rate(b), median(c), rate(c), median(d), rate(d),
        double(y[0]), double(y2[0]), double(y3[0]));
  }
  return 0;
}
