// Probe (not part of the build): prefill (Model::forward without targets, the logits of every
// position, as `bench scaling` times it) and training step (forward with targets + backward, no
// optimizer) of each preset and T, 4096 tokens per batch, 2 threads: the median wall and process
// CPU time of `reps` runs of each, then the CPU time of one profiled prefill spent outside every
// op (OpProfile), where the Mamba-2 mixer's layout copies fall, and its ssd_fwd CPU time.
// (From bench/results/2026-12-05-cpu-mamba2-layout, plus the ssd_fwd column.) Links whichever
// liblongctx.so LD_LIBRARY_PATH names, so one binary measures two builds of the library alternately
// (run.sh).
//   g++ -O2 -std=c++17 -I include step_probe.cpp -L<lib dir> -l:liblongctx.so.0 -o step_probe
//   LD_LIBRARY_PATH=<lib dir> OMP_WAIT_POLICY=passive ./step_probe hybrid,mamba2 256,1024,4096 5
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

struct Times {
  double wall_ms, cpu_ms;
};

// Median wall and CPU time of `reps` calls of f.
template <class F>
static Times median(const Context& ctx, int reps, F&& f) {
  std::vector<double> wall, cpu;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::clock_t c0 = std::clock();
    f();
    ctx.synchronize();
    wall.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    cpu.push_back(double(std::clock() - c0) / CLOCKS_PER_SEC);
  }
  std::sort(wall.begin(), wall.end());
  std::sort(cpu.begin(), cpu.end());
  return {wall[size_t(reps / 2)] * 1e3, cpu[size_t(reps / 2)] * 1e3};
}

int main(int argc, char** argv) {
  const auto presets = split(argc > 1 ? argv[1] : "hybrid,mamba2");
  const auto lengths = split(argc > 2 ? argv[2] : "256,1024,4096");
  const int reps = argc > 3 ? std::atoi(argv[3]) : 5;
  const std::string label = argc > 4 ? argv[4] : "";
  Context ctx(Device::cpu(), 2);
  for (const auto& preset : presets) {
    ModelConfig config = ModelConfig::load("models/presets/" + preset + ".json");
    Model model(config, ctx, DType::f32, 1);
    for (const auto& Ts : lengths) {
      const int64_t T = std::stoll(Ts), B = std::max<int64_t>(1, 4096 / T);
      std::mt19937_64 rng{uint64_t(T)};
      Tensor x = Tensor::empty({B, T}, DType::i32), y = Tensor::empty({B, T}, DType::i32);
      int32_t* xp = static_cast<int32_t*>(x.data());
      int32_t* yp = static_cast<int32_t*>(y.data());
      for (int64_t i = 0; i < B * T; ++i) {
        xp[i] = int32_t(rng() % uint64_t(config.vocab_size));
        yp[i] = int32_t(rng() % uint64_t(config.vocab_size));
      }
      model.forward(x);  // warm-up (arenas)
      const Times prefill = median(ctx, reps, [&] { model.forward(x); });
      model.forward(x, y);
      model.backward();
      const Times train = median(ctx, reps, [&] {
        model.forward(x, y);
        model.backward();
      });
      OpProfile profile;
      ctx.set_profile(&profile);
      const std::clock_t c0 = std::clock();
      model.forward(x);
      ctx.synchronize();
      const double pcpu = double(std::clock() - c0) / CLOCKS_PER_SEC;
      ctx.set_profile(nullptr);
      double in_ops = 0;
      double ssd = 0;
      for (const auto& [name, e] : profile.ops) {
        in_ops += e.cpu_seconds;
        if (name == "ssd_fwd") ssd = e.cpu_seconds;
      }
      std::printf(
          "%s %s T=%lld B=%lld prefill %.2f ms wall %.2f ms CPU (%.0f tok/s) | train %.2f ms "
          "wall %.2f ms CPU (%.0f tok/s) | profiled prefill outside ops %.2f, ssd_fwd %.2f of "
          "%.2f ms CPU\n",
          label.c_str(), preset.c_str(), (long long)T, (long long)B, prefill.wall_ms,
          prefill.cpu_ms, double(B * T) / prefill.wall_ms * 1e3, train.wall_ms, train.cpu_ms,
          double(B * T) / train.wall_ms * 1e3, (pcpu - in_ops) * 1e3, ssd * 1e3, pcpu * 1e3);
      std::fflush(stdout);
    }
  }
}
