// Context: where ops run. The device, the CUDA stream, the cuBLASLt handle and its workspace,
// and the number of CPU threads. One Context per device per thread of the caller.
//
// No CUDA header leaks from here: the stream is exposed as an opaque pointer (a cudaStream_t).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "longctx/tensor.h"

namespace longctx {

struct CudaDeviceInfo {
  int index = 0;
  std::string name;
  int sm_major = 0, sm_minor = 0;
  size_t total_memory = 0;
};

// What CUDA devices this process can use. With no usable device, `devices` is empty and
// `reason` says why: built without CUDA, no driver (cudaErrorInsufficientDriver), no device.
struct CudaStatus {
  bool built_with_cuda = false;
  std::vector<CudaDeviceInfo> devices;
  std::string reason;
  bool available() const { return !devices.empty(); }
};
CudaStatus cuda_status();

// How this copy of the library was built: version, CUDA architectures, BLAS, OpenMP; and the
// kernels the BLAS runs on this CPU: OpenBLAS's name for them (e.g. "SkylakeX"), and the ones it
// had chosen itself where longctx replaced its SSE3 fallback on a newer CPU (else "").
struct BuildInfo {
  std::string version;
  bool cuda = false;
  std::string cuda_architectures;
  std::string blas;
  bool openmp = false;
  std::string blas_kernels;
  std::string blas_kernels_replaced;
};
BuildInfo build_info();

// Peak memory, for benchmarks. On the CPU: the process's peak resident set (VmHWM, Linux); on a
// CUDA device: the high-water mark of the device's default memory pool, which holds every tensor
// longctx allocates there (the cuBLASLt workspace of each Context, 32 MiB, is outside it).
// reset_peak_memory starts a new measurement from what is in use now.
size_t peak_memory_bytes(Device device);
void reset_peak_memory(Device device);

// How f32 matrix products run on a context (torch.set_float32_matmul_precision):
//   f32   every product of f32 tensors is computed from f32 operands (the default);
//   bf16  CUDA only: the products inside `linear` and `attention` round their f32 operands to
//         bf16 and run on tensor cores with f32 accumulation. This is bf16 mixed precision with
//         f32 master weights: parameters, gradients, optimizer state and every other op stay f32.
enum class MatmulPrecision { f32, bf16 };
const char* matmul_precision_name(MatmulPrecision precision);
MatmulPrecision parse_matmul_precision(const std::string& name);  // "f32" or "bf16"

// The most CPU threads a Context runs ops on (an error above it, not a crash in the thread
// library); far more than any machine's cores.
constexpr int kMaxCpuThreads = 1024;

// A per-op timing breakdown (benchmarks' --profile). While a Context points to one, every op
// called on it adds its wall time, to the end of its work (the op synchronises the context
// first), under the op's public name; an op called from inside another counts in the outer one.
// It adds the process's CPU time too (all threads; std::clock): on a machine shared with other
// work the wall time swings with the load, the CPU time much less (with OMP_WAIT_POLICY=passive
// idle threads sleep instead of spinning, so it counts work, not waiting).
struct OpProfile {
  struct Entry {
    int64_t calls = 0;
    double seconds = 0;
    double cpu_seconds = 0;
  };
  std::map<std::string, Entry> ops;
  int depth = 0;  // ops in progress on this profile (the nesting guard)
};

class Context {
 public:
  // cpu_threads = 0 uses every hardware thread (OpenMP's default, which OMP_NUM_THREADS sets);
  // at most kMaxCpuThreads. A CUDA context creates its own stream.
  explicit Context(Device device = Device::cpu(), int cpu_threads = 0);
  Context(Context&&) noexcept = default;
  Context& operator=(Context&&) noexcept = default;
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  Device device() const { return device_; }
  int cpu_threads() const { return cpu_threads_; }
  void* stream() const;  // cudaStream_t; nullptr for a CPU context
  // Waits for the context's stream, then raises an error its kernels recorded since the last
  // synchronisation (an out-of-range token or target: the ops do not stop the stream to check).
  void synchronize() const;

  // Deterministic mode (off by default): results bitwise reproducible from run to run and
  // batch-invariant — a sequence's outputs and gradients are the same whether it runs alone,
  // padded in a rectangular batch or packed with others — because no op uses float atomics and
  // every op splits a sequence's work by that sequence alone. The CPU backend gives such results
  // in either mode. On CUDA it can cost speed: a scan then splits every long sequence at fixed
  // positions (one more pass over its inputs) where it would otherwise split none.
  bool deterministic() const { return deterministic_; }
  void set_deterministic(bool on) { deterministic_ = on; }

  MatmulPrecision matmul_precision() const { return matmul_precision_; }
  // bf16 on a CPU context is an error: the CPU computes f32 products only.
  void set_matmul_precision(MatmulPrecision precision);

  // The profile ops add their times to (nullptr, the default: none). Not owned.
  OpProfile* profile() const { return profile_; }
  void set_profile(OpProfile* profile) { profile_ = profile; }

  // Defined by the CUDA backend: stream, cuBLASLt handle, workspace. Shared, so that memory
  // allocated on this context's stream can be released on it even after the Context is gone.
  struct CudaState;
  CudaState* cuda_state() const { return cuda_.get(); }
  const std::shared_ptr<CudaState>& shared_cuda_state() const { return cuda_; }

 private:
  Device device_;
  int cpu_threads_ = 1;
  MatmulPrecision matmul_precision_ = MatmulPrecision::f32;
  bool deterministic_ = false;
  OpProfile* profile_ = nullptr;
  std::shared_ptr<CudaState> cuda_;
};

}  // namespace longctx
