// Device discovery, allocation, copies and per-Context state on CUDA (see runtime.h).
#include <cublasLt.h>

#include <string>

#include "kernels/common/context_state.cuh"
#include "kernels/common/cuda_check.cuh"
#include "kernels/common/index_check.cuh"
#include "kernels/common/runtime.h"
#include "kernels/common/types.cuh"
#include "src/ops/index_errors.h"

namespace longctx::cuda {

void throw_cuda_error(cudaError_t err, const char* statement, const char* file, int line) {
  int device = -1;
  cudaGetDevice(&device);
  cudaGetLastError();  // clear a sticky-free error so the caller can go on
  throw Error(detail::concat("CUDA error ", cudaGetErrorName(err), " (", cudaGetErrorString(err),
                             ") in `", statement, "` on cuda:", device, " at ", file, ":", line));
}

#define LONGCTX_CUBLAS_CHECK(statement)                                                     \
  do {                                                                                      \
    cublasStatus_t st_ = (statement);                                                       \
    if (st_ != CUBLAS_STATUS_SUCCESS)                                                       \
      throw Error(detail::concat("cuBLASLt error ", int(st_), " in `", #statement, "` at ", \
                                 __FILE__, ":", __LINE__));                                 \
  } while (0)

CudaStatus status() {
  CudaStatus s;
  s.built_with_cuda = true;
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();
    // cudaErrorInsufficientDriver / cudaErrorNoDevice: the toolkit is here, a GPU is not.
    s.reason = detail::concat("cudaGetDeviceCount failed: ", cudaGetErrorName(err), " (",
                              cudaGetErrorString(err), ")");
    return s;
  }
  if (count == 0) {
    s.reason = "no CUDA device found";
    return s;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    LONGCTX_CUDA_CHECK(cudaGetDeviceProperties(&prop, i));
    s.devices.push_back({i, prop.name, prop.major, prop.minor, prop.totalGlobalMem});
  }
  return s;
}

void set_device(int device) {
  LONGCTX_CUDA_CHECK(cudaSetDevice(device));
}

void* malloc_async(size_t bytes, int device, void* stream) {
  set_device(device);
  void* ptr = nullptr;
  if (bytes == 0) return nullptr;
  LONGCTX_CUDA_CHECK(cudaMallocAsync(&ptr, bytes, static_cast<cudaStream_t>(stream)));
  return ptr;
}

void free_async(void* ptr, int device, void* stream) noexcept {
  if (!ptr) return;
  cudaSetDevice(device);
  cudaFreeAsync(ptr, static_cast<cudaStream_t>(stream));  // a destructor must not throw
}

size_t pool_peak_bytes(int device) {
  cudaMemPool_t pool;
  LONGCTX_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
  uint64_t high = 0;  // the attribute is a cuuint64_t (unsigned 64-bit)
  LONGCTX_CUDA_CHECK(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &high));
  return size_t(high);
}

void reset_pool_peak(int device) {
  cudaMemPool_t pool;
  LONGCTX_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
  uint64_t zero = 0;  // the only value allowed: resets the mark to the memory in use now
  LONGCTX_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &zero));
}

void copy(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes,
          void* stream) {
  if (bytes == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  LONGCTX_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, s));
  if (dst_device.is_cpu() || src_device.is_cpu()) LONGCTX_CUDA_CHECK(cudaStreamSynchronize(s));
}

namespace {

struct StridedCopyArgs {
  int dims;
  int64_t shape[8];
  int64_t dst_strides[8];  // in elements
  int64_t src_strides[8];
};

template <class Word>
__global__ void __launch_bounds__(256)
    copy_strided_kernel(Word* dst, const Word* src, int64_t count, StridedCopyArgs args) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t rest = i, dst_offset = 0, src_offset = 0;
    for (int d = args.dims - 1; d >= 0; --d) {
      const int64_t index = rest % args.shape[d];
      dst_offset += index * args.dst_strides[d];
      src_offset += index * args.src_strides[d];
      rest /= args.shape[d];
    }
    dst[dst_offset] = src[src_offset];
  }
}

template <class T>
__global__ void __launch_bounds__(256) fill_kernel(T* dst, int64_t count, T value) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = value;
}

