// Context construction, device discovery and build information (see context.h).
#include "longctx/context.h"

#include <fstream>
#include <string>
#include <thread>

#include "src/cpu/blas.h"

#if LONGCTX_WITH_CUDA
#include "kernels/common/runtime.h"
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

#ifndef LONGCTX_VERSION
#define LONGCTX_VERSION "0.0.0"
#endif
#ifndef LONGCTX_CUDA_ARCHITECTURES
#define LONGCTX_CUDA_ARCHITECTURES ""
#endif
#ifndef LONGCTX_BLAS
#define LONGCTX_BLAS "none"
#endif

namespace longctx {

CudaStatus cuda_status() {
#if LONGCTX_WITH_CUDA
  return cuda::status();
#else
  CudaStatus s;
  s.reason =
      "this build of longctx has no CUDA backend (configured with LONGCTX_CUDA=OFF or "
      "without nvcc)";
  return s;
#endif
}

size_t peak_memory_bytes(Device device) {
  if (device.is_cuda()) {
#if LONGCTX_WITH_CUDA
    return cuda::pool_peak_bytes(device.index);
#else
    throw Error("peak_memory_bytes: " + device.str() + ": " + cuda_status().reason);
#endif
  }
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return size_t(std::stoull(line.substr(6))) * 1024;  // kB
  throw Error("peak_memory_bytes: /proc/self/status has no VmHWM line (not Linux?)");
}

void reset_peak_memory(Device device) {
  if (device.is_cuda()) {
#if LONGCTX_WITH_CUDA
    cuda::reset_pool_peak(device.index);
    return;
#else
    throw Error("reset_peak_memory: " + device.str() + ": " + cuda_status().reason);
#endif
  }
  // "5" resets the peak resident set size to the current one (Linux >= 4.0).
  std::ofstream clear("/proc/self/clear_refs");
  clear << "5";
  clear.flush();
  if (!clear) throw Error("reset_peak_memory: cannot write /proc/self/clear_refs");
}

BuildInfo build_info() {
  BuildInfo info;
  info.version = LONGCTX_VERSION;
  info.cuda = LONGCTX_WITH_CUDA;
  info.cuda_architectures = LONGCTX_CUDA_ARCHITECTURES;
  info.blas = LONGCTX_BLAS;
  info.blas_kernels = cpu::blas_kernels().core;
  info.blas_kernels_replaced = cpu::blas_kernels().replaced;
#ifdef _OPENMP
  info.openmp = true;
#endif
  return info;
}

namespace {
int hardware_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return int(std::max(1u, std::thread::hardware_concurrency()));
#endif
}
}  // namespace

Context::Context(Device device, int cpu_threads) : device_(device) {
  // Every --threads option and OMP_NUM_THREADS end here: libgomp crashes on a team of 100000
  // threads and aborts on 2^31 - 1 rather than failing cleanly.
  LONGCTX_CHECK(cpu_threads >= 0 && cpu_threads <= kMaxCpuThreads,
                "Context: cpu_threads must be in [0, ", kMaxCpuThreads,
                "] (0 = every hardware thread, here ", hardware_threads(), "), got ", cpu_threads);
  cpu_threads_ = cpu_threads > 0 ? cpu_threads : hardware_threads();
  LONGCTX_CHECK(cpu_threads_ <= kMaxCpuThreads, "Context: OpenMP's default thread count ",
                cpu_threads_, " (OMP_NUM_THREADS?) is above the limit of ", kMaxCpuThreads);
  if (device.is_cuda()) {
#if LONGCTX_WITH_CUDA
    cuda_ = std::shared_ptr<CudaState>(cuda::create_state(device.index), cuda::destroy_state);
#else
    throw Error("Context: asked for " + device.str() + " but " + cuda_status().reason);
#endif
  }
}

const char* matmul_precision_name(MatmulPrecision precision) {
  return precision == MatmulPrecision::bf16 ? "bf16" : "f32";
}

MatmulPrecision parse_matmul_precision(const std::string& name) {
  if (name == "f32") return MatmulPrecision::f32;
  if (name == "bf16") return MatmulPrecision::bf16;
  throw Error("matmul precision must be f32 or bf16, got '" + name + "'");
}

void Context::set_matmul_precision(MatmulPrecision precision) {
  LONGCTX_CHECK(precision == MatmulPrecision::f32 || device_.is_cuda(),
                "Context::set_matmul_precision: bf16 products need a CUDA context (tensor cores); "
                "the CPU computes in f32, got a context on ",
                device_.str());
  matmul_precision_ = precision;
}

void* Context::stream() const {
#if LONGCTX_WITH_CUDA
  return cuda::stream_of(cuda_.get());
#else
  return nullptr;
#endif
}

void Context::synchronize() const {
#if LONGCTX_WITH_CUDA
  if (cuda_) {
    cuda::synchronize(stream());
    cuda::check_deferred_errors(cuda_.get());
  }
#endif
}

}  // namespace longctx
