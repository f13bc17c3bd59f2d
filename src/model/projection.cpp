// Projection: a layer's weight matrix, dense or Monarch (see projection.h).
#include "src/model/projection.h"

#include <cmath>

#include "longctx/ops/linear.h"
#include "longctx/ops/monarch_linear.h"
#include "src/model/mixer.h"

namespace longctx {

Projection::Projection(std::string name, int64_t n_in, int64_t n_out, ProjectionKind kind,
                       int64_t nblocks)
    : name_(std::move(name)), n_in_(n_in), n_out_(n_out), kind_(kind) {
  if (kind_ == ProjectionKind::monarch) {
    const MonarchShape shape = monarch_shape(n_in, n_out, nblocks);
    w1_shape_ = shape.w1;
    w2_shape_ = shape.w2;
  }
}

void Projection::declare(ParamArena& p) const {
  if (kind_ == ProjectionKind::dense) {
    p.declare(name_, {n_out_, n_in_});
  } else {
    p.declare(name_ + ".w1", w1_shape_);
    p.declare(name_ + ".w2", w2_shape_);
  }
}

void Projection::init(const ParamArena& host, double dense_std, std::mt19937_64& rng) const {
  if (kind_ == ProjectionKind::dense) {
    init_normal(host.get(name_), dense_std, rng);
    return;
  }
  // MonarchLinear.reset_parameters of the Monarch authors' code: kaiming_uniform(a = sqrt(5)) of
  // each block, bound = gain · sqrt(3 / fan_in) with gain = sqrt(2 / (1 + a²)) = sqrt(1/3), i.e.
  // 1 / sqrt(fan_in). The product then has variance 1/9 of its input's per output, against
  // 1/3 for a dense nn.Linear under the same rule.
  init_uniform(host.get(name_ + ".w1"), 1.0 / std::sqrt(double(w1_shape_[2])), rng);
  init_uniform(host.get(name_ + ".w2"), 1.0 / std::sqrt(double(w2_shape_[2])), rng);
}

void Projection::bind(const ParamArena& p, const ParamArena& g) {
  if (kind_ == ProjectionKind::dense) {
    w_ = p.get(name_), dw_ = g.get(name_);
  } else {
    w1_ = p.get(name_ + ".w1"), w2_ = p.get(name_ + ".w2");
    dw1_ = g.get(name_ + ".w1"), dw2_ = g.get(name_ + ".w2");
  }
}

void Projection::forward(const Context& ctx, ActivationArena& acts, const Tensor& y,
                         const Tensor& x) {
  if (kind_ == ProjectionKind::dense) {
    linear_fwd(ctx, y, x, w_);
    return;
  }
  Shape mid_shape = x.shape();
  mid_shape.back() = w2_shape_[0] * w2_shape_[2];  // l·r
  mid_ = acts.take(mid_shape, x.dtype());
  monarch_linear_fwd(ctx, y, x, w1_, w2_, /*bias=*/{}, mid_);
}

void Projection::backward(const Context& ctx, const Tensor& dx, const Tensor& dy, const Tensor& x) {
  if (kind_ == ProjectionKind::dense)
    linear_bwd(ctx, dx, dw_, /*dbias=*/{}, dy, x, w_);
  else
    monarch_linear_bwd(ctx, dx, dw1_, dw2_, /*dbias=*/{}, dy, x, w1_, w2_, mid_);
}

}  // namespace longctx
