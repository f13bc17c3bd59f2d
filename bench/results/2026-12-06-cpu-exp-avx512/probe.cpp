// exp_array, expm1_array, softplus_array and sigmoid_array (src/cpu/exp_array.cpp), the library's
// own functions, with the ISA capped to AVX2 and not (the AVX2 loop against its AVX-512 build):
//   probe        speed: 8192 elements in L1, one thread, best of 200 calls, five alternating rounds
//   probe bits   every float (all 2^32 bit patterns) through both, in blocks of 2^20 + 3 elements
//                (an odd length, so the loops' tails run too)
// From the repo root, after building build-cpu (one line):
//   g++ -O2 -std=c++17 -Iinclude -I. bench/results/2026-12-06-cpu-exp-avx512/probe.cpp
//   -Lbuild-cpu -l:liblongctx.so.0 -o probe && LD_LIBRARY_PATH=build-cpu ./probe
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <vector>

#include "src/cpu/exp_array.h"
#include "src/cpu/isa.h"

using namespace longctx::cpu;

namespace {

using Fn = void (*)(float*, const float*, int64_t);

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double best_s(Fn fn, CpuIsa isa, const float* x, float* y, int64_t n) {
  set_cpu_isa_cap(isa);
  double best = 1e9;
  for (int r = 0; r < 200; ++r) {
    const double t0 = now();
    fn(y, x, n);
    best = std::min(best, now() - t0);
  }
  return best;
}

bool same_bits(Fn fn, const float* x, float* a, float* b, int64_t n) {
  set_cpu_isa_cap(CpuIsa::avx2);
  fn(a, x, n);
  set_cpu_isa_cap(CpuIsa::avx512);
  fn(b, x, n);
  return std::memcmp(a, b, size_t(n) * sizeof(float)) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (cpu_isa() != CpuIsa::avx512) {
    std::printf("no AVX-512 here: nothing to compare\n");
    return 0;
  }
  const std::pair<const char*, Fn> fns[] = {{"exp", exp_array},
                                            {"expm1", expm1_array},
                                            {"softplus", softplus_array},
                                            {"sigmoid", sigmoid_array}};
  const int64_t block = (int64_t(1) << 20) + 3;
  std::vector<float> x(static_cast<size_t>(block)), a(x.size()), b(x.size());
  if (argc > 1 && !std::strcmp(argv[1], "bits")) {
    int64_t differ[4] = {0, 0, 0, 0}, blocks = 0;
    for (int64_t base = 0; base < (int64_t(1) << 32); base += block, ++blocks) {
      const int64_t n = std::min(block, (int64_t(1) << 32) - base);
      for (int64_t i = 0; i < n; ++i) {
        const uint32_t u = uint32_t(base + i);
        std::memcpy(&x[size_t(i)], &u, sizeof u);
      }
      for (int f = 0; f < 4; ++f)
        differ[f] += !same_bits(fns[f].second, x.data(), a.data(), b.data(), n);
    }
    std::printf(
        "blocks (of %lld) whose AVX2 and AVX-512 results differ: exp %lld, expm1 %lld, softplus "
        "%lld, sigmoid %lld\n",
        (long long)blocks, (long long)differ[0], (long long)differ[1], (long long)differ[2],
        (long long)differ[3]);
    return 0;
  }
  const int64_t n = 8192;
  for (int64_t i = 0; i < n; ++i) x[size_t(i)] = -20.0f + 25.0f * float(i) / float(n);
  for (int round = 0; round < 5; ++round) {
    std::printf("round %d:", round);
    for (const auto& [name, fn] : fns) {
      const double avx2 = best_s(fn, CpuIsa::avx2, x.data(), a.data(), n);
      const double avx512 = best_s(fn, CpuIsa::avx512, x.data(), b.data(), n);
      std::printf("  %s %.3f -> %.3f ns/element (%.2fx)", name, avx2 / double(n) * 1e9,
                  avx512 / double(n) * 1e9, avx2 / avx512);
    }
    std::printf("\n");
  }
  return 0;
}
