// Tensor views, allocation and copies (see tensor.h).
#include "longctx/tensor.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "longctx/context.h"
#include "src/cpu/parallel.h"  // the CPU strided copy runs on the context's threads

#if LONGCTX_WITH_CUDA
#include "kernels/common/runtime.h"
#endif

namespace longctx {

namespace {

[[noreturn, maybe_unused]] void no_cuda(const char* what) {
  throw Error(detail::concat(what,
                             ": this build of longctx has no CUDA backend (configure with "
                             "-DLONGCTX_CUDA=ON on a machine with nvcc)"));
}

#if LONGCTX_WITH_CUDA
// The stream a CUDA operation on `device` runs on: ctx's when ctx is that device's context. Else
// the legacy default stream, which does not wait for the non-blocking stream of a context that
// may still be writing the tensor (a checkpoint saved while the step's kernels run): so the
// device finishes all its work first, and finish_unordered() waits for the operation itself
// before it returns, for the context that reads the result next.
void* ordered_stream(const Context* ctx, Device device) {
  if (ctx && ctx->device() == device) return ctx->stream();
  cuda::synchronize_device(device.index);
  return nullptr;
}
void finish_unordered(void* stream) {
  if (!stream) cuda::synchronize(nullptr);
}
// After a copy that the host waited for: an error a kernel of ctx recorded is raised now.
void check_deferred(const Context* ctx, Device device) {
  if (ctx && ctx->device() == device) cuda::check_deferred_errors(ctx->cuda_state());
}
#endif

Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t s = 1;
  for (int d = int(shape.size()) - 1; d >= 0; --d) {
    strides[d] = s;
    s *= shape[d];
  }
  return strides;
}

// Visits every element offset (in elements) of a strided view in row-major order.
template <class F>
void for_each_offset(const Shape& shape, const Shape& strides, F&& f) {
  int64_t count = 1;
  for (int64_t s : shape) count *= s;
  if (count == 0) return;
  Shape index(shape.size(), 0);
  int64_t offset = 0;
  for (int64_t i = 0; i < count; ++i) {
    f(i, offset);
    for (int d = int(shape.size()) - 1; d >= 0; --d) {
      if (++index[d] < shape[d]) {
        offset += strides[d];
        break;
      }
      offset -= strides[d] * (shape[d] - 1);
      index[d] = 0;
    }
  }
}

// [first, last] byte addresses a non-empty strided view touches.
std::pair<intptr_t, intptr_t> byte_span(const void* data, const Shape& shape, const Shape& strides,
                                        size_t esize) {
  intptr_t lo = reinterpret_cast<intptr_t>(data), hi = lo;
  for (size_t d = 0; d < shape.size(); ++d) {
    const intptr_t reach = intptr_t((shape[d] - 1) * strides[d] * int64_t(esize));
    (reach < 0 ? lo : hi) += reach;
  }
  return {lo, hi + intptr_t(esize) - 1};
}

// Shape and the two views' strides with size-1 dims dropped and neighbours that are contiguous
// in both views merged: a narrowed row block becomes one long row, a transpose stays 2-D.
struct CopyLayout {
  Shape shape, dst, src;
};

CopyLayout simplify_layout(const Shape& shape, const Shape& dst, const Shape& src) {
  CopyLayout out;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (!out.shape.empty() && out.dst.back() == dst[d] * shape[d] &&
        out.src.back() == src[d] * shape[d]) {
      out.shape.back() *= shape[d];
      out.dst.back() = dst[d];
      out.src.back() = src[d];
      continue;
    }
    out.shape.push_back(shape[d]);
    out.dst.push_back(dst[d]);
    out.src.push_back(src[d]);
  }
  if (out.shape.empty()) out = {{1}, {1}, {1}};
  return out;
}

// One 2-D block: rows x cols elements. Unit-stride rows are memcpy'd; anything else (a
// transpose) is walked in 32 x 32 tiles so both sides stay in cache. Element-by-element memcpy
// with a staging buffer made the Mamba-2 mixer's transposes ~70% of its CPU step time.
template <typename E>
void copy_block(E* dst, int64_t dr, int64_t dc, const E* src, int64_t sr, int64_t sc, int64_t rows,
                int64_t cols) {
  if (dc == 1 && sc == 1) {
    for (int64_t i = 0; i < rows; ++i) std::memcpy(dst + i * dr, src + i * sr, cols * sizeof(E));
    return;
  }
  constexpr int64_t kTile = 32;
  for (int64_t i0 = 0; i0 < rows; i0 += kTile) {
    const int64_t i1 = std::min(rows, i0 + kTile);
    for (int64_t j0 = 0; j0 < cols; j0 += kTile) {
      const int64_t j1 = std::min(cols, j0 + kTile);
      for (int64_t i = i0; i < i1; ++i)
        for (int64_t j = j0; j < j1; ++j) dst[i * dr + j * dc] = src[i * sr + j * sc];
    }
  }
}

