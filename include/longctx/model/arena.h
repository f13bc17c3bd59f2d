// Arenas: the memory of a model, llm.c style.
//
// ParamArena: named tensors laid out back to back in one buffer. Parameters, gradients and the
// optimizer's two moments each live in one ParamArena of the same layout, so the optimizer
// updates the whole model with one call over the flat buffers.
//
// ActivationArena: a bump allocator for what a forward pass saves for its backward, reset at the
// start of each forward. When a pass needs more than the arena holds, the overflow is allocated
// separately and the arena grows to the high-water mark at the next reset, so from the second
// step on a training loop allocates nothing.
#pragma once

#include <string>
#include <vector>

#include "longctx/context.h"

namespace longctx {

struct NamedTensor {
  std::string name;
  Tensor tensor;
};

class ParamArena {
 public:
  // Declares a tensor; call before allocate().
  void declare(const std::string& name, const Shape& shape);
  // One buffer for every declared tensor (zeroed), each view 64-byte aligned.
  void allocate(DType dtype, const Context& ctx);
  // An arena of the same names and shapes (e.g. gradients), zeroed.
  ParamArena like(DType dtype, const Context& ctx) const;

  const Tensor& get(const std::string& name) const;  // throws Error naming an unknown tensor
  // Makes `name` a view of `t` instead (same shape, any dtype, any memory): a copy of an arena
  // with some tensors elsewhere (Model::set_inference_weights' bf16 matrices). flat() and the
  // other tensors are unchanged.
  void replace_view(const std::string& name, const Tensor& t);
  const std::vector<NamedTensor>& tensors() const { return tensors_; }
  // The declared names and shapes, in order (before allocate() too).
  const std::vector<std::pair<std::string, Shape>>& declared() const { return declared_; }
  const Tensor& flat() const { return flat_; }  // the whole buffer, 1-D (padding included)
  int64_t numel() const;                        // declared elements, padding excluded

 private:
  std::vector<std::pair<std::string, Shape>> declared_;
  std::vector<NamedTensor> tensors_;
  Tensor flat_;
};

class ActivationArena {
 public:
  explicit ActivationArena(const Context& ctx) : ctx_(&ctx) {}
  // Starts a new pass; grows the buffer to the last pass's high-water mark if it overflowed.
  void reset();
  Tensor take(const Shape& shape, DType dtype);
  size_t capacity_bytes() const { return capacity_; }
  size_t high_water_bytes() const { return high_water_; }  // over every pass so far
  size_t pass_bytes() const { return pass_high_water_; }   // the current (or last) pass

 private:
  const Context* ctx_;
  Tensor buffer_;
  size_t capacity_ = 0, used_ = 0, high_water_ = 0, pass_high_water_ = 0;
};

}  // namespace longctx
