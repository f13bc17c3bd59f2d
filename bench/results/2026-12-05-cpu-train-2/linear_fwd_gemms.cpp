// The linear forward's GEMM (y = x W^T) as one OpenBLAS-threaded call against one OpenMP region
// of single-threaded row blocks of several heights (src/cpu/linear.cpp), on the llama preset's
// projection shapes at M = 4096 (q, k, v, o, gate, up, down, head). Alternates the variants
// within each repetition. Build and run:
//   g++ -O2 -fopenmp linear_fwd_gemms.cpp -o gemms -lopenblas &&
//   OMP_WAIT_POLICY=passive ./gemms THREADS REPS M     (here: ./gemms 2 20 4096)
#include <cblas.h>
#include <omp.h>
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

static double cpu() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}
static double wall() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int main(int argc, char** argv) {
  const int threads = atoi(argv[1]), reps = atoi(argv[2]), M = atoi(argv[3]);
  const int shapes[][2] = {{128, 128}, {128, 64},  {128, 64},  {128, 128},
                           {128, 384}, {128, 384}, {384, 128}, {128, 256}};  // Cin, Cout
  // variant 0: threaded call; variant v > 0: row blocks of heights[v] rows (0: M / threads)
  const int heights[] = {-1, 0, 1024, 512, 256, 128, 64};
  const int V = sizeof(heights) / sizeof(heights[0]);
  std::vector<double> tc(V), tw(V);
  struct Buf {
    std::vector<float> x, w, y;
  };
  std::vector<Buf> bufs;
  for (auto& s : shapes)
    bufs.push_back({std::vector<float>(size_t(M) * s[0], 0.5f),
                    std::vector<float>(size_t(s[1]) * s[0], 0.25f),
                    std::vector<float>(size_t(M) * s[1])});
  for (int rep = 0; rep <= reps; ++rep) {
    for (int v = 0; v < V; ++v) {
      const double c0 = cpu(), w0 = wall();
      for (size_t i = 0; i < bufs.size(); ++i) {
        const int Cin = shapes[i][0], Cout = shapes[i][1];
        const float *x = bufs[i].x.data(), *w = bufs[i].w.data();
        float* y = bufs[i].y.data();
        if (v == 0) {
          omp_set_num_threads(threads);
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, Cout, Cin, 1, x, Cin, w, Cin, 0,
                      y, Cout);
          continue;
        }
        const int rows = heights[v] ? heights[v] : (M + threads - 1) / threads;
        const int blocks = (M + rows - 1) / rows;
#pragma omp parallel num_threads(threads)
        {
          omp_set_num_threads(1);
#pragma omp for schedule(static)
          for (int b = 0; b < blocks; ++b) {
            const int m0 = b * rows, m1 = m0 + rows < M ? m0 + rows : M;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m1 - m0, Cout, Cin, 1,
                        x + size_t(m0) * Cin, Cin, w, Cin, 0, y + size_t(m0) * Cout, Cout);
          }
        }
      }
      if (rep) tc[v] += cpu() - c0, tw[v] += wall() - w0;
    }
  }
  for (int v = 0; v < V; ++v)
    printf("%-10s rows %5d: %7.2f ms CPU %7.2f ms wall per pass of the 8 shapes\n",
           v ? "blocks" : "threaded", v ? (heights[v] ? heights[v] : M / threads) : M,
           1e3 * tc[v] / reps, 1e3 * tw[v] / reps);
}