// The copy is split into items of up to kTile rows of one block (a block: the last two dims at
// one index of the leading dims), run across ctx's threads when there is one and the copy is at
// least kParallelBytes; else serially. The Mamba-2 mixer's layout copies (xBC transposed around
// its conv, its gradients back) were serial and 17-27 % of the hybrid and mamba2 prefills' CPU
// time (bench/results/2026-12-05-cpu-prefill-profile), so on an idle machine they cost their
// full CPU time in wall time. Below ~1 MiB a serial copy takes ~100 us or less, the order of
// waking a passive OpenMP team (an estimate, not measured), so small copies (decode's rows) stay
// on the calling thread. The wall-time gain is not measured either (no idle machine).
template <typename E>
void copy_strided_typed(const Context* ctx, void* dst_data, const void* src_data,
                        const CopyLayout& l) {
  constexpr int64_t kTile = 32;
  constexpr int64_t kParallelBytes = int64_t(1) << 20;
  const int rank = int(l.shape.size());
  // The last two dims form a block; the leading dims are unravelled from the block index.
  const int64_t rows = rank >= 2 ? l.shape[rank - 2] : 1, cols = l.shape[rank - 1];
  const int64_t dr = rank >= 2 ? l.dst[rank - 2] : 0, sr = rank >= 2 ? l.src[rank - 2] : 0;
  const int outer = std::max(rank - 2, 0);
  int64_t blocks = 1;
  for (int d = 0; d < outer; ++d) blocks *= l.shape[d];
  const int64_t tiles = (rows + kTile - 1) / kTile;
  auto item = [&](int64_t i) {
    int64_t b = i / tiles, dst_off = 0, src_off = 0;
    for (int d = outer - 1; d >= 0; --d) {
      const int64_t at = b % l.shape[d];
      b /= l.shape[d];
      dst_off += at * l.dst[d];
      src_off += at * l.src[d];
    }
    const int64_t r0 = (i % tiles) * kTile, r1 = std::min(rows, r0 + kTile);
    copy_block(static_cast<E*>(dst_data) + dst_off + r0 * dr, dr, l.dst[rank - 1],
               static_cast<const E*>(src_data) + src_off + r0 * sr, sr, l.src[rank - 1], r1 - r0,
               cols);
  };
  const int64_t items = blocks * tiles;
  if (ctx && ctx->device().is_cpu() &&
      blocks * rows * cols * int64_t(sizeof(E)) >= kParallelBytes) {
    cpu::parallel_for(*ctx, items, item);
    return;
  }
  for (int64_t i = 0; i < items; ++i) item(i);
}

// dst[i] = src[i] over a non-empty `shape` for two CPU views that do not overlap.
void copy_strided_cpu(const Context* ctx, void* dst, const Shape& dst_strides, const void* src,
                      const Shape& src_strides, const Shape& shape, size_t esize) {
  const CopyLayout l = simplify_layout(shape, dst_strides, src_strides);
  switch (esize) {
    case 1:
      return copy_strided_typed<uint8_t>(ctx, dst, src, l);
    case 2:
      return copy_strided_typed<uint16_t>(ctx, dst, src, l);
    case 4:
      return copy_strided_typed<uint32_t>(ctx, dst, src, l);
    case 8:
      return copy_strided_typed<uint64_t>(ctx, dst, src, l);
    default:
      throw Error(detail::concat("Tensor::copy_from: unsupported element size ", esize));
  }
}

}  // namespace

std::string Device::str() const {
  return is_cpu() ? std::string("cpu") : detail::concat("cuda:", index);
}

Device parse_device(const std::string& name) {
  if (name == "cpu") return Device::cpu();
  if (name == "cuda") return Device::cuda(0);
  if (name.rfind("cuda:", 0) == 0) {
    const std::string digits = name.substr(5);
    if (!digits.empty() && digits.find_first_not_of("0123456789") == std::string::npos &&
        digits.size() < 6)
      return Device::cuda(std::stoi(digits));
  }
  throw Error("unknown device '" + name + "': expected cpu, cuda or cuda:N");
}

