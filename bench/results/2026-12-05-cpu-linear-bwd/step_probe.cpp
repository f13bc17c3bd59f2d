// Probe (not part of the build): a preset's training step (forward with targets, backward), 4096
// tokens a batch, 2 threads, each step timed op by op (Context::set_profile, as `bench scaling
// --profile` does): the medians over REPS steps of the step's CPU time and of linear_bwd's and
// linear_fwd's CPU time in it (process, all threads), in ms. Run against two builds of liblongctx
// by LD_LIBRARY_PATH (run.sh alternates them).
//   g++ -O2 -std=c++17 -fopenmp -I include step_probe.cpp -Lbuild-cpu -llongctx -o step_probe
//   LD_LIBRARY_PATH=build-cpu OMP_WAIT_POLICY=passive ./step_probe llama 256,4096 7 LABEL
#include <algorithm>
#include <cstdio>
#include <ctime>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "longctx/longctx.h"
#include "longctx/model/model.h"

using namespace longctx;

static double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int main(int argc, char** argv) {
  const std::string preset = argc > 1 ? argv[1] : "llama";
  std::vector<int64_t> lengths;
  std::stringstream ss(argc > 2 ? argv[2] : "256,4096");
  for (std::string item; std::getline(ss, item, ',');) lengths.push_back(std::stoll(item));
  const int reps = argc > 3 ? std::atoi(argv[3]) : 7;
  const char* label = argc > 4 ? argv[4] : "";
  Context ctx(Device::cpu(), 2);
  ModelConfig config = ModelConfig::load("models/presets/" + preset + ".json");
  Model model(config, ctx, DType::f32, 1);
  for (const int64_t T : lengths) {
    const int64_t B = std::max<int64_t>(1, 4096 / T);
    std::mt19937_64 rng(T);
    Tensor x = Tensor::empty({B, T}, DType::i32), y = Tensor::empty({B, T}, DType::i32);
    int32_t* px = static_cast<int32_t*>(x.data());
    int32_t* py = static_cast<int32_t*>(y.data());
    for (int64_t i = 0; i < B * T; ++i) px[i] = int32_t(rng() % config.vocab_size);
    for (int64_t i = 0; i < B * T; ++i) py[i] = int32_t(rng() % config.vocab_size);
    std::vector<double> step, bwd, fwd;
    int64_t bwd_calls = 0;
    for (int r = 0; r < reps + 1; ++r) {  // the first: warm-up (arenas)
      OpProfile profile;
      ctx.set_profile(&profile);
      const std::clock_t c0 = std::clock();
      model.forward(x, y);
      model.backward();
      ctx.synchronize();
      const double cpu = double(std::clock() - c0) / CLOCKS_PER_SEC;
      ctx.set_profile(nullptr);
      if (r == 0) continue;
      step.push_back(cpu * 1e3);
      bwd.push_back(profile.ops["linear_bwd"].cpu_seconds * 1e3);
      fwd.push_back(profile.ops["linear_fwd"].cpu_seconds * 1e3);
      bwd_calls = profile.ops["linear_bwd"].calls;
    }
    std::printf(
        "%s %s T=%lld train step %7.1f ms CPU, linear_bwd %6.1f (%lld calls), linear_fwd %6.1f "
        "(medians of %d)\n",
        label, preset.c_str(), (long long)T, median(step), median(bwd), (long long)bwd_calls,
        median(fwd), reps);
    std::fflush(stdout);
  }
}
