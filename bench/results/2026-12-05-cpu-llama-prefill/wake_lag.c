// Probe (not part of the build): what one empty OpenMP region of 2 threads costs under
// OMP_WAIT_POLICY=passive after a serial gap on the caller, and how late the sleeping worker
// enters it (its start time minus the caller's), means of 300.
//   gcc -O2 -fopenmp wake_lag.c -o wake_lag && OMP_WAIT_POLICY=passive ./wake_lag
// Two runs on the 2-core dev VM, 18:50 UTC, load 1.6 (gap in loop iterations: region us,
// worker lateness us). With another process holding a core: 0: 98.3, 47.1; 2000: 94.2, 40.2;
// 20000: 107.8, 34.9; 200000: 156.5, 25.6; 2000000: 19.7, 16.5. Three seconds later, without:
// 0: 2.9, 1.4; 2000: 3.1, 0.9; 20000: 3.2, 1.0; 200000: 4.4, 1.9; 2000000: 32.4, 29.0.
#include <omp.h>
#include <stdio.h>
#include <time.h>
static double now() {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}
int main() {
  volatile double s = 0;
  int gaps[] = {0, 2000, 20000, 200000, 2000000};
  for (int g = 0; g < 5; g++) {
    double lag = 0, tot = 0;
    int n = 300;
    for (int i = 0; i < n; i++) {
      for (int j = 0; j < gaps[g]; j++) s += j;
      double t0 = now(), t1 = 0;
#pragma omp parallel num_threads(2)
      {
        if (omp_get_thread_num() == 1) t1 = now();
      }
      tot += now() - t0;
      lag += t1 - t0;
    }
    printf("gap %7d iters: region %.1f us, worker start lag %.1f us\n", gaps[g], tot / n, lag / n);
  }
  return 0;
}