size_t checked_nbytes(const Shape& shape, DType dtype, std::string_view who) {
  int64_t nonzero = int64_t(dtype_size(dtype)), bytes = nonzero;
  for (int64_t s : shape) {
    LONGCTX_CHECK(s >= 0, who, ": negative size in shape ", shape_str(shape));
    if (s == 0) {
      bytes = 0;
      continue;
    }
    LONGCTX_CHECK(!__builtin_mul_overflow(nonzero, s, &nonzero) && nonzero <= kMaxTensorBytes, who,
                  ": shape ", shape_str(shape), " of ", dtype_name(dtype), " needs more than 2^62 ",
                  "bytes");
    bytes = bytes ? nonzero : 0;
  }
  return size_t(bytes);
}

std::string shape_str(const Shape& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

Tensor::Tensor(void* data, DType dtype, Device device, Shape shape, Shape strides,
               std::shared_ptr<void> owner)
    : data_(data),
      dtype_(dtype),
      device_(device),
      shape_(std::move(shape)),
      strides_(std::move(strides)),
      owner_(std::move(owner)),
      defined_(true) {
  // The sizes first: once their product is bounded, neither the contiguous strides nor numel()
  // and nbytes() below can overflow (computing the strides first overflowed on a hostile shape).
  checked_nbytes(shape_, dtype_, "Tensor");
  if (strides_.empty()) strides_ = contiguous_strides(shape_);
  LONGCTX_CHECK(strides_.size() == shape_.size(), "Tensor: shape ", shape_str(shape_), " has ",
                shape_.size(), " dims but strides ", shape_str(strides_), " has ", strides_.size());
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t s : shape_) n *= s;
  return n;
}

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (int d = dim() - 1; d >= 0; --d) {
    if (shape_[d] != 1 && strides_[d] != expected) return false;
    expected *= shape_[d];
  }
  return true;
}

std::string Tensor::describe() const {
  if (!defined_) return "undefined tensor";
  return detail::concat(dtype_name(dtype_), " ", device_.str(), " ", shape_str(shape_));
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device, const Context* ctx) {
  const size_t bytes = checked_nbytes(shape, dtype, "Tensor::empty");
  if (device.is_cpu()) {
    // 64-byte alignment: one cache line, and what AVX-512 loads want.
    void* ptr = bytes ? std::aligned_alloc(64, (bytes + 63) / 64 * 64) : nullptr;
    LONGCTX_CHECK(ptr || !bytes, "Tensor::empty: out of host memory allocating ", bytes,
                  " bytes for ", shape_str(shape));
    return Tensor(ptr, dtype, device, shape, {}, std::shared_ptr<void>(ptr, std::free));
  }
#if LONGCTX_WITH_CUDA
  // The deleter holds the context's CUDA state so the stream outlives every allocation on it.
  std::shared_ptr<Context::CudaState> state;
  if (ctx && ctx->device() == device) state = ctx->shared_cuda_state();
  void* stream = cuda::stream_of(state.get());
  void* ptr = cuda::malloc_async(bytes, device.index, stream);
  const int index = device.index;
  auto release = [index, state](void* p) {
    cuda::free_async(p, index, cuda::stream_of(state.get()));
  };
  return Tensor(ptr, dtype, device, shape, {}, std::shared_ptr<void>(ptr, release));
#else
  (void)ctx;
  no_cuda("Tensor::empty");
#endif
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device, const Context* ctx) {
  Tensor t = empty(shape, dtype, device, ctx);
  t.fill(0.0, ctx);
  return t;
}

Tensor Tensor::reshape(const Shape& shape) const {
  LONGCTX_CHECK(is_contiguous(), "Tensor::reshape: needs a contiguous tensor, got strides ",
                shape_str(strides_), " for shape ", shape_str(shape_));
  LONGCTX_CHECK(checked_nbytes(shape, dtype_, "Tensor::reshape") == nbytes(),
                "Tensor::reshape: cannot view ", shape_str(shape_), " as ", shape_str(shape));
  return Tensor(data_, dtype_, device_, shape, {}, owner_);
}

Tensor Tensor::select(int d, int64_t index) const {
  const int dd = d < 0 ? d + dim() : d;
  LONGCTX_CHECK(dd >= 0 && dd < dim(), "Tensor::select: dim ", d, " out of range for ",
                shape_str(shape_));
  LONGCTX_CHECK(index >= 0 && index < shape_[dd], "Tensor::select: index ", index,
                " out of range for size ", shape_[dd]);
  Shape shape = shape_, strides = strides_;
  shape.erase(shape.begin() + dd);
  strides.erase(strides.begin() + dd);
  char* p = static_cast<char*>(data_) + index * strides_[dd] * int64_t(dtype_size(dtype_));
  return Tensor(p, dtype_, device_, shape, strides, owner_);
}

