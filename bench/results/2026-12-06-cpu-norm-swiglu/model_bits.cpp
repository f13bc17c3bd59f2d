// Bits of a preset's training step: loss, logits and every gradient, hashed (FNV-1a over the
// bytes), f32, for the given threads. g++ -O2 -std=c++17 -I include model_bits.cpp -Lbuild-cpu
// -llongctx -o model_bits; ./model_bits mamba2,hybrid 256 2 [dump prefix: the gradients' floats]
#include <cstdio>
#include <cstring>
#include <random>
#include <sstream>
#include <string>

#include "longctx/longctx.h"
#include "longctx/model/model.h"

using namespace longctx;

static uint64_t fnv(const void* p, size_t n, uint64_t h = 1469598103934665603ull) {
  const unsigned char* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

int main(int argc, char** argv) {
  std::stringstream ss(argc > 1 ? argv[1] : "mamba2,hybrid");
  const int64_t T = argc > 2 ? std::atoll(argv[2]) : 256;
  const int threads = argc > 3 ? std::atoi(argv[3]) : 2;
  Context ctx(Device::cpu(), threads);
  for (std::string preset; std::getline(ss, preset, ',');) {
    ModelConfig config = ModelConfig::load("models/presets/" + preset + ".json");
    Model model(config, ctx, DType::f32, 7);
    const int64_t B = 4;
    std::mt19937_64 rng(T);
    Tensor x = Tensor::empty({B, T}, DType::i32), y = Tensor::empty({B, T}, DType::i32);
    for (int64_t i = 0; i < B * T; ++i) {
      static_cast<int32_t*>(x.data())[i] = int32_t(rng() % config.vocab_size);
      static_cast<int32_t*>(y.data())[i] = int32_t(rng() % config.vocab_size);
    }
    model.forward(x);  // inference: no targets
    const uint64_t hp = fnv(model.logits().data(), model.logits().nbytes());
    const double loss = model.forward(x, y);
    const uint64_t hl = fnv(model.logits().data(), model.logits().nbytes());
    model.backward();
    const Tensor& g = model.grads().flat();
    const uint64_t hg = fnv(g.data(), g.nbytes());
    if (argc > 4) {  // the gradients' floats, for a comparison
      FILE* f = std::fopen((std::string(argv[4]) + "." + preset).c_str(), "wb");
      std::fwrite(g.data(), 1, g.nbytes(), f);
      std::fclose(f);
    }
    std::printf("%s T=%lld threads=%d prefill %016llx loss %.9g logits %016llx grads %016llx\n", preset.c_str(),
                (long long)T, threads, (unsigned long long)hp, loss, (unsigned long long)hl, (unsigned long long)hg);
  }
}
