// What every op's dispatch needs: the dtypes each backend computes in, and the error for a build
// without CUDA. One place, so `supports`-style questions and dispatch cannot disagree.
#pragma once

#include <chrono>
#include <ctime>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "longctx/context.h"
#include "src/core/checks.h"

namespace longctx {

// Floating dtypes each backend computes in: CPU in f32 (and f64 for tests), CUDA in f32, bf16
// and f16 storage with f32 accumulation.
inline std::initializer_list<DType> backend_dtypes(Device device) {
  static const std::initializer_list<DType> cpu = {DType::f32, DType::f64};
  static const std::initializer_list<DType> cuda = {DType::f32, DType::bf16, DType::f16};
  return device.is_cpu() ? cpu : cuda;
}

// "" when the backend of `device` computes op family `family` in `dtype`, else the reason, naming
// the dtypes it supports: the `<family>_supports` functions of the ops whose only limit is the
// dtype.
inline std::string dtype_supports(const char* family, Device device, DType dtype) {
  std::string names;
  for (DType d : backend_dtypes(device)) {
    if (d == dtype) return "";
    names += std::string(names.empty() ? "" : ", ") + dtype_name(d);
  }
  return detail::concat(family, " on the ", device.is_cpu() ? "CPU" : "CUDA",
                        " backend supports dtypes ", names, ", got ", dtype_name(dtype));
}

// Checks that `t` is on the context's device, in a dtype that backend supports.
inline void check_backend(const Context& ctx, const char* op, const char* name, const Tensor& t) {
  check_arg(op, name, t).device(ctx.device()).dtype_in(backend_dtypes(ctx.device()));
}

using NamedTensor = std::pair<const char*, const Tensor*>;

// Every given output must be disjoint from every input and from the outputs before it.
inline void check_disjoint(const char* op, const std::vector<NamedTensor>& outputs,
                           const std::vector<NamedTensor>& inputs) {
  for (size_t i = 0; i < outputs.size(); ++i) {
    if (!outputs[i].second->defined()) continue;
    const ArgCheck out = check_arg(op, outputs[i].first, *outputs[i].second);
    for (const auto& [name, t] : inputs) out.no_overlap(name, *t);
    for (size_t j = 0; j < i; ++j) out.no_overlap(outputs[j].first, *outputs[j].second);
  }
}

// A tensor's data for a params struct: nullptr when an optional tensor is not given.
inline void* data_or_null(const Tensor& t) {
  return t.defined() ? t.data() : nullptr;
}

// Times one op call into the context's profile, when it has one (Context::set_profile): started
// at construction, recorded by stop() after the op's work is done (the context synchronised);
// an op that throws is not recorded. Nested ops count in the outermost only.
class OpTimer {
 public:
  OpTimer(const Context& ctx, const char* name) : ctx_(ctx), name_(name), profile_(ctx.profile()) {
    if (profile_ && profile_->depth++ == 0)
      start_ = std::chrono::steady_clock::now(), cpu_start_ = std::clock(), outer_ = true;
  }
  void stop() {
    if (!outer_) return;
    ctx_.synchronize();
    OpProfile::Entry& entry = profile_->ops[name_];
    entry.calls += 1;
    entry.seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    entry.cpu_seconds += double(std::clock() - cpu_start_) / CLOCKS_PER_SEC;
  }
  ~OpTimer() {
    if (profile_) profile_->depth -= 1;
  }
  OpTimer(const OpTimer&) = delete;
  OpTimer& operator=(const OpTimer&) = delete;

 private:
  const Context& ctx_;
  const char* name_;
  OpProfile* profile_;  // the one seen at the start: the op's calls and depth all go to it
  std::chrono::steady_clock::time_point start_;
  std::clock_t cpu_start_ = 0;
  bool outer_ = false;
};

[[noreturn]] inline void throw_no_cuda(const char* op) {
  throw Error(detail::concat(op,
                             ": this build of longctx has no CUDA backend (configure with "
                             "-DLONGCTX_CUDA=ON on a machine with nvcc)"));
}

}  // namespace longctx

// Calls cpu::fn(args...) or cuda::fn(args...) by the context's device, timed into the context's
// profile under the name #fn (LONGCTX_DISPATCH_AS: under `name`, for a backend function that
// serves several public ops).
#if LONGCTX_WITH_CUDA
#define LONGCTX_CALL_BACKEND(ctx, fn, ...) \
  ((ctx).device().is_cpu() ? ::longctx::cpu::fn(__VA_ARGS__) : ::longctx::cuda::fn(__VA_ARGS__))
#else
#define LONGCTX_CALL_BACKEND(ctx, fn, ...) \
  ((ctx).device().is_cpu() ? ::longctx::cpu::fn(__VA_ARGS__) : ::longctx::throw_no_cuda(#fn))
#endif
#define LONGCTX_DISPATCH_AS(ctx, name, fn, ...)         \
  do {                                                  \
    ::longctx::OpTimer longctx_op_timer((ctx), (name)); \
    LONGCTX_CALL_BACKEND(ctx, fn, __VA_ARGS__);         \
    longctx_op_timer.stop();                            \
  } while (0)
#define LONGCTX_DISPATCH(ctx, fn, ...) LONGCTX_DISPATCH_AS(ctx, #fn, fn, __VA_ARGS__)
