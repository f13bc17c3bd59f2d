// The Gated DeltaNet forward's products alone, on the forward's shapes (C = 64, K = V = 128), each
// repeated on operands resident in the cache: the row kernels' rate per shape, to set against the
// forward's phases. Includes the op's source to reach its internal kernels.
//   g++ -O2 -std=c++17 -march=x86-64-v3 -I<repo> -I<repo>/include kernel_probe.cpp \
//       -L<build> -llongctx -o kernel_probe
#include <ctime>

#include "src/cpu/gated_delta_rule.cpp"

namespace {

double cpu_s() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

// Best of 5 batches of `reps` calls: µs per call and GFLOP/s for `fma` multiply-adds per call.
template <class F>
void timeit(const char* name, double fma, int reps, F f) {
  double best = 1e9;
  for (int b = 0; b < 5; ++b) {
    const double c0 = cpu_s();
    for (int r = 0; r < reps; ++r) f();
    best = std::min(best, (cpu_s() - c0) / reps);
  }
  std::printf("%-44s %8.2f us  %7.1f GFLOP/s  x1024 = %6.2f ms\n", name, best * 1e6,
              fma > 0 ? 2 * fma / best * 1e-9 : 0.0, best * 1024 * 1e3);
}

}  // namespace

int main() {
  using namespace longctx::cpu;
  const int64_t C = 64, K = 128, V = 128;
  std::vector<float> S(K * V), kq(2 * C * K), X(2 * C * V), U(C * V), M(C * C), A(C * C), kt(K * C),
      P(2 * C * C), kd(C * K);
  for (size_t i = 0; i < S.size(); ++i) S[i] = float(i % 7) * 0.01f;
  for (size_t i = 0; i < kq.size(); ++i) kq[i] = float(i % 5) * 0.01f;
  for (size_t i = 0; i < kd.size(); ++i) kd[i] = float(i % 3) * 0.01f;
  for (size_t i = 0; i < U.size(); ++i) U[i] = float(i % 11) * 0.01f;
  for (int64_t i = 0; i < C; ++i)
    for (int64_t j = 0; j < C; ++j) {
      M[i * C + j] = j <= i ? 0.01f : 0.0f;
      A[i * C + j] = j < i ? 0.001f : 0.0f;
    }
  std::printf("isa %s\n", cpu_isa() == CpuIsa::avx512 ? "avx512" : "avx2");
  timeit("X = [K;Q] S (128 x 128 x 128)", 2.0 * C * K * V, 2000,
         [&] { mul_add(2 * C, V, K, false, kq.data(), K, 1, S.data(), V, false, X.data(), V); });
  timeit("U = K S (64 x 128 x 128)", 1.0 * C * K * V, 2000,
         [&] { mul_add(C, V, K, false, kq.data(), K, 1, S.data(), V, false, X.data(), V); });
  timeit("S = d S + kd^T U (128 x 128 x 64, a by stride)", 1.0 * C * K * V, 2000, [&] {
    mul_add(K, V, C, false, kd.data(), 1, K, U.data(), V, true, S.data(), V, Tri::none, 0.999f);
  });
  timeit("S += kd^T U (no scale)", 1.0 * C * K * V, 2000,
         [&] { mul_add(K, V, C, false, kd.data(), 1, K, U.data(), V, true, S.data(), V); });
  timeit("W = M U (lower, 64 x 128 x 64)", 0.5 * C * (C + 1) * V, 4000, [&] {
    mul_add(C, V, C, false, M.data(), C, 1, U.data(), V, false, X.data(), V, Tri::inner);
  });
  timeit("solve (I + A)^-1 U (64 x 128)", 0.5 * C * (C - 1) * V, 4000,
         [&] { solve_unit_lower(C, V, A.data(), U.data()); });
  timeit("P, M (transpose + triangles)", 0.5 * C * C * K * 2, 4000,
         [&] { gated_products(C, K, kq.data(), kq.data() + C * K, kt.data(), P.data(), true); });
  timeit("transpose k (64 x 128)", 0, 20000, [&] { transpose(C, K, kq.data(), kt.data()); });
  std::vector<float> e(C * C), seg(C);
  timeit("E: 2080 exp_array", 0, 4000, [&] {
    for (int64_t i = 0; i < C; ++i) exp_array(e.data() + i * C, seg.data(), i + 1);
  });
  std::printf("state products at the 3 C K V multiply-adds per chunk: %.2f GFLOP\n",
              3.0 * 2 * C * K * V * 1024 * 1e-9);
}