Tensor Tensor::transpose(int d0, int d1) const {
  const int a = d0 < 0 ? d0 + dim() : d0, b = d1 < 0 ? d1 + dim() : d1;
  LONGCTX_CHECK(a >= 0 && a < dim() && b >= 0 && b < dim(), "Tensor::transpose: dims ", d0, ", ",
                d1, " out of range for ", shape_str(shape_));
  Shape shape = shape_, strides = strides_;
  std::swap(shape[a], shape[b]);
  std::swap(strides[a], strides[b]);
  return Tensor(data_, dtype_, device_, shape, strides, owner_);
}

Tensor Tensor::narrow(int d, int64_t start, int64_t length) const {
  const int dd = d < 0 ? d + dim() : d;
  LONGCTX_CHECK(dd >= 0 && dd < dim(), "Tensor::narrow: dim ", d, " out of range for ",
                shape_str(shape_));
  LONGCTX_CHECK(start >= 0 && length >= 0 && start <= shape_[dd] && length <= shape_[dd] - start,
                "Tensor::narrow: ", length, " elements from ", start, " out of range for size ",
                shape_[dd]);
  Shape shape = shape_;
  shape[dd] = length;
  char* p = static_cast<char*>(data_) + start * strides_[dd] * int64_t(dtype_size(dtype_));
  return Tensor(p, dtype_, device_, shape, strides_, owner_);
}

Tensor Tensor::view_bytes(size_t byte_offset, const Shape& shape, DType dtype) const {
  LONGCTX_CHECK(is_contiguous(), "Tensor::view_bytes: needs a contiguous tensor");
  const size_t bytes = checked_nbytes(shape, dtype, "Tensor::view_bytes");
  // Written so that nothing can wrap: bytes and nbytes() are at most 2^62.
  LONGCTX_CHECK(byte_offset <= nbytes() && bytes <= nbytes() - byte_offset,
                "Tensor::view_bytes: ", bytes, " bytes at offset ", byte_offset,
                " lie outside the tensor's ", nbytes(), " bytes");
  return Tensor(static_cast<char*>(data_) + byte_offset, dtype, device_, shape, {}, owner_);
}

void Tensor::copy_from(const Tensor& src, const Context* ctx) const {
  LONGCTX_CHECK(src.defined() && defined_, "Tensor::copy_from: both tensors must be defined");
  LONGCTX_CHECK(src.shape_ == shape_, "Tensor::copy_from: source shape ", shape_str(src.shape_),
                " differs from destination shape ", shape_str(shape_));
  LONGCTX_CHECK(src.dtype_ == dtype_, "Tensor::copy_from: source dtype ", dtype_name(src.dtype_),
                " differs from destination dtype ", dtype_name(dtype_),
                " (convert with to_dtype first)");
  const size_t esize = dtype_size(dtype_);
  if (device_.is_cpu() && src.device_.is_cpu()) {
    if (is_contiguous() && src.is_contiguous()) {
      if (nbytes()) std::memmove(data_, src.data_, nbytes());
      return;
    }
    if (numel() == 0) return;
    const auto [lo, hi] = byte_span(data_, shape_, strides_, esize);
    const auto [src_lo, src_hi] = byte_span(src.data_, src.shape_, src.strides_, esize);
    if (lo <= src_hi && src_lo <= hi) {
      copy_from(src.to(Device::cpu()), ctx);  // stage the source so the copy reads no new value
      return;
    }
    copy_strided_cpu(ctx, data_, strides_, src.data_, src.strides_, shape_, esize);
    return;
  }
#if LONGCTX_WITH_CUDA
  const Device cuda_side = device_.is_cuda() ? device_ : src.device_;
  if (device_.is_cuda() && src.device_.is_cuda() && device_ != src.device_ &&
      !(ctx && ctx->device() == src.device_))
    cuda::synchronize_device(src.device_.index);  // the source's writers, on another device
  void* stream = ordered_stream(ctx, cuda_side);
  if (device_ == src.device_) {  // on one CUDA device: a strided kernel covers every layout
    if (is_contiguous() && src.is_contiguous()) {
      cuda::copy(data_, device_, src.data_, src.device_, nbytes(), stream);
    } else {
      cuda::copy_strided(data_, strides_.data(), src.data_, src.strides_.data(), esize, dim(),
                         shape_.data(), stream);
    }
    finish_unordered(stream);
    return;
  }
  // Across devices the transfer is contiguous: stage either side that is not.
  const Tensor source = src.is_contiguous() ? src : src.to(src.device_, ctx);
  if (!is_contiguous()) {
    copy_from(source.to(device_, ctx), ctx);
    return;
  }
  cuda::copy(data_, device_, source.data_, source.device_, nbytes(), stream);
  finish_unordered(stream);
  if (device_.is_cpu() || source.device_.is_cpu()) check_deferred(ctx, cuda_side);
#else
  (void)ctx;
  no_cuda("Tensor::copy_from");
#endif
}

