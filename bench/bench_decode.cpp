// bench_decode: batch-1 greedy decoding on the CPU against its memory floor.
//
// A decode step reads every weight matrix once, so its floor is the weight bytes over the
// machine's memory bandwidth, both measured here in the same run, just before each decode:
//   copy  GB/s of a memcpy by every thread over buffers larger than the caches, counting bytes
//         read plus bytes written (bench/common.h's convention); floor = weight bytes / copy GB/s
//         (the floor the issue sets);
//   read  GB/s of a streaming sum by every thread over one such buffer; floor_read = weight bytes
//         / read GB/s, the floor of a pass that only reads (as a decode step's weights are).
// A model whose weights fit in the last-level cache can beat both (a ratio below 1).
// Two models, both from a preset's config (default models/presets/llama.json):
//   big    the preset with d_model and the layer count overridden (default 1024 and 16 layers:
//          93M parameters), ms/token after a `--prompt`-token prefill, with f32 and with bf16
//          inference weights (Model::set_inference_weights); skipped with --layers 0;
//   small  the preset as it is, decoding at T = `--context` (a prefill of that many tokens, then
//          `--tokens` steps), f32 and bf16 weights: tokens/s.
// Each step is timed alone: the median and the fastest are printed, with the mean and the median
// CPU time of a step (on a shared machine some steps lose the core to other jobs; the CPU time is
// the work done, and its median the least disturbed measure). --weights picks one of the two
// weight types (default both).
//
//   bench_decode [--preset FILE] [--d-model 1024] [--layers 16] [--prompt 16] [--tokens 32]
//                [--context 256] [--threads 0 (all)] [--weights f32|bf16] [--json FILE]
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common.h"
#include "longctx/longctx.h"

using namespace longctx;
using bench::cpu_s;
using bench::now_s;

namespace {

// The bytes the bandwidths stream: a copy's source and destination together, and the read's
// buffer. The 2-core dev VM reports a 480 MiB L3 (`lscpu`, shared with the host's other
// tenants), so 1 GiB, twice that: a smaller buffer would measure the cache, not the memory.
constexpr int64_t kBandwidthBytes = int64_t(1) << 30;

// memcpy by `threads` threads, each its slice; GB/s counting read + written bytes, best of reps.
double copy_gb_per_s(int threads, int reps) {
  const int64_t bytes = kBandwidthBytes / 2;  // each of source and destination
  std::vector<char> src(size_t(bytes), 1), dst(size_t(bytes), 0);
  double best = 1e30;
  for (int r = 0; r <= reps; ++r) {
    const double t0 = now_s();
#pragma omp parallel num_threads(threads)
    {
      const int64_t n = omp_get_num_threads(), i = omp_get_thread_num();
      const int64_t lo = bytes * i / n, hi = bytes * (i + 1) / n;
      std::memcpy(dst.data() + lo, src.data() + lo, size_t(hi - lo));
    }
    if (r > 0) best = std::min(best, now_s() - t0);  // run 0 is the warm-up (page faults)
  }
  return 2.0 * double(bytes) / best * 1e-9;
}

// A streaming sum by `threads` threads, each over its slice read as four interleaved parts (four
// streams summed apart), with the widest vectors the CPU has (by function attribute). Of the read
// loops tried on the 2-core Emerald Rapids VM (bench/results/2026-12-06-cpu-decode-emr/
// read_bandwidth.cpp, 2 threads), AVX-512 with 1, 2, 4 or 8 streams, with or without software
// prefetch, read 22.6-25.2 GB/s; the AVX2 single-stream loop this replaced read 18.2-20.0, slower
// than the decode step's own GEMVs (which then ran at 0.87-0.97 of that "floor"). Each function
// sums its n floats (a multiple of 4 steps) as four parts [j n/4, (j+1) n/4).
__attribute__((target("avx512f"))) double sum_avx512(const float* p, int64_t n) {
  const int64_t part = n / 4;
  __m512 s[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                 _mm512_setzero_ps()};
  for (int64_t i = 0; i < part; i += 64)
    for (int j = 0; j < 4; ++j) {
      const float* q = p + j * part + i;
      s[j] = _mm512_add_ps(
          s[j], _mm512_add_ps(_mm512_add_ps(_mm512_loadu_ps(q), _mm512_loadu_ps(q + 16)),
                              _mm512_add_ps(_mm512_loadu_ps(q + 32), _mm512_loadu_ps(q + 48))));
    }
  alignas(64) float lane[16];
  _mm512_store_ps(lane, _mm512_add_ps(_mm512_add_ps(s[0], s[1]), _mm512_add_ps(s[2], s[3])));
  double total = 0;
  for (float x : lane) total += x;
  return total;
}
__attribute__((target("avx2"))) double sum_avx2(const float* p, int64_t n) {
  const int64_t part = n / 4;
  __m256 s[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                 _mm256_setzero_ps()};
  for (int64_t i = 0; i < part; i += 32)
    for (int j = 0; j < 4; ++j) {
      const float* q = p + j * part + i;
      s[j] = _mm256_add_ps(
          s[j], _mm256_add_ps(_mm256_add_ps(_mm256_loadu_ps(q), _mm256_loadu_ps(q + 8)),
                              _mm256_add_ps(_mm256_loadu_ps(q + 16), _mm256_loadu_ps(q + 24))));
    }
  alignas(32) float lane[8];
  _mm256_store_ps(lane, _mm256_add_ps(_mm256_add_ps(s[0], s[1]), _mm256_add_ps(s[2], s[3])));
  double total = 0;
  for (float x : lane) total += x;
  return total;
}

double read_gb_per_s(int threads, int reps) {
  const int64_t n = kBandwidthBytes / 4;
  std::vector<float> buf(size_t(n), 1.0f);
  const bool avx512 = __builtin_cpu_supports("avx512f");
  double best = 1e30, sink = 0;
  for (int r = 0; r <= reps; ++r) {
    const double t0 = now_s();
    double total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
      const int64_t parts = omp_get_num_threads(), i = omp_get_thread_num();
      const int64_t lo = n / 256 * i / parts * 256, hi = n / 256 * (i + 1) / parts * 256;
      total += avx512 ? sum_avx512(buf.data() + lo, hi - lo) : sum_avx2(buf.data() + lo, hi - lo);
    }
    sink += total;
    if (r > 0) best = std::min(best, now_s() - t0);
  }
  if (sink < 0) std::printf("%g\n", sink);  // keeps the sums
  return double(kBandwidthBytes) / best * 1e-9;
}

