// Argument validation shared by every op: one fluent check per argument, so the validation
// block of an op reads like its contract.
//
//   check_arg("attention", "k", k).shape({B, Tk, Hkv, D}).dtype(q.dtype()).device(dev);
//
// Each failure throws Error naming the op, the argument, the expectation and what was given.
#pragma once

#include <initializer_list>
#include <ostream>
#include <string>

#include "longctx/tensor.h"

namespace longctx {

namespace detail {

// A tensor's elements as `rows` runs of `width` contiguous elements, `pitch` elements apart: a
// contiguous tensor (one run, or rows of a matrix), or a narrow of a contiguous tensor's last
// dimension. False for any other layout.
struct Rows {
  int64_t rows = 1, width = 1, pitch = 1;
};
inline bool as_rows(const Tensor& t, Rows* out) {
  Rows r;
  bool run_found = false;
  int64_t expected = 0;  // the stride the next outer dimension must have
  for (int d = t.dim() - 1; d >= 0; --d) {
    const int64_t size = t.size(d), stride = t.stride(d);
    if (size == 1) continue;  // a size-1 dimension's stride places nothing
    if (!run_found) {
      run_found = true;
      if (stride == 1) {  // the innermost dimension is the run
        r.width = r.pitch = expected = size;
        continue;
      }  // else runs of one element (a column), and this is the first outer dimension
    }
    if (r.rows == 1) r.pitch = expected = stride;  // the first outer one sets the pitch
    if (stride != expected || r.pitch < r.width) return false;
    r.rows *= size;
    expected *= size;
  }
  // Rows back to back are one run.
  if (r.pitch == r.width) r = {1, r.rows * r.width, r.rows * r.width};
  *out = r;
  return true;
}

// Two tensors whose memory ranges intersect can still be disjoint: narrows of different columns
// of one buffer (a projection's output split into x and z, causal_conv1d writing beside its
// input). True when both are row runs of one pitch (a single run takes the other's) whose
// columns, counted modulo the pitch from a's start, do not meet: b's [c, c + b.width) lies
// beside a's [0, a.width).
inline bool disjoint_rows(const Tensor& a, const Tensor& b) {
  if (a.numel() == 0 || b.numel() == 0) return true;  // no element to share
  Rows ra, rb;
  if (a.dtype() != b.dtype() || !as_rows(a, &ra) || !as_rows(b, &rb)) return false;
  const int64_t pitch = ra.rows > 1 ? ra.pitch : rb.pitch;
  if ((ra.rows > 1 && rb.rows > 1 && ra.pitch != rb.pitch) || ra.width > pitch || rb.width > pitch)
    return false;
  const int64_t esize = int64_t(dtype_size(a.dtype()));
  const int64_t delta = static_cast<const char*>(b.data()) - static_cast<const char*>(a.data());
  if (delta % esize != 0) return false;
  const int64_t c = ((delta / esize) % pitch + pitch) % pitch;
  return c >= ra.width && c + rb.width <= pitch;
}

}  // namespace detail

class ArgCheck {
 public:
  ArgCheck(const char* op, const char* name, const Tensor& t) : op_(op), name_(name), t_(t) {
    LONGCTX_CHECK(t.defined(), op_, ": argument '", name_, "' is required but was not given");
  }
  const ArgCheck& rank(int r) const {
    LONGCTX_CHECK(t_.dim() == r, op_, ": argument '", name_, "' must have ", r,
                  " dimensions, got shape ", shape_str(t_.shape()));
    return *this;
  }
  const ArgCheck& shape(const Shape& expected) const {
    LONGCTX_CHECK(t_.shape() == expected, op_, ": argument '", name_, "' expected shape ",
                  shape_str(expected), ", got ", shape_str(t_.shape()));
    return *this;
  }
  const ArgCheck& dtype(DType expected) const {
    LONGCTX_CHECK(t_.dtype() == expected, op_, ": argument '", name_, "' expected dtype ",
                  dtype_name(expected), ", got ", dtype_name(t_.dtype()));
    return *this;
  }
  const ArgCheck& dtype_in(std::initializer_list<DType> allowed) const {
    std::string names;
    for (DType d : allowed) {
      if (d == t_.dtype()) return *this;
      names += std::string(names.empty() ? "" : ", ") + dtype_name(d);
    }
    throw Error(detail::concat(op_, ": argument '", name_, "' has dtype ", dtype_name(t_.dtype()),
                               ", supported: ", names));
  }
  const ArgCheck& device(Device expected) const {
    LONGCTX_CHECK(t_.device() == expected, op_, ": argument '", name_, "' is on ",
                  t_.device().str(), ", expected ", expected.str(), " (the context's device)");
    return *this;
  }
  const ArgCheck& contiguous() const {
    LONGCTX_CHECK(t_.is_contiguous(), op_, ": argument '", name_,
                  "' must be contiguous, got strides ", shape_str(t_.strides()), " for shape ",
                  shape_str(t_.shape()));
    return *this;
  }
  // The output `name` must not share memory with the input `other_name`: their byte ranges may
  // interleave for narrows of one buffer (detail::disjoint_rows), else they must not meet.
  const ArgCheck& no_overlap(const char* other_name, const Tensor& other) const {
    if (!other.defined() || t_.nbytes() == 0 || other.nbytes() == 0) return *this;
    auto lo = [](const Tensor& x) { return static_cast<const char*>(x.data()); };
    auto hi = [](const Tensor& x) {
      int64_t last = 0;
      for (int d = 0; d < x.dim(); ++d) last += (x.size(d) - 1) * x.stride(d);
      return static_cast<const char*>(x.data()) + (last + 1) * int64_t(dtype_size(x.dtype()));
    };
    const bool overlap =
        lo(t_) < hi(other) && lo(other) < hi(t_) && !detail::disjoint_rows(t_, other);
    LONGCTX_CHECK(!overlap, op_, ": output '", name_, "' overlaps input '", other_name,
                  "'; this op does not work in place, pass separate memory");
    return *this;
  }

 private:
  const char* op_;
  const char* name_;
  const Tensor& t_;
};

inline ArgCheck check_arg(const char* op, const char* name, const Tensor& t) {
  return ArgCheck(op, name, t);
}

// A shape in a check_value message, formatted only if the check fails: check_value's arguments
// are evaluated on every call, and shape_str builds a string. The llama preset at d_model 16
// (bench/results/2026-12-05-cpu-decode-2) decoded a token in 40-43 us (median of 400 steps) with
// shape_str in the checks of its ~30 linear, norm, RoPE and attention calls a step and in 33-34
// with this (one thread, 2-core AVX-512 dev VM, load 10).
struct ShapeText {
  const Shape& shape;
};
inline std::ostream& operator<<(std::ostream& os, const ShapeText& s) {
  return os << shape_str(s.shape);
}

// For an op's scalar arguments: check_value("rmsnorm", "eps", eps > 0, "must be > 0, got ", eps).
template <class... Args>
void check_value(const char* op, const char* name, bool ok, const Args&... what) {
  LONGCTX_CHECK(ok, op, ": argument '", name, "' ", what...);
}

// A scalar argument as an op computing in `dtype` holds it: f32 for every dtype but f64 (the
// bf16/f16 paths compute in f32). A value valid in double can round to one that is not: an AdamW
// beta2 of 1 - 1e-11 became 1 in f32 (v never moved, the steps 1e5 times too large), an eps of
// 1e-50 became 0 (rmsnorm of a zero row: NaN).
inline double as_computed(DType dtype, double value) {
  return dtype == DType::f64 ? value : double(float(value));
}

}  // namespace longctx
