// Device and Tensor.
//
// A Tensor is a view: a data pointer, a DType, a Device, a shape and element strides. It may share
// ownership of the memory it points into (Tensor::empty allocates through the device's allocator:
// 64-byte aligned host memory on the CPU, the stream-ordered pool on CUDA), or borrow memory the
// caller owns (the pointer constructor). Copying a Tensor copies the view, never the data.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "longctx/dtype.h"
#include "longctx/error.h"

namespace longctx {

class Context;

enum class DeviceType : uint8_t { cpu, cuda };

struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;

  static Device cpu() { return {DeviceType::cpu, 0}; }
  static Device cuda(int index = 0) { return {DeviceType::cuda, index}; }
  bool is_cpu() const { return type == DeviceType::cpu; }
  bool is_cuda() const { return type == DeviceType::cuda; }
  std::string str() const;  // "cpu", "cuda:0"
  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
};

Device parse_device(const std::string& name);  // "cpu", "cuda", "cuda:1"; throws Error

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& shape);  // "(2, 3, 4)"

// The most bytes one tensor (or arena) may span: 2^62, so that every element count, stride, byte
// count and 64-byte-rounded size derived from a shape fits in int64 with room to spare.
constexpr int64_t kMaxTensorBytes = int64_t(1) << 62;

// The bytes a contiguous tensor of `shape` and `dtype` needs, computed without overflow. Throws
// Error starting with `who` for a negative size, or when the product of the non-zero sizes times
// the element size exceeds kMaxTensorBytes (zero sizes are left out of that product so that the
// strides of an empty tensor cannot overflow either). Shapes from files, configs and options go
// through here before anything is allocated; every Tensor's shape has passed it.
// (`who` is a view: a literal costs no allocation on the calls that pass, which decode makes by
// the hundred a token: the d_model 16 llama of bench/results/2026-12-05-cpu-decode-2/tiny.json
// decoded 4-5% faster with it, 0.028 -> 0.027 CPU ms a token, three alternating runs, load 9.)
size_t checked_nbytes(const Shape& shape, DType dtype, std::string_view who);

class Tensor {
 public:
  Tensor() = default;  // an undefined tensor: how an optional argument is left out
  // A view of memory the caller owns (or that `owner` keeps alive). Empty strides = contiguous.
  Tensor(void* data, DType dtype, Device device, Shape shape, Shape strides = {},
         std::shared_ptr<void> owner = nullptr);

  // Allocates contiguous storage on `device`. A CUDA allocation is ordered on ctx's stream when a
  // context is given (the default stream otherwise). Contents are uninitialised.
  static Tensor empty(const Shape& shape, DType dtype, Device device = Device::cpu(),
                      const Context* ctx = nullptr);
  static Tensor zeros(const Shape& shape, DType dtype, Device device = Device::cpu(),
                      const Context* ctx = nullptr);

  bool defined() const { return defined_; }
  void* data() const { return data_; }
  template <class T>
  T* data_as() const {
    LONGCTX_CHECK(dtype_of<T>::value == dtype_, "Tensor::data_as: tensor holds ",
                  dtype_name(dtype_), ", asked for ", dtype_name(dtype_of<T>::value));
    return static_cast<T*>(data_);
  }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  int dim() const { return int(shape_.size()); }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  int64_t size(int d) const { return shape_.at(d < 0 ? d + dim() : d); }
  int64_t stride(int d) const { return strides_.at(d < 0 ? d + dim() : d); }
  int64_t numel() const;
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype_); }
  bool is_contiguous() const;
  std::string describe() const;  // "f32 cuda:0 (2, 3, 4)"

  // Views sharing this tensor's memory.
  Tensor reshape(const Shape& shape) const;   // contiguous tensors only
  Tensor select(int d, int64_t index) const;  // drops dimension d
  Tensor transpose(int d0, int d1) const;     // swaps two dimensions (a strided view)
  Tensor narrow(int d, int64_t start, int64_t length) const;
  // A contiguous view of `shape` and `dtype` at `byte_offset` into this contiguous tensor's
  // memory (how arenas hand out pieces of one buffer); must lie within nbytes().
  Tensor view_bytes(size_t byte_offset, const Shape& shape, DType dtype) const;

  // Copies. `to` allocates on the target device; copy_from copies into this (same shape, dtype).
  // Both are ordered on ctx's stream and synchronised before return when they touch the host;
  // a copy that touches the host then raises an error a kernel of ctx left (Context::synchronize).
  // Without the CUDA side's context (ctx null or of another device) a copy, to_dtype and fill
  // wait for all work queued on that device first and finish before returning: the default
  // stream they then use does not wait for a context's stream by itself.
  Tensor to(Device device, const Context* ctx = nullptr) const;
  void copy_from(const Tensor& src, const Context* ctx = nullptr) const;
  // A new tensor on the same device holding this one's values converted to `dtype`: on the CPU
  // between floating dtypes (and i32 <-> i64), on CUDA between f32, bf16 and f16 (contiguous
  // tensors, ordered on ctx's stream).
  Tensor to_dtype(DType dtype, const Context* ctx = nullptr) const;
  // Writes `value` (converted to the dtype) into every element. CPU and CUDA.
  void fill(double value, const Context* ctx = nullptr) const;

 private:
  void* data_ = nullptr;
  DType dtype_ = DType::f32;
  Device device_;
  Shape shape_;
  Shape strides_;
  std::shared_ptr<void> owner_;
  bool defined_ = false;
};

}  // namespace longctx
