// (A copy of bench/results/2026-12-05-cpu-prefill-profile/prefill_profile.cpp.)
// Probe (not part of the build): longctx's prefill (Model::forward without targets, the logits of
// every position, as `bench scaling` times it) with every op timed by OpProfile. For each preset
// and T (4096 tokens per batch): the median wall/CPU time of unprofiled prefills, then the ops of
// `reps` profiled prefills, CPU ms per prefill, largest first.
//   g++ -O2 -std=c++17 -fopenmp -I include prefill_profile.cpp -Lbuild-cpu -llongctx
//   -Wl,-rpath,$PWD/build-cpu -o probe OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive ./probe
//   llama,hybrid,mamba2 256,1024,4096 5
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
  const auto presets = split(argc > 1 ? argv[1] : "llama,hybrid,mamba2");
  const auto lengths = split(argc > 2 ? argv[2] : "256,1024,4096");
  const int reps = argc > 3 ? std::atoi(argv[3]) : 5;
  Context ctx(Device::cpu(), 2);
  for (const auto& preset : presets) {
    ModelConfig config = ModelConfig::load("models/presets/" + preset + ".json");
    Model model(config, ctx, DType::f32, 1);
    for (const auto& Ts : lengths) {
      const int64_t T = std::stoll(Ts), B = std::max<int64_t>(1, 4096 / T);
      std::mt19937_64 rng(T);
      Tensor x = Tensor::empty({B, T}, DType::i32);
      int32_t* p = static_cast<int32_t*>(x.data());
      for (int64_t i = 0; i < B * T; ++i) p[i] = int32_t(rng() % config.vocab_size);
      model.forward(x);  // warm-up (arenas)
      std::vector<double> wall, cpu;
      for (int r = 0; r < reps; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        const std::clock_t c0 = std::clock();
        model.forward(x);
        ctx.synchronize();
        wall.push_back(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        cpu.push_back(double(std::clock() - c0) / CLOCKS_PER_SEC);
      }
      std::sort(wall.begin(), wall.end());
      std::sort(cpu.begin(), cpu.end());
      OpProfile profile;
      ctx.set_profile(&profile);
      const std::clock_t c0 = std::clock();
      const auto t0 = std::chrono::steady_clock::now();
      for (int r = 0; r < reps; ++r) model.forward(x);
      ctx.synchronize();
      const double pcpu = double(std::clock() - c0) / CLOCKS_PER_SEC / reps;
      const double pwall =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
      ctx.set_profile(nullptr);
      std::printf(
          "## %s T=%lld B=%lld: prefill median %.2f ms wall, %.2f ms CPU (%.0f tok/s); "
          "profiled %.2f ms wall, %.2f ms CPU\n",
          preset.c_str(), (long long)T, (long long)B, wall[reps / 2] * 1e3, cpu[reps / 2] * 1e3,
          double(B * T) / wall[reps / 2], pwall * 1e3, pcpu * 1e3);
      std::vector<std::pair<std::string, OpProfile::Entry>> ops(profile.ops.begin(),
                                                                profile.ops.end());
      std::sort(ops.begin(), ops.end(), [](const auto& a, const auto& b) {
        return a.second.cpu_seconds > b.second.cpu_seconds;
      });
      double in_cpu = 0, in_wall = 0;
      for (const auto& [name, e] : ops) {
        in_cpu += e.cpu_seconds / reps, in_wall += e.seconds / reps;
        std::printf("op %-24s %4lld calls %8.3f ms CPU %5.1f%% %8.3f ms wall\n", name.c_str(),
                    (long long)(e.calls / reps), e.cpu_seconds / reps * 1e3,
                    100 * e.cpu_seconds / reps / pcpu, e.seconds / reps * 1e3);
      }
      std::printf("op %-24s %10s %8.3f ms CPU %5.1f%% %8.3f ms wall\n", "(outside ops)", "",
                  (pcpu - in_cpu) * 1e3, 100 * (pcpu - in_cpu) / pcpu, (pwall - in_wall) * 1e3);
      std::fflush(stdout);
    }
  }
}