Tensor Tensor::to(Device device, const Context* ctx) const {
  Tensor out = empty(shape_, dtype_, device, ctx);
  out.copy_from(*this, ctx);
  return out;
}

namespace {
double load_as_double(const void* p, DType d) {
  switch (d) {
    case DType::f32:
      return *static_cast<const float*>(p);
    case DType::f64:
      return *static_cast<const double*>(p);
    case DType::bf16:
      return to_float(*static_cast<const bf16*>(p));
    case DType::f16:
      return to_float(*static_cast<const f16*>(p));
    case DType::i32:
      return *static_cast<const int32_t*>(p);
    case DType::i64:
      return double(*static_cast<const int64_t*>(p));
  }
  return 0;
}
void store_from_double(void* p, DType d, double v) {
  switch (d) {
    case DType::f32:
      *static_cast<float*>(p) = float(v);
      break;
    case DType::f64:
      *static_cast<double*>(p) = v;
      break;
    case DType::bf16:
      *static_cast<bf16*>(p) = to_bf16(float(v));
      break;
    case DType::f16:
      *static_cast<f16*>(p) = to_f16(float(v));
      break;
    case DType::i32:
      *static_cast<int32_t*>(p) = int32_t(v);
      break;
    case DType::i64:
      *static_cast<int64_t*>(p) = int64_t(v);
      break;
  }
}
}  // namespace

Tensor Tensor::to_dtype(DType dtype, const Context* ctx) const {
  LONGCTX_CHECK(defined_, "Tensor::to_dtype: undefined tensor");
  LONGCTX_CHECK(is_floating(dtype) == is_floating(dtype_), "Tensor::to_dtype: cannot convert ",
                dtype_name(dtype_), " to ", dtype_name(dtype));
  if (device_.is_cuda()) {
#if LONGCTX_WITH_CUDA
    LONGCTX_CHECK(is_contiguous(), "Tensor::to_dtype: a CUDA tensor must be contiguous");
    Tensor out = empty(shape_, dtype, device_, ctx);
    void* stream = ordered_stream(ctx, device_);
    cuda::convert(out.data_, dtype, data_, dtype_, numel(), stream);
    finish_unordered(stream);
    return out;
#else
    (void)ctx;
    no_cuda("Tensor::to_dtype");
#endif
  }
  Tensor out = empty(shape_, dtype);
  const size_t in_size = dtype_size(dtype_), out_size = dtype_size(dtype);
  for_each_offset(shape_, strides_, [&](int64_t i, int64_t off) {
    if (dtype_ == DType::i64 && dtype == DType::i64) {
      static_cast<int64_t*>(out.data_)[i] = static_cast<const int64_t*>(data_)[off];
      return;
    }
    store_from_double(static_cast<char*>(out.data_) + i * out_size, dtype,
                      load_as_double(static_cast<const char*>(data_) + off * in_size, dtype_));
  });
  return out;
}

void Tensor::fill(double value, const Context* ctx) const {
  LONGCTX_CHECK(defined_, "Tensor::fill: undefined tensor");
  if (device_.is_cpu()) {
    const size_t esize = dtype_size(dtype_);
    char word[8];
    store_from_double(word, dtype_, value);
    for_each_offset(shape_, strides_, [&](int64_t, int64_t off) {
      std::memcpy(static_cast<char*>(data_) + off * esize, word, esize);
    });
    return;
  }
#if LONGCTX_WITH_CUDA
  LONGCTX_CHECK(is_contiguous(), "Tensor::fill: a CUDA tensor must be contiguous");
  void* stream = ordered_stream(ctx, device_);
  cuda::fill(data_, dtype_, numel(), value, stream);
  finish_unordered(stream);
#else
  (void)ctx;
  (void)value;
  no_cuda("Tensor::fill");
#endif
}

}  // namespace longctx
