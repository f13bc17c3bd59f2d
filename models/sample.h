// The sampling driver behind `longctx generate`: a checkpoint, a prompt, sampling with the cache.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "longctx/model/generate.h"

namespace longctx::train {

struct GenerateOptions {
  std::string checkpoint;       // a .safetensors checkpoint, or a run directory holding one
  std::vector<int32_t> prompt;  // token ids (a byte model's prompt is the text's bytes)
  bool text = false;  // the prompt is text's bytes and the tokens are printed as bytes: the model
                      // must be byte-level (vocab_size 256, as `train --task text` makes)
  int64_t max_new_tokens = 64;
  SamplingParams sampling;
  std::string device = "auto";  // auto | cpu | cuda[:N]
  int threads = 0;
  std::string weights = "f32";  // f32 | bf16: the inference weights (Model::set_inference_weights)
};

// The new tokens. Throws Error for a missing or foreign checkpoint, an empty prompt, a token
// outside the model's vocabulary, or a text prompt for a model that is not byte-level.
std::vector<int32_t> generate_from_checkpoint(const GenerateOptions& options);

}  // namespace longctx::train
