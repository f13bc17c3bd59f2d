// Probe (not part of the build): the CPU time of a prefill (Model::forward without targets, as
// `bench scaling` times it) and of a training step's forward + backward (no optimizer step) per
// preset and T, 4096 tokens per batch, 2 threads; then one profiled prefill and training step,
// the CPU ms of the ops this change touches. Linked against liblongctx.so, so the same binary
// runs before/after by LD_LIBRARY_PATH (run.sh alternates them).
//   g++ -O2 -std=c++17 -fopenmp -I include model_probe.cpp -Lbuild-cpu -llongctx
//   -Wl,-rpath,$PWD/build-cpu -o probe
//   OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive ./probe llama,hybrid 256,1024,4096 5
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

static std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(item);
  return out;
}

static double cpu_ms() {
  return double(std::clock()) * 1e3 / CLOCKS_PER_SEC;
}

int main(int argc, char** argv) {
  const auto presets = split(argc > 1 ? argv[1] : "llama,hybrid");
  const auto lengths = split(argc > 2 ? argv[2] : "256,1024,4096");
  const int reps = argc > 3 ? std::atoi(argv[3]) : 5;
  const std::vector<std::string> watched = {
      "swiglu_fwd",       "swiglu_bwd",        "rope_fwd",         "rope_bwd",
      "sigmoid_gate_fwd", "sigmoid_gate_bwd",  "sigmoid_fwd",      "rmsnorm_fwd",
      "add_fwd",          "causal_conv1d_fwd", "causal_conv1d_bwd"};
  Context ctx(Device::cpu(), 2);
  for (const auto& preset : presets) {
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
      model.forward(x);  // warm-up (arenas)
      model.forward(x, y);
      model.backward();
      std::vector<double> prefill, train;
      for (int r = 0; r < reps; ++r) {
        double c0 = cpu_ms();
        model.forward(x);
        ctx.synchronize();
        prefill.push_back(cpu_ms() - c0);
        c0 = cpu_ms();
        model.forward(x, y);
        model.backward();
        ctx.synchronize();
        train.push_back(cpu_ms() - c0);
      }
      std::sort(prefill.begin(), prefill.end());
      std::sort(train.begin(), train.end());
      std::printf(
          "## %s T=%lld B=%lld: prefill %.2f ms CPU (min %.2f), train fwd+bwd %.2f ms CPU "
          "(min %.2f)\n",
          preset.c_str(), (long long)T, (long long)B, prefill[reps / 2], prefill[0],
          train[reps / 2], train[0]);
      OpProfile profile;
      ctx.set_profile(&profile);
      model.forward(x);
      model.forward(x, y);
      model.backward();
      ctx.synchronize();
      ctx.set_profile(nullptr);
      for (const auto& name : watched) {
        const auto it = profile.ops.find(name);
        if (it == profile.ops.end()) continue;
        std::printf("op %-18s %4lld calls %8.3f ms CPU (one prefill + one training step)\n",
                    name.c_str(), (long long)it->second.calls, it->second.cpu_seconds * 1e3);
      }
      std::fflush(stdout);
    }
  }
}
