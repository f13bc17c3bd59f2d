// One decode step's attention of the d_model 128 llama preset, alone: attention_decode at B = 1,
// Tq = 1, H = 4, Hkv = 2, D = 32, causal, appending the new key and value to a cache of
// --keys rows (the model's call, src/model/attention_mixer.cpp), timed per call. The cache
// length is reset every call, so every call sees the same number of keys.
//
// With --evict MB, each call is preceded by a read of an MB buffer (as the model's other ops
// stream their weights between two attention calls), and only the op's backend time is counted
// (Context::set_profile: after the op's argument checks).
//
//   decode_attention [--keys 300] [--calls 20000] [--reps 5] [--evict 0]
// built: g++ -O2 -std=c++17 -fopenmp -I include decode_attention.cpp -Lbuild-cpu -llongctx
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <vector>

#include "longctx/longctx.h"

using namespace longctx;

int main(int argc, char** argv) {
  int64_t keys = 300, calls = 20000, reps = 5, evict_mb = 0, H = 4, Hkv = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--keys")) keys = std::atoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--calls")) calls = std::atoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--reps")) reps = std::atoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--evict")) evict_mb = std::atoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--heads")) H = std::atoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--kv-heads")) Hkv = std::atoll(argv[i + 1]);
  }
  const int64_t B = 1, Tq = 1, D = 32, Tmax = keys + 1;
  Context ctx(Device::cpu(), 1);
  Tensor q = Tensor::empty({B, Tq, H, D}, DType::f32);
  Tensor k_new = Tensor::empty({B, Tq, Hkv, D}, DType::f32);
  Tensor v_new = Tensor::empty({B, Tq, Hkv, D}, DType::f32);
  Tensor k_cache = Tensor::empty({B, Tmax, Hkv, D}, DType::f32);
  Tensor v_cache = Tensor::empty({B, Tmax, Hkv, D}, DType::f32);
  Tensor out = Tensor::empty({B, Tq, H, D}, DType::f32);
  Tensor lse = Tensor::empty({B, H, Tq}, DType::f32);
  Tensor lens = Tensor::empty({B}, DType::i32);
  lens.data_as<int32_t>()[0] = int32_t(keys);
  uint32_t seed = 1;
  for (const Tensor* t : {&q, &k_new, &v_new, &k_cache, &v_cache}) {
    float* p = t->data_as<float>();
    for (int64_t i = 0; i < t->numel(); ++i) {
      seed = seed * 1664525u + 1013904223u;
      p[i] = float(seed >> 8) / float(1 << 24) - 0.5f;
    }
  }
  AttentionParams params;
  params.causal = true;
  std::vector<float> evict(size_t(evict_mb << 18), 1.f);
  float sink = 0;
  if (evict_mb > 0) {
    std::vector<double> us;
    for (int64_t r = 0; r < reps; ++r) {
      OpProfile profile;
      ctx.set_profile(&profile);
      for (int64_t c = 0; c < calls; ++c) {
        for (size_t i = 0; i < evict.size(); i += 16) sink += evict[i];
        attention_decode(ctx, out, lse, q, k_cache, v_cache, lens, k_new, v_new, params);
      }
      ctx.set_profile(nullptr);
      us.push_back(1e6 * profile.ops["attention_decode"].cpu_seconds / double(calls));
    }
    std::sort(us.begin(), us.end());
    std::printf(
        "attention_decode backend, %lld keys, %lld MB read between calls: %.3f us/call "
        "CPU median of %lld reps (min %.3f, max %.3f) (%g)\n",
        (long long)(keys + 1), (long long)evict_mb, us[size_t(reps / 2)], (long long)reps,
        us.front(), us.back(), double(sink > 0));
    return 0;
  }
  std::vector<double> wall, cpu;
  for (int64_t r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::clock_t c0 = std::clock();
    for (int64_t c = 0; c < calls; ++c)
      attention_decode(ctx, out, lse, q, k_cache, v_cache, lens, k_new, v_new, params);
    cpu.push_back(1e6 * double(std::clock() - c0) / CLOCKS_PER_SEC / double(calls));
    wall.push_back(1e6 *
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() /
                   double(calls));
  }
  std::sort(wall.begin(), wall.end());
  std::sort(cpu.begin(), cpu.end());
  std::printf(
      "attention_decode, %lld keys: %.3f us/call CPU median of %lld reps (min %.3f, max %.3f), "
      "wall %.3f; out[0] = %.6f\n",
      (long long)(keys + 1), cpu[size_t(reps / 2)], (long long)reps, cpu.front(), cpu.back(),
      wall[size_t(reps / 2)], double(out.data_as<float>()[0]));
  return 0;
}
