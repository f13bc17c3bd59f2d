// Microbench (not part of the build): one thread, dW (N, K) = dyᵀ · x at M = 4096 by the
// register-blocked kernel of commit c949add (longctx::cpu::dweight_rows over all N; reverted in
// 8c9099f, so build the library at c949add) and by one single-threaded OpenBLAS sgemm, alternating;
// medians of REPS thread CPU times. WHICH: 0 the kernel, 1 OpenBLAS, 2 both.
//   g++ -O2 -march=x86-64-v3 dweight_microbench.cpp -Lbuild-cpu -llongctx -lopenblas \
//     -Wl,-rpath,$PWD/build-cpu -o dwk && ./dwk N K REPS [WHICH]
#include <cblas.h>
#include <time.h>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>
namespace longctx::cpu {
void dweight_rows(long, long, long, const float*, const float*, long, long, float*, float*);
}
static double cpu() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}
int main(int argc, char** argv) {
  int M = 4096, N = atoi(argv[1]), K = atoi(argv[2]), reps = atoi(argv[3]);
  int which = argc > 4 ? atoi(argv[4]) : 2;  // 0 ours, 1 blas, 2 both
  openblas_set_num_threads(1);
  std::vector<float> x(M * K), dy(M * N), dw(N * K), dw2(N * K);
  for (size_t i = 0; i < x.size(); ++i) x[i] = (i % 7) * 0.1f;
  for (size_t i = 0; i < dy.size(); ++i) dy[i] = (i % 5) * 0.1f;
  std::vector<double> a, b;
  for (int r = 0; r < reps; ++r) {
    if (which != 1) {
      double t = cpu();
      longctx::cpu::dweight_rows(M, N, K, dy.data(), x.data(), 0, N, dw.data(), nullptr);
      a.push_back(cpu() - t);
    }
    if (which != 0) {
      double t = cpu();
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, K, M, 1, dy.data(), N, x.data(), K, 0,
                  dw2.data(), K);
      b.push_back(cpu() - t);
    }
  }
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  double fl = 2.0 * M * N * K;
  if (which != 1)
    printf("N %d K %d ours %.0f us %.1f GF/s", N, K, a[reps / 2] * 1e6, fl / a[reps / 2] / 1e9);
  if (which != 0) printf("  blas %.0f us %.1f GF/s", b[reps / 2] * 1e6, fl / b[reps / 2] / 1e9);
  printf("\n");
}
