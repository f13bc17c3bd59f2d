// Where a decode step of a preset goes: the kernels' time by op (Context::set_profile, which
// times each op's backend call, after its argument checks) against the whole step's time, so
// that the rest (the ops' checks, the model's views and arena, the profile's own clocks) is the
// difference. Batch 1, greedy, after a prefill of --context tokens; f32 then bf16 weights.
//
//   decode_breakdown PRESET [--context 256] [--tokens 200] [--threads 1]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "longctx/longctx.h"

using namespace longctx;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int32_t argmax_last(const Tensor& logits, int64_t V) {
  const float* row = logits.data_as<float>() + (logits.size(1) - 1) * V;
  return int32_t(std::max_element(row, row + V) - row);
}

// Median us of `steps` decode steps, each timed alone (profiled or not by ctx's profile).
double median_step_us(Model& model, ModelCache& cache, Tensor& next, int64_t steps) {
  const int64_t V = model.config().vocab_size;
  std::vector<double> us;
  for (int64_t s = 0; s < steps; ++s) {
    const double t0 = now_s();
    next.data_as<int32_t>()[0] = argmax_last(model.decode(cache, next), V);
    us.push_back(1e6 * (now_s() - t0));
  }
  std::sort(us.begin(), us.end());
  return us[us.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: decode_breakdown PRESET [--context N] [--tokens N] [--threads N]\n");
    return 2;
  }
  int64_t context = 256, steps = 200;
  int threads = 1;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--context")) context = std::atoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--tokens")) steps = std::atoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
  }
  std::ifstream in(argv[1]);
  std::stringstream json;
  json << in.rdbuf();
  Context ctx(Device::cpu(), threads);
  Model model(ModelConfig::from_json(json.str()), ctx);
  const int64_t V = model.config().vocab_size;
  for (DType weights : {DType::f32, DType::bf16}) {
    model.set_inference_weights(weights);
    // Three passes of `steps` at T = context .. context + 3 steps: plain, profiled, plain.
    ModelCache cache = model.make_cache(1, context + 3 * steps + 2);
    Tensor prompt = Tensor::empty({1, context}, DType::i32);
    for (int64_t t = 0; t < context; ++t) prompt.data_as<int32_t>()[t] = int32_t((7 * t + 3) % V);
    Tensor next = Tensor::empty({1, 1}, DType::i32);
    next.data_as<int32_t>()[0] = argmax_last(model.decode(cache, prompt), V);
    const double plain1 = median_step_us(model, cache, next, steps);
    OpProfile profile;
    ctx.set_profile(&profile);
    const std::clock_t c0 = std::clock();
    const double profiled = median_step_us(model, cache, next, steps);
    const double profiled_cpu = 1e6 * double(std::clock() - c0) / CLOCKS_PER_SEC / double(steps);
    ctx.set_profile(nullptr);
    const double plain2 = median_step_us(model, cache, next, steps);
    std::printf(
        "%s weights, T = %lld..%lld, %d thread(s): step %.1f us median (%.1f, %.1f "
        "unprofiled before and after), profiled %.1f us; the process's CPU time over the profiled "
        "pass: %.1f us/step\n",
        dtype_name(weights), (long long)context, (long long)(context + 3 * steps), threads,
        0.5 * (plain1 + plain2), plain1, plain2, profiled);
    // Means over the steps: wall (which counts the steps that lost the core) and CPU.
    double total = 0, total_cpu = 0;
    for (const auto& [name, e] : profile.ops) {
      const double us = 1e6 * e.seconds / double(steps),
                   cpu_us = 1e6 * e.cpu_seconds / double(steps);
      total += us, total_cpu += cpu_us;
      std::printf("  %-18s %5.1f calls/step %7.2f us/step wall %7.2f cpu\n", name.c_str(),
                  double(e.calls) / double(steps), us, cpu_us);
    }
    std::printf("  %-18s %16s %7.2f us/step wall %7.2f cpu\n", "sum of ops", "", total, total_cpu);
  }
  return 0;
}
