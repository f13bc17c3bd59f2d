// Embedding longctx in a program: build a hybrid model from a JSON config, train it a few steps
// on a toy task, and sample from it with the cache. Only the public headers are used.
//
//   longctx_example [config.json]      (default: models/presets/hybrid.json)
//
// The toy task is next-token prediction on a repeating sequence 0, 1, ..., 15, 0, 1, ...: the loss
// falls quickly and greedy generation after "0 1 2 3" continues the count.
#include <cstdio>
#include <exception>
#include <vector>

#include "longctx/longctx.h"

using namespace longctx;

int main(int argc, char** argv) try {
  const std::string path = argc > 1 ? argv[1] : LONGCTX_EXAMPLE_CONFIG;
  const Context ctx(cuda_status().available() ? Device::cuda(0) : Device::cpu());
  Model model(ModelConfig::load(path), ctx, DType::f32, /*seed=*/1);
  std::printf("%s: %s, %lld parameters, on %s\n", model.config().name.c_str(),
              model.config().pattern().c_str(), (long long)model.parameter_count(),
              ctx.device().str().c_str());

  // Tokens and next-token targets, (B, T) i32, made on the host and moved to the device.
  const int64_t B = 4, T = 64, period = 16;
  Tensor tokens = Tensor::empty({B, T}, DType::i32), targets = Tensor::empty({B, T}, DType::i32);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) {
      tokens.data_as<int32_t>()[b * T + t] = int32_t((b + t) % period);
      targets.data_as<int32_t>()[b * T + t] = int32_t((b + t + 1) % period);
    }
  tokens = tokens.to(ctx.device(), &ctx);
  targets = targets.to(ctx.device(), &ctx);

  // AdamW over the whole parameter arena at once: m and v are arenas of the same layout.
  const ParamArena m = model.params().like(DType::f32, ctx),
                   v = model.params().like(DType::f32, ctx);
  AdamWParams adamw;
  adamw.lr = 3e-3;
  adamw.weight_decay = 0.0;
  double first = 0, loss = 0;
  for (int step = 1; step <= 30; ++step) {
    loss = model.forward(tokens, targets);
    model.backward();
    adamw.step = step;
    adamw_step(ctx, model.params().flat(), m.flat(), v.flat(), model.grads().flat(), adamw);
    if (step == 1) first = loss;
  }
  std::printf("loss: %.3f at step 1, %.3f at step 30\n", first, loss);

  // Greedy continuation of "0 1 2 3" with the per-layer caches.
  SamplingParams greedy;
  greedy.temperature = 0;
  const std::vector<int32_t> out = generate(model, {{0, 1, 2, 3}}, 8, greedy)[0];
  std::printf("generated after 0 1 2 3:");
  for (int32_t t : out) std::printf(" %d", t);
  std::printf("\n");
  return loss < first ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "longctx_example: %s\n", e.what());
  return 1;
}
