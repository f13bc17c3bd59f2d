// libFuzzer target for checkpoints, what `longctx generate`, `train --init` and `train --resume`
// read: any bytes as a checkpoint file either load or throw longctx::Error — never a crash or an
// allocation the file does not justify. The path is generate's (checkpoint_config, a model built
// from it when small, load_checkpoint into it) plus the trainer's metadata (train.options).
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "longctx/longctx.h"
#include "models/train.h"
#include "small_model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace longctx;
  // The loaders read files: one per process, rewritten for each input (tmpfs when there is one).
  static const std::string path = [] {
    const char* dir = ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    return std::string(dir) + "/fuzz_checkpoint." + std::to_string(::getpid()) + ".safetensors";
  }();
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);

  try {
    const SafetensorsFile file = load_safetensors(path);
    const auto options = file.metadata.find("train.options");
    if (options != file.metadata.end()) train::TrainOptions::from_json(options->second);
  } catch (const Error&) {
  }
  try {
    const ModelConfig config = checkpoint_config(path);
    if (!fuzz::small_enough(config)) return 0;
    static const Context ctx(Device::cpu(), 1);
    Model model(config, ctx);
    load_checkpoint(path, model);
  } catch (const Error&) {
  }
  return 0;
}