// Per-token times: on a shared machine some steps lose the core to other jobs, so the median and
// the fastest step are both given (with the mean CPU time: the work done).
struct DecodeTiming {
  double median_ms, best_ms, cpu_ms, cpu_median_ms;
};

// Prefill `prompt` tokens, then `steps` greedy decode steps of batch 1, timed.
DecodeTiming time_decode(Model& model, int64_t prompt, int64_t steps) {
  const int64_t V = model.config().vocab_size;
  ModelCache cache = model.make_cache(1, prompt + steps + 1);
  Tensor tokens = Tensor::empty({1, prompt}, DType::i32);
  for (int64_t t = 0; t < prompt; ++t) tokens.data_as<int32_t>()[t] = int32_t((7 * t + 3) % V);
  auto argmax_last = [&](const Tensor& logits) {
    const int64_t T = logits.size(1);
    const float* row = logits.data_as<float>() + (T - 1) * V;
    return int32_t(std::max_element(row, row + V) - row);
  };
  Tensor next = Tensor::empty({1, 1}, DType::i32);
  next.data_as<int32_t>()[0] = argmax_last(model.decode(cache, tokens));
  next.data_as<int32_t>()[0] = argmax_last(model.decode(cache, next));  // warm-up step
  std::vector<double> ms, cpu;
  const double c0 = cpu_s();
  for (int64_t s = 1; s < steps; ++s) {
    const double t0 = now_s(), u0 = cpu_s();
    next.data_as<int32_t>()[0] = argmax_last(model.decode(cache, next));
    cpu.push_back(1e3 * (cpu_s() - u0));
    ms.push_back(1e3 * (now_s() - t0));
  }
  const double cpu_ms = 1e3 * (cpu_s() - c0) / double(ms.size());
  std::sort(ms.begin(), ms.end());
  std::sort(cpu.begin(), cpu.end());
  return {ms[ms.size() / 2], ms[0], cpu_ms, cpu[cpu.size() / 2]};
}

// Bytes a decode step reads from the weights: every parameter but the embedding table's rows
// (one row a token) and the norms' scales (a few KB), each once, in the given element size. The
// table is read whole when it is the tied LM head.
int64_t weight_bytes(const Model& model, int64_t esize) {
  int64_t n = 0;
  for (const auto& t : model.params().tensors())
    if (t.tensor.dim() == 2 && (t.name != "embed" || model.config().tie_embeddings))
      n += t.tensor.numel();
  return n * esize;
}

}  // namespace

