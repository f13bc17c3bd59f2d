// Context construction, device discovery and build information (see context.h).
#include "longctx/context.h"

#include <thread>

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

BuildInfo build_info() {
  BuildInfo info;
  info.version = LONGCTX_VERSION;
  info.cuda = LONGCTX_WITH_CUDA;
  info.cuda_architectures = LONGCTX_CUDA_ARCHITECTURES;
  info.blas = LONGCTX_BLAS;
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
  LONGCTX_CHECK(cpu_threads >= 0, "Context: cpu_threads must be >= 0 (0 = all), got ", cpu_threads);
  cpu_threads_ = cpu_threads > 0 ? cpu_threads : hardware_threads();
  if (device.is_cuda()) {
#if LONGCTX_WITH_CUDA
    cuda_ = std::shared_ptr<CudaState>(cuda::create_state(device.index), cuda::destroy_state);
#else
    throw Error("Context: asked for " + device.str() + " but " + cuda_status().reason);
#endif
  }
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
  if (cuda_) cuda::synchronize(stream());
#endif
}

}  // namespace longctx
