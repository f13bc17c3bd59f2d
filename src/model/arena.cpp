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

void ParamArena::check_new(const std::string& name) const {
  LONGCTX_CHECK(!flat_.defined(), "ParamArena: declare '", name, "' after allocate()");
  for (const Declared& d : declared_)
    LONGCTX_CHECK(d.name != name, "ParamArena: '", name, "' declared twice");
  for (const Joined& j : joined_)
    LONGCTX_CHECK(j.name != name, "ParamArena: '", name, "' declared twice");
}

void ParamArena::declare(const std::string& name, const Shape& shape) {
  check_new(name);
  checked_nbytes(shape, DType::f64, "ParamArena: '" + name + "'");  // the widest dtype
  declared_.push_back({name, shape, /*packed=*/false});
}

void ParamArena::declare_rows(const std::string& joined,
                              const std::vector<std::pair<std::string, Shape>>& parts) {
  check_new(joined);
  LONGCTX_CHECK(!parts.empty(), "ParamArena::declare_rows: '", joined, "' has no parts");
  const int64_t cols = parts[0].second.size() == 2 ? parts[0].second[1] : -1;
  for (const auto& [name, shape] : parts)
    LONGCTX_CHECK(shape.size() == 2 && shape[1] == cols, "ParamArena::declare_rows: '", name,
                  "' of '", joined, "' must be a matrix (rows, ", cols, "), got ",
                  shape_str(shape));
  const size_t first = declared_.size();
  for (size_t i = 0; i < parts.size(); ++i) {
    declare(parts[i].first, parts[i].second);
    declared_.back().packed = i > 0;
  }
  joined_.push_back({joined, first, parts.size()});
}

void ParamArena::allocate(DType dtype, const Context& ctx) {
  const size_t esize = dtype_size(dtype);
  // Byte offsets: each tensor 64-byte aligned, a packed one right after the one before it.
  std::vector<size_t> offsets;
  size_t total = 0;
  for (const Declared& d : declared_) {
    const std::string who = "ParamArena: '" + d.name + "'";
    const size_t bytes = checked_nbytes(d.shape, dtype, who);
    if (!d.packed) total = aligned(total);
    // Nothing wraps: total stays <= 2^62, a multiple of 64, so aligning it keeps it there.
    LONGCTX_CHECK(bytes <= size_t(kMaxTensorBytes) - total, who, ": ", total, " + ", bytes,
                  " bytes exceed the 2^62-byte limit of one buffer");
    offsets.push_back(total);
    total += bytes;
  }
  total = aligned(total);
  flat_ = Tensor::zeros({int64_t(total / esize)}, dtype, ctx.device(), &ctx);
  tensors_.clear();
  for (size_t i = 0; i < declared_.size(); ++i)
    tensors_.push_back(
        {declared_[i].name, flat_.view_bytes(offsets[i], declared_[i].shape, dtype)});
  joined_views_.clear();
  for (const Joined& j : joined_) {
    int64_t rows = 0;
    for (size_t i = j.first; i < j.first + j.count; ++i) rows += declared_[i].shape[0];
    const Shape shape{rows, declared_[j.first].shape[1]};
    joined_views_.push_back({j.name, flat_.view_bytes(offsets[j.first], shape, dtype)});
  }
}

ParamArena ParamArena::like(DType dtype, const Context& ctx) const {
  ParamArena other;
  other.declared_ = declared_;
  other.joined_ = joined_;
  other.allocate(dtype, ctx);
  return other;
}

const Tensor& ParamArena::get(const std::string& name) const {
  for (const auto* list : {&tensors_, &joined_views_})
    for (const auto& t : *list)
      if (t.name == name) return t.tensor;
  throw Error(detail::concat("ParamArena: no tensor named '", name, "'"));
}

void ParamArena::replace_view(const std::string& name, const Tensor& t) {
  for (auto* list : {&tensors_, &joined_views_})
    for (auto& named : *list)
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
  for (const Declared& d : declared_) n += count(d.shape);
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
