// The logits of a prefill of 256 tokens and 64 greedy decode steps of a preset, f32 then bf16
// weights, written raw to a file: run against two builds of the library (LD_LIBRARY_PATH) and
// `cmp` the files to check that a change keeps the decode's bits.
//
//   decode_bits PRESET OUT [--threads N]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "longctx/longctx.h"

using namespace longctx;

int main(int argc, char** argv) {
  if (argc < 3) return std::fprintf(stderr, "usage: decode_bits PRESET OUT [--threads N]\n"), 2;
  const int threads = argc > 4 && !std::strcmp(argv[3], "--threads") ? std::atoi(argv[4]) : 1;
  std::ifstream in(argv[1]);
  std::stringstream json;
  json << in.rdbuf();
  Context ctx(Device::cpu(), threads);
  Model model(ModelConfig::from_json(json.str()), ctx);
  const int64_t V = model.config().vocab_size, context = 256, steps = 64;
  std::FILE* out = std::fopen(argv[2], "wb");
  for (DType weights : {DType::f32, DType::bf16}) {
    model.set_inference_weights(weights);
    ModelCache cache = model.make_cache(1, context + steps + 1);
    Tensor prompt = Tensor::empty({1, context}, DType::i32);
    for (int64_t t = 0; t < context; ++t) prompt.data_as<int32_t>()[t] = int32_t((7 * t + 3) % V);
    Tensor next = Tensor::empty({1, 1}, DType::i32);
    Tensor logits = model.decode(cache, prompt);
    for (int64_t s = 0; s <= steps; ++s) {
      const float* row = logits.data_as<float>() + (logits.size(1) - 1) * V;
      std::fwrite(row, sizeof(float), size_t(V), out);
      next.data_as<int32_t>()[0] = int32_t(std::max_element(row, row + V) - row);
      if (s < steps) logits = model.decode(cache, next);
    }
  }
  std::fclose(out);
  return 0;
}