int main(int argc, char** argv) {
  std::string preset = "models/presets/llama.json", json_path;
  int64_t d_model = 1024, layers = 16, prompt = 16, steps = 32, context = 256;
  int threads = 0;
  std::vector<DType> weight_types = {DType::f32, DType::bf16};
  for (int i = 1; i < argc; ++i) {
    auto next = [&](const char* flag) { return !std::strcmp(argv[i], flag) && i + 1 < argc; };
    if (next("--preset"))
      preset = argv[++i];
    else if (next("--d-model"))
      d_model = std::atoll(argv[++i]);
    else if (next("--layers"))
      layers = std::atoll(argv[++i]);
    else if (next("--prompt"))
      prompt = std::atoll(argv[++i]);
    else if (next("--tokens"))
      steps = std::atoll(argv[++i]);
    else if (next("--context"))
      context = std::atoll(argv[++i]);
    else if (next("--threads"))
      threads = std::atoi(argv[++i]);
    else if (next("--weights"))
      weight_types = {std::string(argv[++i]) == "bf16" ? DType::bf16 : DType::f32};
    else if (next("--json"))
      json_path = argv[++i];
    else {
      std::fprintf(stderr,
                   "usage: bench_decode [--preset FILE] [--d-model N] [--layers N] [--prompt N] "
                   "[--tokens N] [--context N] [--threads N] [--weights f32|bf16] [--json FILE]\n");
      return 2;
    }
  }
  try {
    const Context ctx(Device::cpu(), threads);
    const int nthreads = ctx.cpu_threads();
    std::ifstream in(preset);
    if (!in) throw Error("bench_decode: cannot read " + preset);
    nlohmann::json base = nlohmann::json::parse(in);
    // The big model: the preset's pattern repeated to `layers` layers, at d_model.
    nlohmann::json big = base;
    const std::string pattern = base.at("pattern").get<std::string>();
    std::string repeated;
    while (int64_t(repeated.size()) < layers) repeated += pattern;
    big["pattern"] = repeated.substr(0, size_t(layers));
    big["d_model"] = d_model;

    nlohmann::json out = {{"bench", "decode"},
                          {"commit", LONGCTX_GIT_COMMIT},
                          {"threads", nthreads},
                          {"avx512f", __builtin_cpu_supports("avx512f") != 0}};
    std::printf("threads %d, avx512f %d\n", nthreads, __builtin_cpu_supports("avx512f") != 0);
    if (layers > 0) {  // --layers 0: the small model only
      Model model(ModelConfig::from_json(big.dump()), ctx);
      std::printf("big: %s, d_model %lld, %lld layers, %lld parameters\n",
                  base.value("name", "model").c_str(), (long long)d_model, (long long)layers,
                  (long long)model.parameter_count());
      out["big"] = {{"d_model", d_model}, {"layers", layers}, {"params", model.parameter_count()}};
      for (DType weights : weight_types) {
        model.set_inference_weights(weights);
        const int64_t bytes = weight_bytes(model, int64_t(dtype_size(weights)));
        // The bandwidths just before the decode they are the floor of (the load changes).
        const double copy = copy_gb_per_s(nthreads, 5), read = read_gb_per_s(nthreads, 5);
        const DecodeTiming t = time_decode(model, prompt, steps);
        const double floor_ms = double(bytes) / (copy * 1e9) * 1e3;
        const double floor_read_ms = double(bytes) / (read * 1e9) * 1e3;
        std::printf(
            "  %-4s weights %6.1f MB: %7.2f ms/token median, %7.2f best (cpu %7.2f); copy %.1f "
            "GB/s "
            "(read + written), read %.1f GB/s; floor %.2f ms (copy), %.2f ms (read); ratio of the "
            "median %.2f (copy), %.2f (read), of the best %.2f (copy)\n",
            dtype_name(weights), double(bytes) * 1e-6, t.median_ms, t.best_ms, t.cpu_ms, copy, read,
            floor_ms, floor_read_ms, t.median_ms / floor_ms, t.median_ms / floor_read_ms,
            t.best_ms / floor_ms);
        out["big"][dtype_name(weights)] = {{"weight_bytes", bytes},
                                           {"copy_gb_per_s", copy},
                                           {"read_gb_per_s", read},
                                           {"ms_per_token_median", t.median_ms},
                                           {"ms_per_token_best", t.best_ms},
                                           {"cpu_ms_per_token", t.cpu_ms},
                                           {"floor_ms_copy", floor_ms},
                                           {"floor_ms_read", floor_read_ms},
                                           {"ratio_copy", t.median_ms / floor_ms},
                                           {"ratio_read", t.median_ms / floor_read_ms},
                                           {"ratio_copy_best", t.best_ms / floor_ms}};
      }
    }
    Model model(ModelConfig::from_json(base.dump()), ctx);
    out["small"] = {{"params", model.parameter_count()}, {"context", context}};
    for (DType weights : weight_types) {
      model.set_inference_weights(weights);
      const DecodeTiming small = time_decode(model, context, steps);
      std::printf(
          "small: %s as preset (%lld parameters), %s weights, at T = %lld: %.3f ms/token "
          "median, %.3f best (cpu %.3f mean, %.3f median): %.0f tokens/s (median), %.0f (best), "
          "%.0f (cpu median)\n",
          base.value("name", "model").c_str(), (long long)model.parameter_count(),
          dtype_name(weights), (long long)context, small.median_ms, small.best_ms, small.cpu_ms,
          small.cpu_median_ms, 1e3 / small.median_ms, 1e3 / small.best_ms,
          1e3 / small.cpu_median_ms);
      out["small"][dtype_name(weights)] = {{"ms_per_token_median", small.median_ms},
                                           {"ms_per_token_best", small.best_ms},
                                           {"cpu_ms_per_token", small.cpu_ms},
                                           {"cpu_ms_per_token_median", small.cpu_median_ms},
                                           {"tokens_per_s_median", 1e3 / small.median_ms},
                                           {"tokens_per_s_best", 1e3 / small.best_ms}};
    }
    if (!json_path.empty()) std::ofstream(json_path) << out.dump(2) << "\n";
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_decode: %s\n", e.what());
    return 1;
  }
  return 0;
}
