// The Gated DeltaNet forward's two state products (X = [K̂; Q̂] S and S := d S + (ρ ⊙ K̂)ᵀ U,
// C = 64, K = V = 128) through the op's own mul_add, with the buffers laid out as in the forward
// (every buffer 4 KB aligned, rows 512 bytes apart) against padded leading dimensions and
// offsets between buffers; and with a (K̂; Q̂ and ρ ⊙ K̂) rewritten before each call, as
// load_chunk does, against a left in place. Each call takes the next of 8 states (512 KB, as a
// task of 8 heads does). Includes the op's source to reach mul_add.
//   g++ -O2 -std=c++17 -march=x86-64-v3 -I<repo> -I<repo>/include pad_probe.cpp \
//       -L<build> -llongctx -o pad_probe
#include <cstring>
#include <ctime>

#include "bench/results/2026-12-05-cpu-gdn-speed-8/core_clock.h"
#include "src/cpu/gated_delta_rule.cpp"

namespace {
using namespace longctx::cpu;

double cpu_s() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

constexpr int64_t C = 64, K = 128, V = 128, G = 8;

struct Layout {
  const char* name;
  int64_t ld;    // of S, X and U
  int64_t skew;  // bytes added between consecutive buffers (0: all at the same address mod 4 KB)
};

// One arena: kq, kd, the G states, X, U; each buffer starts on a 4 KB boundary plus its skew.
struct Bufs {
  std::vector<float> mem;
  float *kq, *kd, *S[G], *X, *U, *kq_src, *kd_src;
  Bufs(const Layout& l) {
    const int64_t page = 1024, skew = l.skew / 4;
    auto round = [&](int64_t n) { return (n + page - 1) / page * page; };
    const int64_t sizes[] = {2 * C * K, C * K, K * l.ld, 2 * C * l.ld, C * l.ld};
    int64_t total = 0;
    for (int64_t s : sizes) total += (round(s) + page) * (s == K * l.ld ? G : 1);
    mem.assign(size_t(total + 2 * page + 3 * C * K + page), 0.0f);
    float* base = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(mem.data()) + 4095) &
                                           ~uintptr_t(4095));
    int64_t at = 0, idx = 0;
    auto take = [&](int64_t n) {
      float* p = base + at + idx * skew;
      at += round(n + skew) + page * 0;
      ++idx;
      return p;
    };
    kq = take(2 * C * K);
    kd = take(C * K);
    for (int g = 0; g < G; ++g) S[g] = take(K * l.ld);
    X = take(2 * C * l.ld);
    U = take(C * l.ld);
    kq_src = take(2 * C * K);
    kd_src = take(C * K);
    for (int64_t i = 0; i < 2 * C * K; ++i) kq[i] = kq_src[i] = float(i % 5) * 0.01f;
    for (int64_t i = 0; i < C * K; ++i) kd[i] = kd_src[i] = float(i % 3) * 0.01f;
    for (int g = 0; g < G; ++g)
      for (int64_t i = 0; i < K * l.ld; ++i) S[g][i] = float(i % 7) * 0.01f;
    for (int64_t i = 0; i < C * l.ld; ++i) U[i] = float(i % 11) * 0.01f;
  }
};

// The TSC cycles of all calls (the forward's instrumented build measures the same way).
unsigned long long g_tsc = 0;

// Best of 7 batches of `reps` calls, seconds per call (CPU time); the mean TSC cycles per call
// over all 7 batches into *tsc.
template <class F>
double best_of(int reps, F f, double* tsc = nullptr) {
  double best = 1e9;
  const unsigned long long t0 = __rdtsc();
  for (int b = 0; b < 7; ++b) {
    const double c0 = cpu_s();
    for (int r = 0; r < reps; ++r) f(r);
    best = std::min(best, (cpu_s() - c0) / reps);
  }
  if (tsc) *tsc = double(__rdtsc() - t0) / (7.0 * reps);
  return best;
}
}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 3, reps = 2000;
  const Layout layouts[] = {{"forward (ld 128, 4 KB aligned)", 128, 0},
                            {"ld 144 (S, X, U)", 144, 0},
                            {"ld 128, buffers skewed 1088 B", 128, 1088},
                            {"ld 144, buffers skewed 1088 B", 144, 1088}};
  const double flop = 2.0 * (2 * C * K * V + C * K * V);
  for (int round = 0; round < rounds; ++round)
    for (const Layout& l : layouts) {
      Bufs b(l);
      double ghz_before = 0, ghz_after = 0;
      unsigned long long xmin = ~0ull, smin = ~0ull;  // TSC cycles, per call
      long nf = 0;
      auto products = [&](int r) {
        const bool sample = r % 16 == 0;
        if (sample) ghz_before += core_ghz();
        float* S = b.S[r % G];
        const unsigned long long t0 = __rdtsc();
        mul_add(2 * C, V, K, false, b.kq, K, 1, S, l.ld, false, b.X, l.ld);
        const unsigned long long t1 = __rdtsc();
        mul_add(K, V, C, false, b.kd, 1, K, b.U, l.ld, true, S, l.ld, Tri::none, 0.999f);
        const unsigned long long t2 = __rdtsc();
        xmin = std::min(xmin, t1 - t0);
        smin = std::min(smin, t2 - t1);
        if (sample) ghz_after += core_ghz(), ++nf;
      };
      auto rewrite = [&](int) {
        std::memcpy(b.kq, b.kq_src, 2 * C * K * 4);
        std::memcpy(b.kd, b.kd_src, C * K * 4);
      };
      double tsc = 0;
      const double tp = best_of(reps, products, &tsc);
      const double tw = best_of(reps, rewrite);
      const double tb = best_of(reps, [&](int r) {
        rewrite(r);
        products(r);
      });
      std::printf(
          "%-34s mean %6.0f TSC cycles; products %6.2f us (%5.1f GFLOP/s); a rewritten first: "
          "%6.2f - %5.2f = "
          "%6.2f us (%5.1f GFLOP/s)\n",
          l.name, tsc, tp * 1e6, flop / tp * 1e-9, tb * 1e6, tw * 1e6, (tb - tw) * 1e6,
          flop / (tb - tw) * 1e-9);
      std::printf(
          "%-34s core GHz before X %.3f, after S %.3f (%ld samples); per call min X %llu min S "
          "%llu TSC\n",
          "", ghz_before / nf, ghz_after / nf, nf, xmin, smin);
    }
}