template <class To, class From>
__global__ void __launch_bounds__(256) convert_kernel(To* dst, const From* src, int64_t count) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = store_as<To>(load_f32(src[i]));
}

unsigned grid_for(int64_t count) {
  return unsigned(std::min<int64_t>((count + 255) / 256, 65535 * 4));
}

}  // namespace

void copy_strided(void* dst, const int64_t* dst_strides, const void* src,
                  const int64_t* src_strides, size_t element_size, int dims, const int64_t* shape,
                  void* stream) {
  LONGCTX_CHECK(dims <= 8, "copy_strided: at most 8 dimensions, got ", dims);
  StridedCopyArgs args{};
  args.dims = dims;
  int64_t count = 1;
  for (int d = 0; d < dims; ++d) {
    args.shape[d] = shape[d];
    args.dst_strides[d] = dst_strides[d];
    args.src_strides[d] = src_strides[d];
    count *= shape[d];
  }
  if (count == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  switch (element_size) {
    case 2:
      copy_strided_kernel<<<grid_for(count), 256, 0, s>>>(
          static_cast<uint16_t*>(dst), static_cast<const uint16_t*>(src), count, args);
      break;
    case 4:
      copy_strided_kernel<<<grid_for(count), 256, 0, s>>>(
          static_cast<uint32_t*>(dst), static_cast<const uint32_t*>(src), count, args);
      break;
    case 8:
      copy_strided_kernel<<<grid_for(count), 256, 0, s>>>(
          static_cast<uint64_t*>(dst), static_cast<const uint64_t*>(src), count, args);
      break;
    default:
      throw Error(detail::concat("copy_strided: unsupported element size ", element_size));
  }
  LONGCTX_CHECK_LAUNCH();
}

void fill(void* dst, DType dtype, int64_t count, double value, void* stream) {
  if (count == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  auto launch = [&](auto typed_value) {
    using T = decltype(typed_value);
    fill_kernel<<<grid_for(count), 256, 0, s>>>(static_cast<T*>(dst), count, typed_value);
  };
  switch (dtype) {
    case DType::f32:
      launch(float(value));
      break;
    case DType::f64:
      launch(double(value));
      break;
    case DType::bf16:
      launch(to_bf16(float(value)).bits);
      break;
    case DType::f16:
      launch(to_f16(float(value)).bits);
      break;
    case DType::i32:
      launch(int32_t(value));
      break;
    case DType::i64:
      launch(int64_t(value));
      break;
  }
  LONGCTX_CHECK_LAUNCH();
}

void convert(void* dst, DType dst_dtype, const void* src, DType src_dtype, int64_t count,
             void* stream) {
  if (count == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  dispatch_cuda_float("Tensor::to_dtype", dst_dtype, [&](auto to) {
    using To = typename decltype(to)::type;
    dispatch_cuda_float("Tensor::to_dtype", src_dtype, [&](auto from) {
      using From = typename decltype(from)::type;
      convert_kernel<<<grid_for(count), 256, 0, s>>>(static_cast<To*>(dst),
                                                     static_cast<const From*>(src), count);
    });
  });
  LONGCTX_CHECK_LAUNCH();
}

void synchronize(void* stream) {
  LONGCTX_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)));
}

void synchronize_device(int device) {
  set_device(device);
  LONGCTX_CUDA_CHECK(cudaDeviceSynchronize());
}

// ---- deferred index errors (index_check.cuh) --------------------------------------------------

namespace {

__global__ void __launch_bounds__(1)
    commit_index_check_kernel(IndexErrorRecord* record, unsigned long long* flag, long long bound,
                              int check, int extra) {
  const unsigned long long key = *flag;
  if (key == kNoBadIndex) return;
  *flag = kNoBadIndex;
  if (record->key != kNoBadIndex) return;  // the first error since the last check is kept
  record->bound = bound;
  record->check = check;
  record->extra = extra;
  record->key = key;
}

}  // namespace

void commit_index_check(Context::CudaState& state, IndexCheck check, int64_t bound, int extra) {
  commit_index_check_kernel<<<1, 1, 0, state.stream>>>(state.index_error, state.index_flag, bound,
                                                       int(check), extra);
  LONGCTX_CHECK_LAUNCH();
}

