// The small preset's decode step at T = 256 .. 256 + steps, repeated: a prefill of 256 tokens,
// then `rounds` rounds of `steps` greedy decode steps, the cache's lengths set back to 256 after
// each round (a probe's access to ModelCache's private lengths_), so that a profiler (perf) or
// the median sees only steps at the target's T. Prints the median and 10th percentile of the
// steps' wall time.
//
//   decode_loop PRESET f32|bf16 [rounds 200] [steps 40] [threads 1]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#define private public  // ModelCache::lengths_, to rewind the cache (a probe only)
#include "longctx/longctx.h"
#undef private

using namespace longctx;

int main(int argc, char** argv) {
  if (argc < 3)
    return std::fprintf(stderr, "usage: decode_loop PRESET f32|bf16 [rounds] [steps] [threads]\n"),
           2;
  const int64_t rounds = argc > 3 ? std::atoll(argv[3]) : 200,
                steps = argc > 4 ? std::atoll(argv[4]) : 40;
  const int threads = argc > 5 ? std::atoi(argv[5]) : 1;
  std::ifstream in(argv[1]);
  std::stringstream json;
  json << in.rdbuf();
  Context ctx(Device::cpu(), threads);
  Model model(ModelConfig::from_json(json.str()), ctx);
  model.set_inference_weights(std::strcmp(argv[2], "bf16") ? DType::f32 : DType::bf16);
  const int64_t V = model.config().vocab_size, context = 256;
  ModelCache cache = model.make_cache(1, context + steps + 1);
  Tensor prompt = Tensor::empty({1, context}, DType::i32);
  for (int64_t t = 0; t < context; ++t) prompt.data_as<int32_t>()[t] = int32_t((7 * t + 3) % V);
  Tensor next = Tensor::empty({1, 1}, DType::i32);
  Tensor logits = model.decode(cache, prompt);
  const float* row = logits.data_as<float>() + (context - 1) * V;
  const int32_t first = int32_t(std::max_element(row, row + V) - row);
  std::vector<double> us;
  for (int64_t r = 0; r < rounds; ++r) {
    cache.lengths_[0] = context;
    next.data_as<int32_t>()[0] = first;
    for (int64_t s = 0; s < steps; ++s) {
      const auto t0 = std::chrono::steady_clock::now();
      logits = model.decode(cache, next);
      const float* l = logits.data_as<float>();
      next.data_as<int32_t>()[0] = int32_t(std::max_element(l, l + V) - l);
      us.push_back(
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    }
  }
  std::sort(us.begin(), us.end());
  std::printf(
      "%s weights, T = %lld..%lld, %lld steps: median %.1f us (%.0f tokens/s), p10 %.1f, p90 "
      "%.1f\n",
      argv[2], (long long)context, (long long)(context + steps), (long long)us.size(),
      us[us.size() / 2], 1e6 / us[us.size() / 2], us[us.size() / 10], us[us.size() * 9 / 10]);
  return 0;
}
