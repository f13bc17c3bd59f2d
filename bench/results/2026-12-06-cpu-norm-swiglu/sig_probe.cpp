#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>
#include "src/cpu/exp_array.h"
int main() {
  for (int64_t n : {8192, 192, 64, 1572864}) {
    std::vector<float> x(n), y(n);
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0, 3);
    for (auto& v : x) v = nd(rng);
    int reps = std::max<int64_t>(1, 20000000 / n);
    std::vector<double> ts;
    for (int r = 0; r < 5; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < reps; ++i) longctx::cpu::sigmoid_array(y.data(), x.data(), n);
      ts.push_back(
          std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count() /
          (double(reps) * n));
    }
    std::sort(ts.begin(), ts.end());
    std::printf("n=%ld: %.3f ns/element (best %.3f)\n", (long)n, ts[2], ts[0]);
  }
}