void check_deferred_errors(Context::CudaState* state) {
  if (!state || !state->index_error) return;
  volatile IndexErrorRecord* record = state->index_error;
  const unsigned long long key = record->key;
  if (key == kNoBadIndex) return;
  const int64_t position = int64_t(key >> 32), bound = record->bound;
  const int32_t value = int32_t(uint32_t(key & 0xffffffffu));
  const IndexCheck check = IndexCheck(record->check);
  const int extra = record->extra;
  record->key = kNoBadIndex;  // raised once
  std::string message;
  switch (check) {
    case IndexCheck::embedding_fwd_tokens:
      message = index_out_of_range_message("embedding_fwd", "tokens", position, value, bound);
      break;
    case IndexCheck::embedding_bwd_tokens:
      message = index_out_of_range_message("embedding_bwd", "tokens", position, value, bound);
      break;
    case IndexCheck::cross_entropy_targets:
      message = index_out_of_range_message("cross_entropy_fwd", "targets", position, value, bound,
                                           ", or ignore_index = " + std::to_string(extra));
      break;
  }
  throw Error(detail::concat(message, " [found on cuda:", state->device,
                             " by a call since the context last synchronised; reported now]"));
}

// 32 MiB: what cuBLASLt asks for its best Hopper kernels (it recommends at least 32 MiB on sm90).
constexpr size_t kBlasLtWorkspaceBytes = size_t(32) << 20;

Context::CudaState* create_state(int device) {
  CudaStatus st = status();
  LONGCTX_CHECK(st.available(), "Context: asked for cuda:", device,
                " but no CUDA device is usable: ", st.reason);
  LONGCTX_CHECK(device >= 0 && device < int(st.devices.size()), "Context: asked for cuda:", device,
                " but only ", st.devices.size(), " CUDA device(s) exist");
  auto* state = new Context::CudaState;
  state->device = device;
  try {
    set_device(device);
    LONGCTX_CUDA_CHECK(cudaStreamCreateWithFlags(&state->stream, cudaStreamNonBlocking));
    LONGCTX_CUBLAS_CHECK(cublasLtCreate(&state->blaslt));
    state->workspace_bytes = kBlasLtWorkspaceBytes;
    LONGCTX_CUDA_CHECK(cudaMalloc(&state->workspace, state->workspace_bytes));
    LONGCTX_CUDA_CHECK(cudaMalloc(&state->index_flag, sizeof(unsigned long long)));
    LONGCTX_CUDA_CHECK(cudaMemset(state->index_flag, 0xff, sizeof(unsigned long long)));
    // Mapped pinned memory: the device writes the record, the host reads it after a
    // synchronisation without a copy. With unified addressing (every 64-bit process) the host
    // pointer is the device's pointer too, with no cudaHostGetDevicePointer needed.
    int unified = 0;
    LONGCTX_CUDA_CHECK(cudaDeviceGetAttribute(&unified, cudaDevAttrUnifiedAddressing, device));
    LONGCTX_CHECK(unified, "Context: cuda:", device,
                  " has no unified addressing (a 32-bit process?); longctx needs it");
    LONGCTX_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&state->index_error),
                                     sizeof(IndexErrorRecord), cudaHostAllocMapped));
    state->index_error->key = kNoBadIndex;
  } catch (...) {
    destroy_state(state);
    throw;
  }
  return state;
}

void destroy_state(Context::CudaState* state) {
  if (!state) return;
  cudaSetDevice(state->device);
  if (state->stream) cudaStreamSynchronize(state->stream);
  if (state->workspace) cudaFree(state->workspace);
  if (state->index_flag) cudaFree(state->index_flag);
  if (state->index_error) cudaFreeHost(state->index_error);
  if (state->blaslt) cublasLtDestroy(state->blaslt);
  if (state->stream) cudaStreamDestroy(state->stream);
  delete state;
}

void* stream_of(const Context::CudaState* state) {
  return state ? state->stream : nullptr;
}

Context::CudaState& state_of(const Context& ctx) {
  LONGCTX_CHECK(ctx.cuda_state() != nullptr, "expected a CUDA context, got one for ",
                ctx.device().str());
  return *ctx.cuda_state();
}

}  // namespace longctx::cuda
