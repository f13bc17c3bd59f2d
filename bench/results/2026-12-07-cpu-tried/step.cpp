// A preset's training step (forward with targets + backward) and prefill (forward), 4096 tokens,
// 2 threads, no profiling: medians (and the best) of wall and CPU ms over REPS. From the
// repository root:  step PRESET T REPS LABEL
//   g++ -O2 -std=c++17 -Iinclude step.cpp -Lbuild-cpu -llongctx -o step
#include <time.h>
#include <algorithm>
#include <cstdio>
#include <random>
#include <string>
#include <vector>
#include "longctx/longctx.h"
#include "longctx/model/model.h"
using namespace longctx;
static double now(clockid_t c) {
  timespec ts;
  clock_gettime(c, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}
static double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
int main(int argc, char** argv) {
  const std::string preset = argv[1];
  const int64_t T = atoll(argv[2]);
  const int reps = atoi(argv[3]);
  Context ctx(Device::cpu(), 2);
  ModelConfig config = ModelConfig::load("models/presets/" + preset + ".json");
  Model model(config, ctx, DType::f32, 1);
  const int64_t B = std::max<int64_t>(1, 4096 / T);
  std::mt19937_64 rng(T);
  Tensor x = Tensor::empty({B, T}, DType::i32), y = Tensor::empty({B, T}, DType::i32);
  for (int64_t i = 0; i < B * T; ++i)
    static_cast<int32_t*>(x.data())[i] = int32_t(rng() % config.vocab_size);
  for (int64_t i = 0; i < B * T; ++i)
    static_cast<int32_t*>(y.data())[i] = int32_t(rng() % config.vocab_size);
  std::vector<double> sw, sc, pw, pc;
  for (int r = 0; r < reps + 1; ++r) {
    double w0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
    model.forward(x, y);
    model.backward();
    double w1 = now(CLOCK_MONOTONIC), c1 = now(CLOCK_PROCESS_CPUTIME_ID);
    model.forward(x);
    double w2 = now(CLOCK_MONOTONIC), c2 = now(CLOCK_PROCESS_CPUTIME_ID);
    if (r == 0) continue;
    sw.push_back((w1 - w0) * 1e3);
    sc.push_back((c1 - c0) * 1e3);
    pw.push_back((w2 - w1) * 1e3);
    pc.push_back((c2 - c1) * 1e3);
  }
  printf(
      "%-10s %s T=%lld train %.1f ms wall %.1f CPU (best %.1f wall); prefill %.1f wall %.1f CPU "
      "(best %.1f wall) (medians of %d)\n",
      argc > 4 ? argv[4] : "", preset.c_str(), (long long)T, median(sw), median(sc),
      *std::min_element(sw.begin(), sw.end()), median(pw), median(pc),
      *std::min_element(pw.begin(), pw.end()), reps);
}
