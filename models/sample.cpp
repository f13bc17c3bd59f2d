#include "models/sample.h"

#include <filesystem>

#include "longctx/longctx.h"
#include "models/train.h"

namespace longctx::train {

std::vector<int32_t> generate_from_checkpoint(const GenerateOptions& options) {
  LONGCTX_CHECK(!options.prompt.empty(),
                "generate: the prompt is empty (give --prompt TEXT or "
                "--tokens 1,2,3)");
  LONGCTX_CHECK(options.max_new_tokens >= 1, "generate: max_new_tokens must be at least 1, got ",
                options.max_new_tokens);
  const std::string path = checkpoint_file(options.checkpoint, "generate");
  const ModelConfig config = checkpoint_config(path);
  // Tokens past 255 printed as bytes were cut to their low byte: text that was never generated.
  LONGCTX_CHECK(!options.text || config.vocab_size == 256,
                "generate: --prompt takes text for a byte-level model (vocabulary of 256, as "
                "`train --task text` makes); this checkpoint's vocabulary has ",
                config.vocab_size, " tokens: give its token ids with --tokens");
  for (int32_t t : options.prompt)
    LONGCTX_CHECK(t >= 0 && t < config.vocab_size, "generate: prompt token ", t,
                  " is outside the model's vocabulary [0, ", config.vocab_size, ")");
  const Context ctx(resolve_device(options.device), options.threads);
  Model model(config, ctx);
  load_checkpoint(path, model);
  model.set_inference_weights(parse_dtype(options.weights));
  return generate(model, {options.prompt}, options.max_new_tokens, options.sampling)[0];
}

}  // namespace longctx::train
