// The linear backward's two GEMMs as OpenBLAS-threaded calls against one OpenMP region of
// single-threaded blocks (src/cpu/linear.cpp), on the hybrid preset's projection shapes at
// M = 4096. Build and run: g++ -O2 -fopenmp linear_bwd_gemms.cpp -o gemms -lopenblas &&
// OMP_WAIT_POLICY=passive ./gemms THREADS REPS M   (here: ./gemms 2 20 4096)
#include <cblas.h>
#include <omp.h>
#include <time.h>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include <chrono>
#include <algorithm>
static double cpu() { timespec t; clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
static double wall() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
int main(int argc, char** argv) {
  int threads = atoi(argv[1]); int reps = atoi(argv[2]);
  omp_set_num_threads(threads);
  int M = atoi(argv[3]);
  int shapes[][2] = {{128, 648}, {256, 128}, {128, 768}, {384, 128}, {128, 256}};
  double tot[2][2] = {};
  for (auto& s : shapes) {
    int Cin = s[0], Cout = s[1];
    std::vector<float> x(M * Cin, 0.5f), w(Cout * Cin, 0.25f), dy(M * Cout, 0.1f), dx(M * Cin), dw(Cout * Cin), dx2(M*Cin), dw2(Cout*Cin);
    for (int k = 0; k < 2; ++k) {
      double c = 0, wl = 0;
      for (int rep = 0; rep < reps + 1; ++rep) {
        double c0 = cpu(), w0 = wall();
        if (k == 0) {
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, Cin, Cout, 1, dy.data(), Cout, w.data(), Cin, 0, dx.data(), Cin);
          cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Cout, Cin, M, 1, dy.data(), Cout, x.data(), Cin, 0, dw.data(), Cin);
        } else {
          int t = threads;
          #pragma omp parallel for schedule(static)
          for (int i = 0; i < 2 * t; ++i) {
            if (i < t) {
              int m0 = int(int64_t(M) * i / t), m1 = int(int64_t(M) * (i + 1) / t);
              cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m1 - m0, Cin, Cout, 1, dy.data() + m0 * Cout, Cout, w.data(), Cin, 0, dx2.data() + m0 * Cin, Cin);
            } else {
              int j = i - t; int c0_ = Cout * j / t, c1 = Cout * (j + 1) / t;
              cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c1 - c0_, Cin, M, 1, dy.data() + c0_, Cout, x.data(), Cin, 0, dw2.data() + c0_ * Cin, Cin);
            }
          }
        }
        if (rep) { c += cpu() - c0; wl += wall() - w0; }
      }
      tot[k][0] += c / reps; tot[k][1] += wl / reps;
    }
    bool same = std::equal(dx.begin(), dx.end(), dx2.begin()) && std::equal(dw.begin(), dw.end(), dw2.begin());
    printf("Cin %d Cout %d identical bits: %d\n", Cin, Cout, same);
  }
  printf("threaded gemms: cpu %.2f ms wall %.2f ms | one region: cpu %.2f ms wall %.2f ms\n", 1e3*tot[0][0], 1e3*tot[0][1], 1e3*tot[1][0], 1e3*tot[1][1]);
}
