// libFuzzer target for model configs (ModelConfig::from_json: a --model file, or the config in a
// checkpoint's metadata): any bytes either parse to a valid config or throw longctx::Error —
// never a crash, an overflow (UBSan) or an unbounded allocation. A config that parses survives
// to_json and from_json unchanged, and a small one builds a model that runs a forward pass.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "longctx/longctx.h"
#include "small_model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace longctx;
  ModelConfig config;
  try {
    config = ModelConfig::from_json(std::string(reinterpret_cast<const char*>(data), size));
  } catch (const Error&) {
    return 0;  // rejected with a message
  }
  const std::string text = config.to_json();
  if (ModelConfig::from_json(text).to_json() != text) std::abort();
  if (!fuzz::small_enough(config)) return 0;
  static const Context ctx(Device::cpu(), 1);
  Model model(config, ctx);
  Tensor tokens = Tensor::empty({1, 5}, DType::i32);
  for (int i = 0; i < 5; ++i) tokens.data_as<int32_t>()[i] = int32_t(i % config.vocab_size);
  model.forward(tokens);
  return 0;
}
