// add on the CPU: a vectorisable loop split across threads in 64 KiB-ish blocks.
#include "longctx/ops/add.h"
#include "src/core/dispatch.h"
#include "src/cpu/parallel.h"

namespace longctx::cpu {

void add_fwd(const Context& ctx, const Tensor& out, const Tensor& a, const Tensor& b) {
  dispatch_cpu_float("add_fwd", a.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t n = a.numel();
    constexpr int64_t kBlock = 16384;
    const T* ap = a.data_as<T>();
    const T* bp = b.data_as<T>();
    T* op = out.data_as<T>();
    parallel_for(ctx, (n + kBlock - 1) / kBlock, [&](int64_t block) {
      const int64_t end = std::min(n, (block + 1) * kBlock);
      for (int64_t i = block * kBlock; i < end; ++i) op[i] = ap[i] + bp[i];
    });
  });
}

}  // namespace longctx::cpu
