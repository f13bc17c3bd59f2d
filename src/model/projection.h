// Projection: one weight matrix of a layer, y = x @ Wᵀ for x (..., n_in) -> y (..., n_out),
// stored and applied dense (`linear`, one parameter `<name>` (n_out, n_in)) or as a Monarch
// matrix (`monarch_linear`, parameters `<name>.w1` and `<name>.w2`, the factor shapes of
// monarch_shape). A mixer declares, initialises, binds and runs its projections through this, so
// the choice is made in one place.
#pragma once

#include <random>
#include <string>

#include "longctx/model/arena.h"
#include "longctx/model/config.h"

namespace longctx {

class Projection {
 public:
  Projection() = default;
  Projection(std::string name, int64_t n_in, int64_t n_out, ProjectionKind kind, int64_t nblocks);

  void declare(ParamArena& params) const;
  // Dense: normal(0, dense_std), the layer's own choice. Monarch: the authors' MonarchLinear
  // initialisation, whatever dense_std is: each factor uniform in ±1/sqrt(fan_in), fan_in its
  // blocks' input size (PyTorch's kaiming_uniform with a = sqrt(5), per block).
  void init(const ParamArena& host, double dense_std, std::mt19937_64& rng) const;
  void bind(const ParamArena& params, const ParamArena& grads);
  // The parameter `linear` reads (a dense projection's); "" for a Monarch one.
  std::string linear_weight() const { return kind_ == ProjectionKind::dense ? name_ : ""; }

  // y = x @ Wᵀ. A Monarch projection keeps its intermediate (from `acts`) for the backward.
  void forward(const Context& ctx, ActivationArena& acts, const Tensor& y, const Tensor& x);
  // dx (optional, overwritten) and the parameter gradients, for the x of the last forward.
  void backward(const Context& ctx, const Tensor& dx, const Tensor& dy, const Tensor& x);

 private:
  std::string name_;
  int64_t n_in_ = 0, n_out_ = 0;
  ProjectionKind kind_ = ProjectionKind::dense;
  Shape w1_shape_, w2_shape_;            // monarch
  Tensor w_, dw_, w1_, w2_, dw1_, dw2_;  // dense: w_; monarch: w1_, w2_
  Tensor mid_;                           // monarch: saved by forward
};

}  // namespace longctx
