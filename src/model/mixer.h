// Mixer: the residual branch of one layer, y = f(x) with x already normalised, (B, T, C) -> same.
// One implementation per LayerKind (attention_mixer.cpp, mlp_mixer.cpp, ...).
#pragma once

#include <memory>
#include <random>
#include <string>

#include "longctx/model/arena.h"
#include "longctx/model/config.h"

namespace longctx {

class Mixer {
 public:
  virtual ~Mixer() = default;
  // Names (under this layer's prefix) and shapes of the parameters.
  virtual void declare(ParamArena& params) const = 0;
  // Initial values, written into `host` (an f64 CPU arena of the same layout).
  virtual void init(const ParamArena& host, std::mt19937_64& rng) const = 0;
  // Keeps views of its parameters and gradients.
  virtual void bind(const ParamArena& params, const ParamArena& grads) = 0;
  // y = f(x); saves what backward needs in `acts`.
  virtual void forward(const Context& ctx, ActivationArena& acts, const Tensor& y,
                       const Tensor& x) = 0;
  // dx (overwritten) from dy, for the x of the last forward; writes the parameter gradients.
  virtual void backward(const Context& ctx, ActivationArena& acts, const Tensor& dx,
                        const Tensor& dy) = 0;
};

std::unique_ptr<Mixer> make_mixer(LayerKind kind, const ModelConfig& config, int layer);

// Initialisation helpers over f64 host tensors.
void init_normal(const Tensor& t, double stddev, std::mt19937_64& rng);
void init_constant(const Tensor& t, double value);

}  // namespace longctx
