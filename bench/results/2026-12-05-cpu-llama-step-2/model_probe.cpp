// Probe (not part of the build): the llama preset's prefill (Model::forward without targets, as
// `bench scaling` times it) and training step (forward with targets, backward), 4096 tokens a
// batch, 2 threads: the median of REPS CPU times (process, all threads) and wall times in ms, and
// the minimum wall time (the closest to an idle machine's under other engineers' load).
// Built once (against the newer headers: Model is larger there, and the probe calls only its
// out-of-line members); run against two builds of liblongctx by LD_LIBRARY_PATH (ab.sh
// alternates them), so the same probe binary times main's library and the branch's.
// (A copy of bench/results/2026-12-05-cpu-llama-step/model_probe.cpp.)
//   g++ -O2 -std=c++17 -fopenmp -I include model_probe.cpp -Lbuild-cpu -llongctx -o model_probe
//   LD_LIBRARY_PATH=build-cpu OMP_WAIT_POLICY=passive ./model_probe llama 256,1024,4096 7
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "longctx/longctx.h"
#include "longctx/model/model.h"

using namespace longctx;

static std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(item);
  return out;
}

int main(int argc, char** argv) {
  const std::string preset = argc > 1 ? argv[1] : "llama";
  const auto lengths = split(argc > 2 ? argv[2] : "256,1024,4096");
  const int reps = argc > 3 ? std::atoi(argv[3]) : 7;
  const char* label = argc > 4 ? argv[4] : "";
  Context ctx(Device::cpu(), 2);
  ModelConfig config = ModelConfig::load("models/presets/" + preset + ".json");
  Model model(config, ctx, DType::f32, 1);
  for (const auto& Ts : lengths) {
    const int64_t T = std::stoll(Ts), B = std::max<int64_t>(1, 4096 / T);
    std::mt19937_64 rng(T);
    Tensor x = Tensor::empty({B, T}, DType::i32), y = Tensor::empty({B, T}, DType::i32);
    int32_t* px = static_cast<int32_t*>(x.data());
    int32_t* py = static_cast<int32_t*>(y.data());
    for (int64_t i = 0; i < B * T; ++i) px[i] = int32_t(rng() % config.vocab_size);
    for (int64_t i = 0; i < B * T; ++i) py[i] = int32_t(rng() % config.vocab_size);
    for (const bool train : {false, true}) {
      auto step = [&] {
        if (train) {
          model.forward(x, y);
          model.backward();
        } else {
          model.forward(x);
        }
        ctx.synchronize();
      };
      step();  // warm-up (arenas)
      std::vector<double> wall, cpu;
      for (int r = 0; r < reps; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        const std::clock_t c0 = std::clock();
        step();
        wall.push_back(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        cpu.push_back(double(std::clock() - c0) / CLOCKS_PER_SEC);
      }
      std::sort(wall.begin(), wall.end());
      std::sort(cpu.begin(), cpu.end());
      std::printf(
          "%s %s T=%lld B=%lld %s: %8.2f ms CPU %8.2f ms wall (medians of %d), min %8.2f ms wall\n",
          label, preset.c_str(), (long long)T, (long long)B, train ? "train  " : "prefill",
          cpu[reps / 2] * 1e3, wall[reps / 2] * 1e3, reps, wall[0] * 1e3);
      std::fflush(stdout);
    }
  }
}
