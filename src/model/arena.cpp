// ParamArena and ActivationArena (see include/longctx/model/arena.h).
#include "longctx/model/arena.h"

#include <algorithm>

namespace longctx {

namespace {
constexpr size_t kAlign = 64;  // bytes: a cache line, and aligned vector loads on both devices
size_t aligned(size_t bytes) {
  return (bytes + kAlign - 1) / kAlign * kAlign;
}
int64_t count(const Shape& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;  // shapes passed checked_nbytes: no overflow
  return n;
}
// The 64-byte aligned bytes of `shape` in `dtype`, added to `total` without overflow: shapes
// come from model configs, which come from checkpoints, which are untrusted input.
size_t add_aligned(size_t total, const Shape& shape, DType dtype, std::string_view who) {
  const size_t bytes = aligned(checked_nbytes(shape, dtype, who));
  LONGCTX_CHECK(bytes <= size_t(kMaxTensorBytes) - total, who, ": ", total, " + ", bytes,
                " bytes exceed the 2^62-byte limit of one buffer");
  return total + bytes;
}
}  // namespace

void ParamArena::declare(const std::string& name, const Shape& shape) {
  LONGCTX_CHECK(!flat_.defined(), "ParamArena: declare '", name, "' after allocate()");
  checked_nbytes(shape, DType::f64, "ParamArena: '" + name + "'");  // the widest dtype
  for (const auto& [n, s] : declared_) {
    (void)s;
    LONGCTX_CHECK(n != name, "ParamArena: '", name, "' declared twice");
  }
  declared_.emplace_back(name, shape);
}

void ParamArena::allocate(DType dtype, const Context& ctx) {
  const size_t esize = dtype_size(dtype);
  size_t total = 0;
  for (const auto& [name, shape] : declared_)
    total = add_aligned(total, shape, dtype, "ParamArena: '" + name + "'");
  flat_ = Tensor::zeros({int64_t(total / esize)}, dtype, ctx.device(), &ctx);
  tensors_.clear();
  size_t offset = 0;
  for (const auto& [name, shape] : declared_) {
    tensors_.push_back({name, flat_.view_bytes(offset, shape, dtype)});
    offset += aligned(size_t(count(shape)) * esize);
  }
}

ParamArena ParamArena::like(DType dtype, const Context& ctx) const {
  ParamArena other;
  other.declared_ = declared_;
  other.allocate(dtype, ctx);
  return other;
}

const Tensor& ParamArena::get(const std::string& name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return t.tensor;
  throw Error(detail::concat("ParamArena: no tensor named '", name, "'"));
}

void ParamArena::replace_view(const std::string& name, const Tensor& t) {
  for (auto& named : tensors_)
    if (named.name == name) {
      LONGCTX_CHECK(t.shape() == named.tensor.shape(), "ParamArena::replace_view: '", name,
                    "' has shape ", shape_str(named.tensor.shape()), ", the new view ",
                    shape_str(t.shape()));
      named.tensor = t;
      return;
    }
  throw Error(detail::concat("ParamArena: no tensor named '", name, "'"));
}

int64_t ParamArena::numel() const {
  int64_t n = 0;
  for (const auto& [name, shape] : declared_) n += count(shape);
  return n;
}

void ActivationArena::reset() {
  if (high_water_ > capacity_) {
    buffer_ = Tensor();  // release before allocating the larger buffer
    // high_water_ is a multiple of 64 bytes; hold it as f32 words.
    buffer_ = Tensor::empty({int64_t(high_water_ / 4)}, DType::f32, ctx_->device(), ctx_);
    capacity_ = high_water_;
  }
  used_ = 0;
  pass_high_water_ = 0;
}

Tensor ActivationArena::take(const Shape& shape, DType dtype) {
  const size_t bytes = add_aligned(0, shape, dtype, "ActivationArena::take");
  LONGCTX_CHECK(bytes <= size_t(kMaxTensorBytes) - used_, "ActivationArena::take: ", used_, " + ",
                bytes, " bytes exceed the 2^62-byte limit of one buffer");
  used_ += bytes;
  high_water_ = std::max(high_water_, used_);
  pass_high_water_ = std::max(pass_high_water_, used_);
  if (used_ <= capacity_) {
    return buffer_.view_bytes(used_ - bytes, shape, dtype);
  }
  return Tensor::empty(shape, dtype, ctx_->device(), ctx_);  // overflow: this pass only
}

}  // namespace longctx
